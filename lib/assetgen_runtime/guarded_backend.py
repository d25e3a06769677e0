"""A network backend for httpx clients that connects only where a :class:`NetworkGuard` allows.

Every new connection resolves its host, has every answer checked by the guard and connects to the
very address checked (a second DNS answer cannot switch it). The URL, Host header and TLS server
name stay the host's, so certificates are verified as usual and pooled connections are reused per
host. Checks are remembered for a short while, so a busy host is not resolved again for each new
connection; requests on kept-alive connections need no check at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import httpcore

from assetgen_runtime.http import AsyncioNetworkBackend
from assetgen_runtime.netguard import NetworkGuard

__all__ = ["GuardedNetworkBackend"]


class GuardedNetworkBackend(AsyncioNetworkBackend):
    """:class:`AsyncioNetworkBackend` that refuses (:class:`FetchRefused`) hosts the guard forbids.

    The refusal is raised before any connection is attempted and is not an httpx transport error,
    so callers that retry transport trouble do not retry it.
    """

    def __init__(
        self, guard: NetworkGuard, *, ttl: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._guard = guard
        self._ttl = ttl
        self._clock = clock
        self._checked: dict[tuple[str, int], tuple[float, str]] = {}

    async def checked_address(self, host: str, port: int) -> str:
        """The IP a connection to ``host:port`` goes to, checked within the last ``ttl`` seconds."""
        key = (host, port)
        now = self._clock()
        cached = self._checked.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        address = await self._guard.check_host(host, port)
        if len(self._checked) > 4096:  # hosts come from providers' answers: keep the memory bounded
            self._checked.clear()
        self._checked[key] = (now + self._ttl, address)
        return address

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                address = await self.checked_address(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"{host} not resolved within {timeout} s") from exc
        return await super().connect_tcp(address, port, timeout, local_address, socket_options)
