"""httpx pieces for the services' shared clients: many requests in flight, no state between them."""

from __future__ import annotations

import itertools
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

__all__ = ["ShardedTransport", "cookieless_jar"]


class _RefuseAll(DefaultCookiePolicy):
    def set_ok(self, cookie: object, request: object) -> bool:
        return False


def cookieless_jar() -> CookieJar:
    """A cookie jar that keeps no cookie, for a client shared by every account and user.

    httpx clients keep the cookies responses set and send them with later requests to the same
    site; in a client that calls one provider for many accounts, a cookie set for one would go out
    with another's requests.
    """
    return CookieJar(policy=_RefuseAll())


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
