"""httpx pieces for the services' shared clients: many requests in flight, no state between them."""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections.abc import Iterable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpcore
import httpx

from assetgen_runtime.httpx_internals import set_network_backend

__all__ = [
    "AsyncioHTTPTransport",
    "AsyncioNetworkBackend",
    "AsyncioStream",
    "DirectClient",
    "ShardedTransport",
    "cookieless_jar",
]


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


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One connection on asyncio's streams, with httpcore's errors and per-operation timeouts."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(f"no data within {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        try:
            self._writer.write(buffer)
            # drain() returns at once unless the kernel refused part of the buffer; only then is there
            # anything to time out (and a timer worth arming).
            if self._writer.transport.get_write_buffer_size():
                async with asyncio.timeout(timeout):
                    await self._writer.drain()
            else:
                await self._writer.drain()  # raises if the connection is lost
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(f"could not send within {timeout} s") from exc
        except OSError as exc:
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        # Not waiting for the close to complete: a peer that stopped reading must not hold us up.
        self._writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            self._writer.close()
            raise httpcore.ConnectTimeout(f"TLS handshake not done within {timeout} s") from exc
        except (OSError, ssl.SSLError) as exc:  # SSLError is an OSError; named for the reader
            self._writer.close()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            # httpcore asks this of every idle pooled connection on every request, to spot one the
            # server closed. The event loop has already seen that close (EOF or an error), so this
            # is a lookup where anyio's backend makes a poll() system call.
            return self._reader.at_eof() or self._reader.exception() is not None
        if info == "ssl_object":
            return self._writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._writer.get_extra_info("sockname")
        if info == "server_addr":
            return self._writer.get_extra_info("peername")
        if info == "socket":
            return self._writer.get_extra_info("socket")
        return None


class AsyncioNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's connections on asyncio's own streams (so on uvloop's C transports when it runs).

    httpcore's default backend for asyncio goes through anyio, whose cancel scopes, stream wrappers
    and per-request readability checks cost more CPU than the HTTP itself; this backend has none of
    them (measured in bench/README.md).
    """

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
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no connection to {host}:{port} within {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return _with_options(reader, writer, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(path)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"no connection to {path} within {timeout} s") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return _with_options(reader, writer, socket_options)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def _with_options(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    socket_options: Iterable[httpcore.SOCKET_OPTION] | None,
) -> AsyncioStream:
    sock = writer.get_extra_info("socket")
    for option in socket_options or ():
        sock.setsockopt(*option)
    return AsyncioStream(reader, writer)


class AsyncioHTTPTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, with every connection made by :class:`AsyncioNetworkBackend`.

    Takes ``httpx.AsyncHTTPTransport``'s arguments, and optionally the backend (a subclass, e.g. one
    that guards where connections go). httpx does not pass a network backend on to the
    httpcore pool it builds (httpcore takes one), so the pool is handed ours before it has made any
    connection (:mod:`assetgen_runtime.httpx_internals`); a test checks the requests really go
    through it.
    """

    def __init__(self, *, network_backend: AsyncioNetworkBackend | None = None, **options: Any) -> None:
        super().__init__(**options)
        set_network_backend(self, network_backend or AsyncioNetworkBackend())


class ShardedTransport(httpx.AsyncBaseTransport):
    """Spreads requests round-robin over several independent connection pools.

    httpcore's pool examines every connection it holds on each request, and each idle one against
    the rest (encode/httpcore#1035), so its CPU per request grows with the square of its size.
    Several small pools hold the same connections for a fraction of that (bench/README.md has the
    figures); keep-alive reuse works within each pool as before.
    """

    def __init__(self, shards: int, limits: httpx.Limits, **options: Any) -> None:
        if shards < 1:
            raise ValueError("shards must be at least 1")
        self._pools = [AsyncioHTTPTransport(limits=limits, **options) for _ in range(shards)]
        self._next = itertools.cycle(self._pools)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Sends ``request`` through the next pool in turn."""
        return await next(self._next).handle_async_request(request)

    async def aclose(self) -> None:
        """Closes every pool."""
        for pool in self._pools:
            await pool.aclose()


class DirectClient(httpx.AsyncClient):
    """An ``httpx.AsyncClient`` that can also hand a request straight to its transport.

    ``send`` takes every request through the client's layers: the auth flow, the redirect loop and
    event hooks, an elapsed-time wrapper around the body, and cookie extraction, which builds a
    ``urllib`` request (parsing the URL again) for every response even when the jar keeps nothing.
    For a caller that uses none of them (no auth object, no redirects, no hooks, no cookies) that is
    a sizeable share of a keep-alive GET's CPU (see bench/README.md). :meth:`send_direct` skips
    them; requests are still built by :meth:`build_request`, so the client's headers and timeouts
    apply, and the transport raises httpx's own errors.

    Takes ``httpx.AsyncClient``'s arguments; ``transport`` is required (``mounts`` would be
    bypassed by :meth:`send_direct`, so it is refused).
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport, **options: Any) -> None:
        if "mounts" in options:
            raise TypeError("DirectClient sends through its one transport; mounts are not supported")
        super().__init__(transport=transport, **options)
        self._direct_transport = transport

    async def send_direct(self, request: httpx.Request) -> httpx.Response:
        """The response to ``request``, its body not yet read (like ``send(request, stream=True)``)."""
        if self.is_closed:
            raise RuntimeError("cannot send a request: the client has been closed")
        response = await self._direct_transport.handle_async_request(request)
        response.request = request
        return response
