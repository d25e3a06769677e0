"""EventWatcher against a real JetStream: snapshot, resume, races with the snapshot, and shutdown."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import nats
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext

from assetgen.v1 import common_pb2, gateway_pb2
from assetgen_dev.embedded import EmbeddedProcess, start_nats
from assetgen_gateway.watch import EventWatcher, asset_subject, box_subject
from assetgen_orchestrator.jobs import setup_streams


@pytest.fixture(scope="module")
def own_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedProcess]:
    """A NATS of our own: the events stream has a fixed name."""
    server = start_nats(tmp_path_factory.mktemp("watcher-nats"))
    yield server
    server.stop()


@pytest.fixture
async def js(own_nats: EmbeddedProcess) -> AsyncIterator[JetStreamContext]:
    client: Client = await nats.connect(own_nats.url)
    context = client.jetstream()
    await setup_streams(context, events_max_age=3600)
    try:
        yield context
    finally:
        await client.close()


def _at(second: int) -> dt.datetime:
    return dt.datetime(2026, 1, 1, 0, 0, second, tzinfo=dt.UTC)


async def _publish(js: JetStreamContext, box: str, asset: str, status: str, at: dt.datetime) -> int:
    body = {"asset_id": asset, "box_id": box, "status": status, "attempt": 1, "at": at.isoformat()}
    ack = await js.publish(f"assetgen.events.{box}.{asset}", json.dumps(body).encode(), timeout=5)
    return int(ack.seq)


def _asset(box: str, asset: str, status: int, at: dt.datetime) -> common_pb2.Asset:
    message = common_pb2.Asset(id=asset, box=box, status=status)
    message.updated_at.FromDatetime(at)
    return message


async def _take(
    events: AsyncIterator[gateway_pb2.AssetEvent | None], count: int
) -> list[gateway_pb2.AssetEvent]:
    taken: list[gateway_pb2.AssetEvent] = []
    async with asyncio.timeout(20):
        async for event in events:
            if event is not None:
                taken.append(event)
                if len(taken) == count:
                    break
    return taken


def _ids() -> tuple[str, str]:
    return f"box_{uuid.uuid4().hex[:8]}", f"ast_{uuid.uuid4().hex[:8]}"


async def test_replayed_events_older_than_the_snapshot_are_dropped(js: JetStreamContext) -> None:
    box, asset = _ids()
    watcher = EventWatcher(js, heartbeat=5)

    async def racing_snapshot() -> list[common_pb2.Asset]:
        # Two transitions land between the watcher's first look at the stream and its snapshot.
        await _publish(js, box, asset, "PENDING", _at(1))
        await _publish(js, box, asset, "PROCESSING", _at(2))
        return [_asset(box, asset, common_pb2.ASSET_STATUS_PROCESSING, _at(2))]

    events = watcher.watch(box_subject(box), 0, racing_snapshot, end_on_terminal=False)
    try:
        first = await _take(events, 2)
        completed = await _publish(js, box, asset, "COMPLETED", _at(3))
        rest = await _take(events, 1)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    assert [e.snapshot for e in first] == [True, False]
    # PENDING is older than the snapshot and never shown; PROCESSING may repeat, never go back.
    assert [e.status for e in first] == [common_pb2.ASSET_STATUS_PROCESSING] * 2
    assert [(e.status, e.sequence) for e in rest] == [(common_pb2.ASSET_STATUS_COMPLETED, completed)]


async def test_asset_stream_resumed_after_its_terminal_event_ends_at_once(js: JetStreamContext) -> None:
    box, asset = _ids()
    watcher = EventWatcher(js, heartbeat=5)
    await _publish(js, box, asset, "PENDING", _at(1))
    done = await _publish(js, box, asset, "FAILED", _at(2))

    async def never() -> list[common_pb2.Asset]:
        raise AssertionError("a resume needs no snapshot")

    async with asyncio.timeout(10):
        assert [e async for e in watcher.watch(asset_subject(asset), done, never, end_on_terminal=True)] == []

    # A retry after the terminal event is new: the same resume now delivers it.
    retried = await _publish(js, box, asset, "PENDING", _at(3))
    events = watcher.watch(asset_subject(asset), done, never, end_on_terminal=True)
    try:
        got = await _take(events, 1)
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    assert [(e.sequence, e.status) for e in got] == [(retried, common_pb2.ASSET_STATUS_PENDING)]


async def test_an_unknown_sequence_starts_over_with_a_snapshot(js: JetStreamContext) -> None:
    box, asset = _ids()
    watcher = EventWatcher(js, heartbeat=5)

    async def snapshot() -> list[common_pb2.Asset]:
        return [_asset(box, asset, common_pb2.ASSET_STATUS_COMPLETED, _at(5))]

    got = [e async for e in watcher.watch(asset_subject(asset), 10**9, snapshot, end_on_terminal=True)]
    assert len(got) == 1 and got[0].snapshot and got[0].status == common_pb2.ASSET_STATUS_COMPLETED


async def test_close_ends_open_watches_promptly(js: JetStreamContext) -> None:
    box, _ = _ids()
    watcher = EventWatcher(js, heartbeat=60)

    async def empty() -> list[common_pb2.Asset]:
        return []

    events = watcher.watch(box_subject(box), 0, empty, end_on_terminal=False)
    assert await anext(events) is None  # subscribed

    async def drain() -> list[gateway_pb2.AssetEvent | None]:
        return [event async for event in events]

    draining = asyncio.create_task(drain())
    watcher.close()
    assert await asyncio.wait_for(draining, 5) == []
