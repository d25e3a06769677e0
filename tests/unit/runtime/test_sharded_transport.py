"""ShardedTransport: requests take turns over several pools, each keeping its connections alive."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from assetgen_runtime.http import AsyncioStream, ShardedTransport


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback HTTP server that records the client port of every request."""
    ports: list[int] = []

    async def echo(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ports.append(peer[1] if peer else 0)
        return web.Response(text=request.path)

    app = web.Application()
    app.router.add_get("/{name}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", ports
    await runner.cleanup()


async def test_requests_take_turns_over_the_pools_and_reuse_their_connections(
    server: tuple[str, list[int]],
) -> None:
    url, ports = server
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with httpx.AsyncClient(transport=ShardedTransport(3, limits), timeout=5) as client:
        responses = [await client.get(f"{url}/r{n}") for n in range(9)]
    answers = [response.text for response in responses]
    assert all(isinstance(r.extensions["network_stream"], AsyncioStream) for r in responses)
    assert answers == [f"/r{n}" for n in range(9)]
    # One connection per pool, each reused by every third request.
    assert len(set(ports)) == 3
    assert ports[0:3] == ports[3:6] == ports[6:9]


def test_at_least_one_pool() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ShardedTransport(0, httpx.Limits())
