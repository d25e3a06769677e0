"""Live status through the real stack: gRPC WatchBox/WatchAsset, Server-Sent Events and the WebSocket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import httpx
import pytest

from assetgen.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from assetgen_dev.demo_provider import demo_provider
from assetgen_dev.stack import WholeStack, WholeStackFactory

PROVIDER_KEY = "watch-provider-key"
IMAGE_SCHEMA = {"model": "demo/image", "input": {"prompt": "{{prompt}}"}}
TERMINAL = ("COMPLETED", "FAILED", "CANCELED")


# The running system: its services (``stack``), an authenticated ``http`` client, the ``provider_url``.
Env = WholeStack


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    provider = demo_provider(PROVIDER_KEY, delay=0.3)
    async with whole_stack(tmp_path_factory.mktemp("watch"), fakes=[provider]) as system:
        await system.add_provider("kie", provider)
        await system.add_model("kie", "img", "IMAGE", IMAGE_SCHEMA)
        yield system


async def _box(env: Env) -> str:
    response = await env.http.post("/api/boxes/", json={"name": "watched"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _watch_token(env: Env, box: str) -> str:
    response = await env.http.post(f"/api/boxes/{box}/watch-token/")
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


async def _generate(env: Env, box: str, prompt: str = "a fox") -> str:
    response = await env.http.post(f"/api/boxes/{box}/generate/", json={"model": "img", "prompt": prompt})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


@dataclass
class SseEvent:
    """One parsed Server-Sent Event (comments dropped)."""

    id: str
    event: str
    data: dict[str, Any]


async def _sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in fields:
                data = json.loads(fields["data"])
                yield SseEvent(fields.get("id", ""), fields.get("event", "message"), data)
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")


async def _collect_sse(
    env: Env, path: str, *, until: Any, headers: dict[str, str] | None = None, timeout: float = 60
) -> list[SseEvent]:
    """Reads events from ``path`` until ``until(events)`` holds (or the server ends the stream)."""
    events: list[SseEvent] = []
    async with asyncio.timeout(timeout):
        async with env.http.stream("GET", path, headers=headers or {}) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            async for event in _sse_events(response):
                events.append(event)
                if until(events):
                    break
    return events


def _statuses(events: list[SseEvent], asset: str) -> list[str]:
    return [e.data["status"] for e in events if e.data.get("asset_id") == asset]


def _ordered_subsequence(seen: list[str], wanted: list[str]) -> bool:
    remaining = iter(seen)
    return all(any(item == want for item in remaining) for want in wanted)


async def test_sse_box_stream_shows_the_whole_generation_and_a_reconnect_misses_nothing(env: Env) -> None:
    box = await _box(env)
    ready = asyncio.Event()
    events: list[SseEvent] = []

    async def watch() -> None:
        async with asyncio.timeout(60):
            async with env.http.stream("GET", f"/api/boxes/{box}/events/") as response:
                assert response.status_code == 200
                ready.set()  # headers come once the watcher is subscribed
                async for event in _sse_events(response):
                    events.append(event)
                    if event.data["status"] in TERMINAL:
                        return

    watcher = asyncio.create_task(watch())
    await asyncio.wait_for(ready.wait(), 30)
    asset = await _generate(env, box)
    await watcher
    statuses = _statuses(events, asset)
    assert _ordered_subsequence(statuses, ["PENDING", "PROCESSING", "COMPLETED"]), statuses
    assert all(e.event == "asset" and not e.data["snapshot"] for e in events)
    sequences = [int(e.id) for e in events]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert events[-1].data["file_url"].startswith("http")

    # Reconnecting after the first event replays exactly the rest, with no snapshot in between.
    resumed = await _collect_sse(
        env,
        f"/api/boxes/{box}/events",
        headers={"Last-Event-ID": events[0].id},
        until=lambda got: got[-1].data["status"] in TERMINAL,
    )
    assert [e.id for e in resumed] == [e.id for e in events[1:]]
    assert [e.data for e in resumed] == [e.data for e in events[1:]]


async def test_new_watcher_gets_the_current_state_first(env: Env) -> None:
    box = await _box(env)
    first = await _generate(env, box, "one")
    done = await _collect_sse(env, f"/api/assets/{first}/events/", until=lambda got: False)
    # An asset stream ends by itself after the terminal event.
    assert done[-1].data["status"] == "COMPLETED" and done[-1].data["asset_id"] == first

    snapshot = await _collect_sse(env, f"/api/boxes/{box}/events/", until=lambda got: True)
    assert snapshot[0].data["snapshot"] is True
    assert snapshot[0].data["asset_id"] == first and snapshot[0].data["status"] == "COMPLETED"
    assert snapshot[0].data["file_url"].startswith("http")

    again = await _collect_sse(env, f"/api/assets/{first}/events", until=lambda got: False)
    assert len(again) == 1 and again[0].data["snapshot"] is True and again[0].data["status"] == "COMPLETED"

    # EventSource reconnects by itself after the stream ends; 204 tells it there is nothing more.
    for last_id in (done[-1].id, again[0].id):
        resumed = await env.http.get(f"/api/assets/{first}/events/", headers={"Last-Event-ID": last_id})
        assert resumed.status_code == 204, resumed.text


async def test_grpc_watch_box_and_watch_asset(env: Env) -> None:
    metadata = [("authorization", f"Bearer {env.stack.token}")]
    box = await _box(env)
    async with grpc.aio.insecure_channel(env.stack.grpc_address) as channel:
        api = gateway_pb2_grpc.GatewayServiceStub(channel)
        call = api.WatchBox(gateway_pb2.WatchBoxRequest(box_id=box), metadata=metadata)
        try:
            await call.wait_for_connection()
            # The gateway subscribes before reading further; a generation right away is not missed.
            asset = await _generate(env, box, "grpc watch")
            seen: list[gateway_pb2.AssetEvent] = []
            async with asyncio.timeout(60):
                async for event in call:
                    seen.append(event)
                    if event.status == common_pb2.ASSET_STATUS_COMPLETED:
                        break
        finally:
            call.cancel()
        names = [common_pb2.AssetStatus.Name(e.status).removeprefix("ASSET_STATUS_") for e in seen]
        assert _ordered_subsequence(names, ["PENDING", "PROCESSING", "COMPLETED"]), names
        assert {e.asset_id for e in seen} == {asset} and {e.box_id for e in seen} == {box}
        assert seen[-1].file_url and seen[-1].at.seconds > 0

        # WatchAsset after the fact: the current state, then the stream ends.
        request = gateway_pb2.WatchAssetRequest(asset_id=asset)
        replay = [e async for e in api.WatchAsset(request, metadata=metadata)]
        assert [e.status for e in replay] == [common_pb2.ASSET_STATUS_COMPLETED]
        assert replay[0].snapshot

        # Resuming from the first event's sequence replays the rest, ending at the terminal event.
        resumed = [
            e
            async for e in api.WatchAsset(
                gateway_pb2.WatchAssetRequest(asset_id=asset, after_sequence=seen[0].sequence),
                metadata=metadata,
            )
        ]
        assert [e.sequence for e in resumed] == [e.sequence for e in seen[1:]]

        with pytest.raises(grpc.aio.AioRpcError) as missing:
            async for _ in api.WatchBox(gateway_pb2.WatchBoxRequest(box_id="box_missing"), metadata=metadata):
                pass
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            async for _ in api.WatchBox(gateway_pb2.WatchBoxRequest(box_id=box)):
                pass
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            async for _ in api.WatchAsset(gateway_pb2.WatchAssetRequest(asset_id="a.>"), metadata=metadata):
                pass
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_websocket_with_query_token_follows_the_box(env: Env) -> None:
    box = await _box(env)
    received: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        token = await _watch_token(env, box)
        url = f"{env.stack.http_url}/ws/boxes/{box}/?token={token}"
        async with session.ws_connect(url) as socket:
            asset = await _generate(env, box, "over a websocket")
            async with asyncio.timeout(60):
                async for message in socket:
                    assert message.type == aiohttp.WSMsgType.TEXT
                    received.append(json.loads(message.data))
                    if received[-1]["status"] in TERMINAL:
                        break
    statuses = [m["status"] for m in received if m["asset_id"] == asset]
    assert _ordered_subsequence(statuses, ["PENDING", "PROCESSING", "COMPLETED"]), statuses
    assert all(isinstance(m["sequence"], int) and m["sequence"] > 0 for m in received)


async def test_streams_refuse_missing_or_wrong_tokens_and_unknown_ids(env: Env) -> None:
    box = await _box(env)
    async with httpx.AsyncClient(base_url=env.stack.http_url, timeout=10) as anonymous:
        assert (await anonymous.get(f"/api/boxes/{box}/events/")).status_code == 401
        wrong = await anonymous.get(f"/api/boxes/{box}/events/", params={"token": "wrong"})
        assert wrong.status_code == 401
        assert (await anonymous.get(f"/ws/boxes/{box}/")).status_code == 401
        # ?token= is accepted only on the streaming routes.
        assert (await anonymous.get("/api/boxes/", params={"token": env.stack.token})).status_code == 401
        # A full API key is never accepted in a URL (issue 21); a watch token for the box is.
        full_key = await anonymous.get(f"/api/boxes/{box}/events", params={"token": env.stack.token})
        assert full_key.status_code == 401
        async with anonymous.stream(
            "GET", f"/api/boxes/{box}/events", params={"token": await _watch_token(env, box)}
        ) as response:
            assert response.status_code == 200
    missing = await env.http.get("/api/boxes/box_missing/events/")
    assert missing.status_code == 404 and missing.json()["error"]
    assert (await env.http.get("/api/assets/ast_missing/events/")).status_code == 404
    bad_id = await env.http.get(f"/api/boxes/{box}/events/", headers={"Last-Event-ID": "nope"})
    assert bad_id.status_code == 400
