"""An httpx transport for processes that keep many requests in flight at once."""

from __future__ import annotations

import itertools

import httpx

__all__ = ["ShardedTransport"]


class ShardedTransport(httpx.AsyncBaseTransport):
    """Spreads requests round-robin over several independent connection pools.

    httpcore's pool examines every connection it holds on each request, and each idle one against
    the rest (encode/httpcore#1035), so its CPU per request grows with the square of its size: at
    60 connections a poll cost 5–7 ms, at 8 about 1 ms. Several small pools hold the same
    connections for a fraction of that; keep-alive reuse works within each pool as before.
    """

    def __init__(self, shards: int, limits: httpx.Limits, **options: object) -> None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self._pools = [httpx.AsyncHTTPTransport(limits=limits, **options) for _ in range(shards)]  # type: ignore[arg-type]
        self._next = itertools.cycle(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Sends ``request`` through the next pool in turn."""
        return await next(self._next).handle_async_request(request)

    async def aclose(self) -> None:
        """Closes every pool."""
        for pool in self._pools:
            await pool.aclose()
