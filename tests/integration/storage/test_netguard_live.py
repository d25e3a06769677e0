"""The SSRF guard over real sockets: a local server redirecting to the metadata address, loopback names."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
from aiohttp import web

from assetgen_runtime.netguard import FetchFailed, FetchRefused, NetworkGuard, guarded_stream


@pytest.fixture
async def local_server() -> AsyncIterator[tuple[int, list[str]]]:
    """127.0.0.1:0 serving /ok, /to-metadata (302 to 169.254.169.254), /to-ok and /broken (500)."""
    hosts: list[str] = []

    async def ok(request: web.Request) -> web.Response:
        hosts.append(request.headers["Host"])
        return web.Response(body=b"hello", content_type="text/plain")

    async def to_metadata(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")

    async def to_ok(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/ok")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/to-metadata", to_metadata)
    app.router.add_get("/to-ok", to_ok)
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield runner.addresses[0][1], hosts
    await runner.cleanup()


def resolver(table: dict[str, Sequence[str]]):
    async def resolve(host: str, port: int) -> Sequence[str]:
        return table[host]

    return resolve


async def fetch(url: str, guard: NetworkGuard) -> bytes:
    async with httpx.AsyncClient(trust_env=False) as client:
        async with guarded_stream(client, url, guard=guard, timeout=10) as response:
            return await response.aread()


async def test_redirect_to_metadata_address_is_refused(local_server: tuple[int, list[str]]) -> None:
    port, _ = local_server
    guard = NetworkGuard(["127.0.0.0/8"])
    with pytest.raises(FetchRefused, match=r"169\.254\.169\.254 is link-local"):
        await fetch(f"http://127.0.0.1:{port}/to-metadata", guard)


async def test_host_resolving_to_loopback_is_refused_when_not_allowed(
    local_server: tuple[int, list[str]],
) -> None:
    port, hosts = local_server
    for guard, url in [
        (NetworkGuard(), f"http://localhost:{port}/ok"),
        (
            NetworkGuard(resolver=resolver({"cdn.example.com": ["127.0.0.1"]})),
            f"http://cdn.example.com:{port}/ok",
        ),
    ]:
        with pytest.raises(FetchRefused, match=r"127\.0\.0\.1 is loopback"):
            await fetch(url, guard)
    assert hosts == []


async def test_host_resolving_to_loopback_is_reached_when_allowed(
    local_server: tuple[int, list[str]],
) -> None:
    port, hosts = local_server
    guard = NetworkGuard(["127.0.0.0/8"], resolver=resolver({"cdn.example.com": ["127.0.0.1"]}))
    assert await fetch(f"http://cdn.example.com:{port}/to-ok", guard) == b"hello"
    assert await fetch(f"http://localhost:{port}/ok", NetworkGuard(["127.0.0.0/8"])) == b"hello"
    assert hosts == [f"cdn.example.com:{port}", f"localhost:{port}"]


async def test_server_error_is_a_domain_error(local_server: tuple[int, list[str]]) -> None:
    port, _ = local_server
    with pytest.raises(FetchFailed, match="HTTP 500"):
        await fetch(f"http://127.0.0.1:{port}/broken", NetworkGuard(["127.0.0.0/8"]))
