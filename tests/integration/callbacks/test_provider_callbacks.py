"""Provider callbacks in, through the real stack: fake Kie (HMAC), Replicate (Standard Webhooks), fal
(ED25519 against a JWKS) and Luma (unsigned) call back when their task finishes.

Replicate's secret is not stored: the adapter asks the provider for it. Profiles poll every 60 s, so
an asset that completes within the 40 s these tests wait was completed by its callback; the callback
only made the task be polled (the poll found it done). Forged, stale and unknown callbacks are
refused and change nothing; a repeat is ignored; a lost callback is found by the (sparse) safety
poll; a callback for a submission whose answer was lost adopts the task, which ends once (COMPLETED),
and one that never comes fails it once, at the deadline.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from assetgen_dev.calling_back import CallingBack, FalKeys, kie_headers
from assetgen_dev.embedded import free_port
from assetgen_dev.fake_providers.fal import FakeFal
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs, fixed
from assetgen_dev.fake_providers.luma import FakeLuma
from assetgen_dev.fake_providers.replicate import FakeReplicate
from assetgen_dev.stack import WholeStack, WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_dev.webhook_receiver import WebhookReceiver
from assetgen_provider_adapter.profiles import load_presets

KEY = "callbacks-provider-key"
KIE_SECRET = "kie-webhook-hmac-key"
REPLICATE_SECRET = "whsec_" + "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTAx"
WAIT = 40.0  # below the 60 s poll interval: completing within it took the callback
SCHEMAS: dict[str, dict[str, Any]] = {
    "kie": {"model": "demo/image", "input": {"prompt": "{{prompt}}"}},
    "replicate": {"version": "v1", "input": {"prompt": "{{prompt}}"}},
    "fal": {"prompt": "{{prompt}}"},
    "luma": {"prompt": "{{prompt}}", "model": "ray-2"},
}
PRESETS = {"kie": "kie-ai", "replicate": "replicate", "fal": "fal", "luma": "luma"}
ENDPOINTS = {"fal": "/fal-ai/flux/schnell", "luma": ""}
CALLBACK_DEADLINE = "4s"  # of the provider whose callbacks are all lost: an unknown outcome ends then


class LosingKie(FakeKieJobs):
    """Creates the task, then answers 502 for prompts containing ``[lose]`` (its answer lost)."""

    async def create_task(self, request: web.Request) -> web.Response:
        answer = await super().create_task(request)
        if "[lose]" in str(self.last_submit):
            return web.Response(status=502, text="bad gateway")
        return answer


def _profile(
    preset: str, *, interval: str, safety: str = "5m", jwks: str = "", deadline: str = ""
) -> dict[str, Any]:
    profile = copy.deepcopy(dict(load_presets()[preset].data))
    profile["poll"]["interval"] = {"initial": interval, "max": interval, "min": interval, "backoff": 1.0}
    if deadline:
        profile["poll"]["deadline"] = deadline
    profile["webhook"]["safety_poll"] = safety
    if jwks:
        profile["webhook"]["verify"]["jwks_url"] = jwks
    return profile


@dataclass
class Env:
    system: WholeStack
    box: str
    callers: dict[str, CallingBack]
    safety: CallingBack
    silent: CallingBack
    hooks: WebhookReceiver

    @property
    def http(self) -> httpx.AsyncClient:
        return self.system.http


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    fal_keys = FalKeys()
    await fal_keys.start()
    fakes: dict[str, Any] = {
        "kie": LosingKie(KEY, timing=fixed(1.0), polls_before_done=0),
        "replicate": FakeReplicate(KEY, polls_before_done=10_000),
        "fal": FakeFal(KEY, polls_before_done=10_000),
        "luma": FakeLuma(KEY, polls_before_done=10_000),
    }
    safety_fake = FakeKieJobs(KEY, timing=fixed(1.0), polls_before_done=0)
    silent_fake = LosingKie(KEY, timing=fixed(1.0), polls_before_done=0)
    hooks = WebhookReceiver()
    await hooks.start()
    port = free_port()
    overrides = {
        "public_url": f"http://127.0.0.1:{port}",
        "callback_secret": "callback-test-secret",
        "webhook_allowed_networks": ("127.0.0.0/8",),
    }
    async with whole_stack(
        tmp_path_factory.mktemp("callbacks"),
        fakes=[*fakes.values(), safety_fake, silent_fake],
        orchestrator_overrides=overrides,
        gateway_http_port=port,
    ) as system:
        secrets = {"kie": KIE_SECRET, "replicate": REPLICATE_SECRET}
        # Replicate's is not stored: the adapter asks the provider for it (GET /v1/webhooks/default/secret).
        fakes["replicate"].webhook_secret = REPLICATE_SECRET
        for family, fake in fakes.items():
            base = fake.base_url + ("/dream-machine/v1" if family == "luma" else "")
            body = {
                "name": family,
                "profile": _profile(PRESETS[family], interval="60s", jwks=fal_keys.url),
                "base_url": base,
                "api_key": KEY,
                "webhook_secret": secrets.get(family, "") if family != "replicate" else "",
            }
            created = await system.http.post("/api/providers/", json=body)
            assert created.status_code == 201, created.text
            model = {
                "provider": family,
                "name": f"{family}-img",
                "model_type": "IMAGE",
                "request_schema": SCHEMAS[family],
            }
            if ENDPOINTS.get(family):
                model["api_endpoint"] = ENDPOINTS[family]
            assert (await system.http.post("/api/models/", json=model)).status_code == 201
        safety_provider = {
            "name": "kie-safety",
            "profile": _profile("kie-ai", interval="1s", safety="2s"),
            "base_url": safety_fake.base_url,
            "api_key": KEY,
            "webhook_secret": KIE_SECRET,
        }
        assert (await system.http.post("/api/providers/", json=safety_provider)).status_code == 201
        model = {
            "provider": "kie-safety",
            "name": "safety-img",
            "model_type": "IMAGE",
            "request_schema": SCHEMAS["kie"],
        }
        assert (await system.http.post("/api/models/", json=model)).status_code == 201
        silent_provider = {
            "name": "kie-silent",
            "profile": _profile("kie-ai", interval="60s", deadline=CALLBACK_DEADLINE),
            "base_url": silent_fake.base_url,
            "api_key": KEY,
            "webhook_secret": KIE_SECRET,
        }
        assert (await system.http.post("/api/providers/", json=silent_provider)).status_code == 201
        model = {**model, "provider": "kie-silent", "name": "silent-img"}
        assert (await system.http.post("/api/models/", json=model)).status_code == 201
        hook = await system.http.post("/api/webhooks/", json={"url": hooks.url})
        assert hook.status_code == 201, hook.text
        box = (await system.http.post("/api/boxes/", json={"name": "callbacks"})).json()["id"]
        callers = {
            family: CallingBack(fake, family, after=1.0, secret=secrets.get(family, ""), fal_keys=fal_keys)
            for family, fake in fakes.items()
        }
        safety = CallingBack(safety_fake, "kie", after=1.0, secret=KIE_SECRET, lose_all=True)
        silent = CallingBack(silent_fake, "kie", after=1.0, secret=KIE_SECRET, lose_all=True)
        for caller in [*callers.values(), safety, silent]:
            await caller.start()
        try:
            yield Env(system, box, callers, safety, silent, hooks)
        finally:
            for caller in [*callers.values(), safety, silent]:
                await caller.stop()
            await fal_keys.stop()
            await hooks.stop()


async def _generate(env: Env, model: str, prompt: str) -> str:
    created = await env.http.post(f"/api/boxes/{env.box}/generate/", json={"model": model, "prompt": prompt})
    assert created.status_code == 202, created.text
    return str(created.json()["id"])


async def _status(env: Env, asset_id: str, *statuses: str, timeout: float = WAIT) -> dict[str, Any]:
    answer = await eventually(
        lambda: env.http.get(f"/api/assets/{asset_id}/"),
        lambda response: response.json()["status"] in statuses,
        timeout=timeout,
        what=f"asset {asset_id} to be {'/'.join(statuses)}",
    )
    return dict(answer.json())


@pytest.mark.parametrize("family", ["kie", "replicate", "fal", "luma"])
async def test_a_callback_completes_the_asset_long_before_the_next_poll(env: Env, family: str) -> None:
    started = time.monotonic()
    asset_id = await _generate(env, f"{family}-img", f"{family} lighthouse")
    asset = await _status(env, asset_id, "COMPLETED", "FAILED")
    assert asset["status"] == "COMPLETED", asset
    assert asset["sha256"] and asset["file_url"]
    assert time.monotonic() - started < WAIT
    [callback] = [sent for sent in env.callers[family].sent if sent.task_id == asset["external_task_id"]]
    assert callback.status == 200
    history = (await env.http.get(f"/api/assets/{asset_id}/history/")).json()["items"]
    assert [item["to_status"] for item in history][-1] == "COMPLETED"


async def test_forged_stale_and_unknown_callbacks_change_nothing(env: Env) -> None:
    caller = env.callers["kie"]
    asset_id = await _generate(env, "kie-img", "forged [hold]")
    asset = await _status(env, asset_id, "PROCESSING")
    task_id = asset["external_task_id"]
    caller.lose.add(task_id)  # the real callback never comes; polls are a minute apart
    await eventually(
        lambda: _async(env.callers["kie"]._done), lambda done: task_id in done, what="the task to finish"
    )
    task = caller.fake.tasks[task_id]
    url = task.request["callBackUrl"]
    refused_before = _sample("assetgen_callbacks_total", outcome="refused")
    kie_refused_before = _sample("assetgen_provider_callbacks_total", provider="kie", outcome="refused")
    body, headers = caller.signed(task_id, task)
    async with httpx.AsyncClient(timeout=10) as client:
        forged = await client.post(
            url, content=body, headers={**headers, **kie_headers("not-the-key", task_id)}
        )
        assert forged.status_code == 401, forged.text
        stale_body, stale = caller.signed(task_id, task, timestamp=int(time.time()) - 600)
        assert (await client.post(url, content=stale_body, headers=stale)).status_code == 401
        unsigned = {key: value for key, value in headers.items() if not key.startswith("X-Webhook")}
        assert (await client.post(url, content=body, headers=unsigned)).status_code == 401
        unknown = url.rsplit("/", 1)[0] + "/cb1.ast_00000000000000000000000000.1.AAAAAAAAAAAAAAAAAAAAAAAAAAA"
        assert (await client.post(unknown, content=body, headers=headers)).status_code == 404
        assert (await client.post(url + "x", content=body, headers=headers)).status_code == 404
        other_task = caller.signed("task_someone_elses", task)
        assert (await client.post(url, content=other_task[0], headers=other_task[1])).status_code == 404
        assert _sample("assetgen_callbacks_total", outcome="refused") == refused_before + 3
        assert (
            _sample("assetgen_provider_callbacks_total", provider="kie", outcome="refused")
            == kie_refused_before + 3
        )
        still = (await env.http.get(f"/api/assets/{asset_id}/")).json()
        assert still["status"] == "PROCESSING" and still["updated_at"] == asset["updated_at"]
        # The real callback, late: the task is polled and the asset completes; a replay is ignored.
        real = await client.post(url, content=body, headers=headers)
        assert real.status_code == 200 and real.json()["outcome"] == "polled", real.text
        done = await _status(env, asset_id, "COMPLETED")
        replayed = await client.post(url, content=body, headers=headers)
        assert replayed.status_code == 200 and replayed.json()["outcome"] == "ignored"
    after = (await env.http.get(f"/api/assets/{asset_id}/")).json()
    assert after["updated_at"] == done["updated_at"] and after["status"] == "COMPLETED"


async def test_a_lost_callback_is_caught_by_the_safety_poll(env: Env) -> None:
    asset_id = await _generate(env, "safety-img", "lost callback")
    asset = await _status(env, asset_id, "COMPLETED")
    assert env.safety.sent == []
    task = env.safety.fake.tasks[asset["external_task_id"]]
    assert task.request["callBackUrl"].endswith(
        tuple("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_")
    )
    assert task.polls >= 1


async def test_a_callback_adopts_a_submission_whose_answer_was_lost(env: Env) -> None:
    asset_id = await _generate(env, "kie-img", "[lose] the answer")
    asset = await _status(env, asset_id, "COMPLETED", "FAILED")
    assert asset["status"] == "COMPLETED", asset
    fake = env.callers["kie"].fake
    [task_id] = [task.id for task in fake.tasks.values() if task.prompt == "[lose] the answer"]
    assert asset["external_task_id"] == task_id and asset["attempt"] == 1 and asset["error_message"] == ""
    assert [task.prompt for task in fake.tasks.values()].count("[lose] the answer") == 1  # never resent
    [callback] = [sent for sent in env.callers["kie"].sent if sent.task_id == task_id]
    assert callback.status == 200 and json.loads(callback.body)["data"]["taskId"] == task_id
    history = (await env.http.get(f"/api/assets/{asset_id}/history/")).json()["items"]
    # One ending: it waited PROCESSING for the callback, never FAILED first.
    assert [item["to_status"] for item in history].count("COMPLETED") == 1
    assert "FAILED" not in [item["to_status"] for item in history]
    [waiting] = [item for item in history if item["step"] == "waiting_callback"]
    assert waiting["to_status"] == "PROCESSING"
    assert waiting["message"] == "outcome unknown at kie: waiting for its callback"
    events = await _delivered(env, asset_id, "asset.completed")
    assert events == ["asset.processing", "asset.completed"]


async def test_a_lost_answer_whose_callback_never_comes_fails_once_at_the_deadline(env: Env) -> None:
    asset_id = await _generate(env, "silent-img", "[lose] and no callback")
    asset = await _status(env, asset_id, "COMPLETED", "FAILED")
    assert asset["status"] == "FAILED", asset
    assert asset["error_message"].startswith("outcome unknown at kie-silent: "), asset
    assert asset["error_message"].endswith(f"; no callback came within {CALLBACK_DEADLINE}")
    assert asset["external_task_id"] == ""
    assert [task.prompt for task in env.silent.fake.tasks.values()] == ["[lose] and no callback"]
    history = (await env.http.get(f"/api/assets/{asset_id}/history/")).json()["items"]
    assert [(item["to_status"], item["step"]) for item in history][-2:] == [
        ("PROCESSING", "waiting_callback"),
        ("FAILED", "done"),
    ]
    assert [item["to_status"] for item in history].count("FAILED") == 1
    assert await _delivered(env, asset_id, "asset.failed") == ["asset.processing", "asset.failed"]
    # A callback after the ending changes nothing: the asset ended once.
    [task] = env.silent.fake.tasks.values()
    body, headers = env.silent.signed(task.id, task)
    async with httpx.AsyncClient(timeout=10) as client:
        late = await client.post(task.request["callBackUrl"], content=body, headers=headers)
    assert late.status_code == 200 and late.json()["outcome"] == "ignored", late.text
    after = (await env.http.get(f"/api/assets/{asset_id}/")).json()
    assert after["status"] == "FAILED" and after["updated_at"] == asset["updated_at"]


async def _delivered(env: Env, asset_id: str, last: str) -> list[str]:
    """The event types delivered to the project's webhook about an asset, once ``last`` has been."""

    def events() -> list[str]:
        bodies = [json.loads(item.body) for item in env.hooks.received if item.status == 200]
        return [body["type"] for body in bodies if body["data"]["id"] == asset_id]

    await eventually(lambda: _async(events()), lambda seen: last in seen, what=f"{last} of {asset_id}")
    return events()


async def _async(value: Any) -> Any:
    return value


def _sample(name: str, **labels: str) -> float:
    """A counter's value in this process (the services run in it)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
