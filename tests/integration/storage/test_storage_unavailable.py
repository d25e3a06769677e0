"""S3 unavailable: bounded retries with backoff, then a clear UNAVAILABLE; start-up gives up in time."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from assetgen_dev.embedded import free_port
from assetgen_runtime.errors import Unavailable
from assetgen_runtime.settings import load
from assetgen_storage.bucket import Bucket
from assetgen_storage.main import run_server
from assetgen_storage.settings import StorageSettings


def settings_for(endpoint: str, **overrides: object) -> StorageSettings:
    values: dict[str, object] = {
        "s3_endpoint": endpoint,
        "s3_access_key": "key",
        "s3_secret_key": "secret",
        "s3_bucket": "unreachable",
        "s3_attempts": 3,
    }
    values.update(overrides)
    return load(StorageSettings, environ={}, **values)


@pytest.fixture
async def failing_s3() -> AsyncIterator[tuple[str, list[str]]]:
    """An 'S3' that answers every request 503, recording what it was asked."""
    seen: list[str] = []

    async def unavailable(request: web.Request) -> web.Response:
        seen.append(f"{request.method} {request.path}")
        return web.Response(status=503, text="<Error><Code>SlowDown</Code></Error>")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", unavailable)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}", seen
    await runner.cleanup()


async def test_5xx_is_retried_a_bounded_number_of_times_then_unavailable(
    failing_s3: tuple[str, list[str]],
) -> None:
    endpoint, seen = failing_s3
    bucket = Bucket(settings_for(endpoint, s3_attempts=3))
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        await bucket.stat("boxes/b/a/obj_1.png")
    assert seen == ["HEAD /unreachable/boxes/b/a/obj_1.png"] * 3
    assert "is unavailable" in info.value.message and "after 3 tries" in info.value.message
    assert time.monotonic() - started >= 0.5  # backed off between tries


async def test_refused_connection_is_unavailable() -> None:
    bucket = Bucket(settings_for(f"http://127.0.0.1:{free_port()}", s3_attempts=2))
    with pytest.raises(Unavailable, match="is unavailable"):
        await bucket.delete("boxes/b/a/obj_1.png")


async def test_start_gives_up_when_s3_never_comes() -> None:
    settings = settings_for(f"http://127.0.0.1:{free_port()}", s3_attempts=1, s3_startup_timeout_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(Unavailable, match="S3 not ready within 1 s"):
        await run_server(settings, port=0)
    assert time.monotonic() - started < 10


def test_endpoint_must_be_an_http_url() -> None:
    with pytest.raises(ValueError, match="ASSETGEN_S3_ENDPOINT must be an http"):
        Bucket(settings_for("127.0.0.1:8333"))
