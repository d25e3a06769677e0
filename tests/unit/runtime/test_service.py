"""The service skeleton: cleanups in reverse order, the gRPC server stopped first, signals end serving."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass

import pytest

from assetgen_runtime.server import Cleanups, RunningService, build_grpc_server
from assetgen_runtime.service import serve
from assetgen_runtime.settings import ServiceSettings


@dataclass(frozen=True, kw_only=True)
class _Settings(ServiceSettings):
    pass


async def test_cleanups_run_newest_first_and_a_failing_one_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    async def record(name: str) -> None:
        ran.append(name)

    async def fail() -> None:
        raise RuntimeError("cannot close")

    cleanups = Cleanups()
    cleanups.push_async_callback(record, "opened first")
    cleanups.push_async_callback(fail)
    cleanups.push_async_callback(record, "opened last")
    with caplog.at_level(logging.ERROR):
        await cleanups.aclose()

    assert ran == ["opened last", "opened first"]
    assert [record.getMessage() for record in caplog.records] == ["shutdown step failed"]


async def test_a_failing_start_up_step_closes_what_was_opened_and_raises_its_own_error() -> None:
    closed: list[str] = []

    async def close(name: str) -> None:
        closed.append(name)

    with pytest.raises(ConnectionError, match="third step"):
        async with Cleanups() as opened:
            opened.push_async_callback(close, "engine")
            opened.push_async_callback(close, "nats")
            raise ConnectionError("third step failed")

    assert closed == ["nats", "engine"]


async def test_a_started_service_keeps_its_cleanups_until_it_stops() -> None:
    closed: list[str] = []

    async def close(name: str) -> None:
        closed.append(name)

    async with Cleanups() as opened:
        opened.push_async_callback(close, "engine")
        kept = opened.pop_all()
    assert closed == []
    await kept.aclose()
    assert closed == ["engine"]


async def test_stop_ends_grpc_first_then_the_cleanups_newest_first() -> None:
    async with Cleanups() as opened:
        server = await build_grpc_server([], host="127.0.0.1", cleanups=opened)
        seen: list[tuple[str, bool]] = []

        async def note(name: str) -> None:
            seen.append((name, server.stopped))

        opened.push_async_callback(note, "nats drain")
        opened.push_async_callback(note, "job runner stop")
        service = RunningService(grpc=server, grace=0.1, cleanups=opened.pop_all())

    await service.stop()

    assert seen == [("job runner stop", True), ("nats drain", True)]


async def test_serve_stops_the_service_when_asked() -> None:
    stop = asyncio.Event()
    closed = asyncio.Event()

    async def start(settings: _Settings) -> RunningService:
        cleanups = Cleanups()
        server = await build_grpc_server([], host="127.0.0.1", cleanups=cleanups)

        async def close() -> None:
            closed.set()

        cleanups.push_async_callback(close)
        await server.set_serving()
        stop.set()
        return RunningService(grpc=server, grace=0.1, cleanups=cleanups)

    await asyncio.wait_for(serve(_Settings(), start, stop=stop), 10)

    assert closed.is_set()


async def test_sigterm_during_start_up_cancels_the_start_and_closes_what_it_opened() -> None:
    closed: list[str] = []
    started_opening = asyncio.Event()

    async def close(name: str) -> None:
        closed.append(name)

    async def start(settings: _Settings) -> RunningService:
        async with Cleanups() as opened:
            opened.push_async_callback(close, "nats")
            started_opening.set()
            await asyncio.Event().wait()  # a dependency that never comes
        raise AssertionError("unreachable")

    serving = asyncio.ensure_future(serve(_Settings(), start))
    await asyncio.wait_for(started_opening.wait(), 10)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, 10)

    assert closed == ["nats"]


async def test_a_failing_start_is_raised_by_serve() -> None:
    async def start(settings: _Settings) -> RunningService:
        raise OSError("port taken")

    with pytest.raises(OSError, match="port taken"):
        await serve(_Settings(), start)
