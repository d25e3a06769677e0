"""NATS with a user per service: no anonymous clients; the gateway follows events and nothing more."""

from __future__ import annotations

import asyncio
import gc
import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from assetgen_dev.embedded import EmbeddedProcess, start_nats
from assetgen_dev.nats_users import NatsUser, url_for
from assetgen_gateway.watch import EventWatcher, asset_subject
from assetgen_orchestrator.events import event_subject
from assetgen_orchestrator.jobs import EVENTS_STREAM, JOBS_STREAM, JOBS_SUBJECT, setup_streams

ORCHESTRATOR = NatsUser("orchestrator", secrets.token_urlsafe(16))
GATEWAY = NatsUser("gateway", secrets.token_urlsafe(16))


@pytest.fixture
def guarded_nats(tmp_path: Path) -> Iterator[EmbeddedProcess]:
    server = start_nats(tmp_path / "nats", users=[ORCHESTRATOR, GATEWAY])
    yield server
    server.stop()


async def _connect(url: str, errors: list[Exception] | None = None) -> Client:
    async def on_error(exc: Exception) -> None:
        if errors is not None:
            errors.append(exc)

    return await nats.connect(url, error_cb=on_error, allow_reconnect=False, connect_timeout=5)


# nats-py leaves the socket of a refused connection to the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_client_without_credentials_or_with_a_wrong_password_is_refused(
    guarded_nats: EmbeddedProcess,
) -> None:
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await _connect(guarded_nats.url)
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await _connect(url_for(guarded_nats.url, NatsUser("gateway", "not-the-password")))
    gc.collect()  # here, not during the next test


async def test_the_gateway_follows_events_but_cannot_publish_jobs_or_delete_streams(
    guarded_nats: EmbeddedProcess,
) -> None:
    orchestrator = await _connect(url_for(guarded_nats.url, ORCHESTRATOR))
    gateway_errors: list[Exception] = []
    gateway = await _connect(url_for(guarded_nats.url, GATEWAY), gateway_errors)
    try:
        await setup_streams(orchestrator.jetstream(timeout=5), events_max_age=60)
        gateway_js = gateway.jetstream(timeout=2)

        # Followed the way the gateway's watchers follow: stream state, then an ordered consumer.
        async def no_assets() -> list:  # type: ignore[type-arg]
            return []

        box, asset = uuid.uuid4().hex, uuid.uuid4().hex
        watch = EventWatcher(gateway_js, heartbeat=5).watch(
            asset_subject(asset), 0, no_assets, end_on_terminal=True
        )
        assert await anext(watch) is None  # subscribed
        body = {"asset_id": asset, "box_id": box, "status": "COMPLETED"}
        await orchestrator.publish(event_subject(box, asset), json.dumps(body).encode())
        event = await asyncio.wait_for(anext(watch), timeout=10)
        assert event is not None and event.asset_id == asset
        await watch.aclose()  # type: ignore[attr-defined]  # an async generator

        with pytest.raises(nats.errors.Error):
            await gateway_js.publish(f"{JOBS_SUBJECT}.{asset}", b"{}")
        with pytest.raises(nats.errors.Error):
            await gateway_js.delete_stream(JOBS_STREAM)
        with pytest.raises(nats.errors.Error):
            await gateway_js.delete_stream(EVENTS_STREAM)
        await gateway.flush()
        assert any("permissions violation" in str(error).lower() for error in gateway_errors), gateway_errors
        # Forged events are refused too: only the orchestrator publishes them.
        await gateway.publish(event_subject(box, asset), b"{}")
        await gateway.flush()
        info = await orchestrator.jetstream(timeout=5).stream_info(EVENTS_STREAM)
        assert info.state.messages == 1
        jobs = await orchestrator.jetstream(timeout=5).stream_info(JOBS_STREAM)
        assert jobs.state.messages == 0
    finally:
        await gateway.close()
        await orchestrator.close()
