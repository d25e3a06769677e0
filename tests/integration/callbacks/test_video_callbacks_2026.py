"""Provider callbacks of the late-2026 video families, through the real stack: fake Kling (unsigned, every
status change, the bare task object), MiniMax (a challenge handshake first, lowercase pushes, then the
``files/retrieve`` follow-up), Seedance on ModelArk (unsigned, every status change) and OpenRouter
(terminal only, HMAC ``t=…,v1=…`` over ``"<t>,<body>"``) call back as
``/work/shared/reference/provider-apis-2026.md`` describes.

Profiles poll every 60 s, so an asset that ends within the 40 s these tests wait was ended by its
callback, which only made the task be polled: exactly one poll, and the progress callbacks before it
made none. Forged callbacks are refused, repeats are harmless, the handshake is echoed, and a Kling
task whose submit answer was lost is adopted by its first (progress) callback and polled at the path
it was submitted to.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from assetgen_dev.calling_back import Callback, CallingBack, openrouter_headers
from assetgen_dev.embedded import free_port
from assetgen_dev.fake_providers import (
    FAIL_TEXT,
    FakeKling,
    FakeMiniMax,
    FakeOpenRouterVideo,
    FakeProvider,
    FakeSeedance,
)
from assetgen_dev.stack import WholeStack, WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_provider_adapter.profiles import load_presets

KEY = "sk-callbacks-video-key-0123"
KLING_KEY = {"access_key": "ak-callbacks-kling", "secret_key": "sk-callbacks-kling-secret"}
OPENROUTER_SECRET = "openrouter-workspace-signing-secret"
WAIT = 40.0  # below the 60 s poll interval: ending within it took the callback
FAMILIES: dict[str, dict[str, Any]] = {
    "kling": {
        "preset": "kling",
        "base_path": "",
        "schema": {"model_name": "kling-v2-6", "prompt": "{{prompt}}", "duration": "5", "mode": "std"},
    },
    "minimax": {
        "preset": "minimax",
        "base_path": "",
        "schema": {"model": "MiniMax-Hailuo-2.3", "prompt": "{{prompt}}", "duration": 6},
    },
    "seedance": {
        "preset": "seedance-ark",
        "base_path": "/api/v3",
        "schema": {
            "model": "dreamina-seedance-2-0-260128",
            "content": [{"type": "text", "text": "{{prompt}}"}],
        },
    },
    "openrouter": {
        "preset": "openrouter-video",
        "base_path": "/api/v1",
        "schema": {"model": "google/veo-3.1", "prompt": "{{prompt}}", "duration": 8},
    },
}


class LosingKling(FakeKling):
    """Creates the task, then answers 502 for prompts containing ``[lose]`` (its answer lost) — late,
    as a proxy giving up would, so the task's first callback reaches us before that answer does."""

    async def create(self, request: web.Request) -> web.Response:
        answer = await super().create(request)
        if answer.status == 200 and "[lose]" in str((await request.json()).get("prompt")):
            await asyncio.sleep(_LOST_ANSWER_DELAY)  # the provider's timing, not a wait for our state
            return web.Response(status=502, text="bad gateway")
        return answer


_LOST_ANSWER_DELAY = 0.5


def _fake(family: str) -> FakeProvider:
    if family == "kling":
        return LosingKling(KLING_KEY["access_key"], KLING_KEY["secret_key"], polls_before_done=10_000)
    fakes = {"minimax": FakeMiniMax, "seedance": FakeSeedance, "openrouter": FakeOpenRouterVideo}
    fake: FakeProvider = fakes[family](KEY, polls_before_done=10_000)
    return fake


def _profile(preset: str) -> dict[str, Any]:
    profile = copy.deepcopy(dict(load_presets()[preset].data))
    profile["poll"]["interval"] = {"initial": "60s", "max": "60s", "min": "60s", "backoff": 1.0}
    profile.pop("limits", None)  # MiniMax's 5 submits a minute would queue this module's tasks
    return profile


@dataclass
class Env:
    system: WholeStack
    box: str
    callers: dict[str, CallingBack]

    @property
    def http(self) -> httpx.AsyncClient:
        return self.system.http


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    fakes = {family: _fake(family) for family in FAMILIES}
    port = free_port()
    overrides = {"public_url": f"http://127.0.0.1:{port}", "callback_secret": "callback-video-secret"}
    async with whole_stack(
        tmp_path_factory.mktemp("video-callbacks"),
        fakes=fakes.values(),
        orchestrator_overrides=overrides,
        gateway_http_port=port,
    ) as system:
        for family, spec in FAMILIES.items():
            provider = {
                "name": family,
                "profile": _profile(spec["preset"]),
                "base_url": fakes[family].base_url + spec["base_path"],
                "api_key": KLING_KEY if family == "kling" else KEY,
                "webhook_secret": OPENROUTER_SECRET if family == "openrouter" else "",
            }
            created = await system.http.post("/api/providers/", json=provider)
            assert created.status_code == 201, created.text
            model = {
                "provider": family,
                "name": f"{family}-video",
                "model_type": "VIDEO",
                "request_schema": spec["schema"],
            }
            created = await system.http.post("/api/models/", json=model)
            assert created.status_code == 201, created.text
        box = (await system.http.post("/api/boxes/", json={"name": "video-callbacks"})).json()["id"]
        callers = {
            family: CallingBack(
                fake, family, after=1.0, secret=OPENROUTER_SECRET if family == "openrouter" else ""
            )
            for family, fake in fakes.items()
        }
        for caller in callers.values():
            await caller.start()
        try:
            yield Env(system, box, callers)
        finally:
            for caller in callers.values():
                await caller.stop()


async def _generate(env: Env, family: str, prompt: str) -> str:
    created = await env.http.post(
        f"/api/boxes/{env.box}/generate/", json={"model": f"{family}-video", "prompt": prompt}
    )
    assert created.status_code == 202, created.text
    return str(created.json()["id"])


async def _asset(env: Env, asset_id: str) -> dict[str, Any]:
    return dict((await env.http.get(f"/api/assets/{asset_id}/")).json())


async def _status(env: Env, asset_id: str, *statuses: str) -> dict[str, Any]:
    answer = await eventually(
        lambda: env.http.get(f"/api/assets/{asset_id}/"),
        lambda response: response.json()["status"] in statuses,
        timeout=WAIT,
        what=f"asset {asset_id} to be {'/'.join(statuses)}",
    )
    return dict(answer.json())


def _polls(fake: FakeProvider, task_id: str) -> int:
    """GETs of the task's status (not its file, MiniMax's files/retrieve or OpenRouter's content)."""
    return sum(
        1
        for method, path, _ in fake.requests
        if method == "GET" and path.endswith(task_id) and not path.startswith("/files/")
    )


def _callbacks(env: Env, family: str, task_id: str) -> list[Callback]:
    return [sent for sent in env.callers[family].sent if sent.task_id == task_id]


async def _history(env: Env, asset_id: str) -> list[str]:
    items = (await env.http.get(f"/api/assets/{asset_id}/history/")).json()["items"]
    return [item["to_status"] for item in items]


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_a_callback_completes_the_asset_with_the_exact_bytes(env: Env, family: str) -> None:
    started = time.monotonic()
    asset_id = await _generate(env, family, f"{family}: a heron at dawn")
    asset = await _status(env, asset_id, "COMPLETED", "FAILED")
    assert asset["status"] == "COMPLETED", asset
    assert time.monotonic() - started < WAIT
    fake, task_id = env.callers[family].fake, asset["external_task_id"]
    async with httpx.AsyncClient(timeout=30) as plain:
        stored = (await plain.get(asset["file_url"])).content
    assert stored == fake.tasks[task_id].result
    assert asset["sha256"] == hashlib.sha256(stored).hexdigest()
    callbacks = _callbacks(env, family, task_id)
    final = [callback for callback in callbacks if not callback.progress]
    progress = [callback for callback in callbacks if callback.progress]
    assert [(callback.status, json.loads(callback.answer)) for callback in final] == [
        (200, {"outcome": "polled"})
    ]
    if family == "openrouter":
        assert progress == []  # OpenRouter calls back on the terminal state only
    else:
        # A status change that is not an ending is answered and changes nothing (no poll).
        assert [(callback.status, json.loads(callback.answer)) for callback in progress] == [
            (200, {"outcome": "ignored"})
        ]
    assert _polls(fake, task_id) == 1
    assert (await _history(env, asset_id)).count("COMPLETED") == 1


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_a_failed_task_called_back_fails_with_the_providers_words(env: Env, family: str) -> None:
    asset_id = await _generate(env, family, f"{family}: [fail] a storm")
    asset = await _status(env, asset_id, "COMPLETED", "FAILED")
    assert asset["status"] == "FAILED", asset
    assert FAIL_TEXT in asset["error_message"], asset
    assert _polls(env.callers[family].fake, asset["external_task_id"]) == 1


async def test_minimax_validates_the_callback_url_by_its_challenge_first(env: Env) -> None:
    asset_id = await _generate(env, "minimax", "minimax: a handshake")
    asset = await _status(env, asset_id, "COMPLETED")
    fake = env.callers["minimax"].fake
    assert isinstance(fake, FakeMiniMax)
    task = fake.tasks[asset["external_task_id"]]
    [handshake] = [item for item in fake.handshakes if item.url == task.request["callback_url"]]
    assert handshake.validated and handshake.seconds < 3.0
    assert json.loads(handshake.answer) == {"challenge": handshake.challenge}
    assert task.extra["file_id"] in fake.retrieved  # the pushed file id still needed files/retrieve
    # Any challenge at a live callback URL is echoed; at an unknown one it is not.
    handshakes = _sample("assetgen_provider_callbacks_total", provider="minimax", outcome="handshake")
    answered = _sample("assetgen_callbacks_total", outcome="answered")
    async with httpx.AsyncClient(timeout=10) as client:
        echoed = await client.post(task.request["callback_url"], json={"challenge": "again-42"})
        assert echoed.status_code == 200 and echoed.json() == {"challenge": "again-42"}
        assert echoed.headers["content-type"].startswith("application/json")
        unknown = (
            task.request["callback_url"].rsplit("/", 1)[0]
            + "/cb1.ast_00000000000000000000000000.1.AAAAAAAAAAAAAAAAAAAAAAAAAAA"
        )
        assert (await client.post(unknown, json={"challenge": "x"})).status_code == 404
    assert (
        _sample("assetgen_provider_callbacks_total", provider="minimax", outcome="handshake")
        == handshakes + 1
    )
    assert _sample("assetgen_callbacks_total", outcome="answered") == answered + 1
    assert (await _asset(env, asset_id))["updated_at"] == asset["updated_at"]


async def test_forged_openrouter_callbacks_are_refused_and_change_nothing(env: Env) -> None:
    caller = env.callers["openrouter"]
    asset_id = await _generate(env, "openrouter", "openrouter: forged")
    held = await eventually(
        lambda: _asset(env, asset_id), lambda a: bool(a["external_task_id"]), timeout=WAIT, what="a task id"
    )
    task_id = held["external_task_id"]
    caller.lose.add(task_id)  # the real callback never comes; polls are a minute apart
    await eventually(lambda: _value(caller._done), lambda done: task_id in done, what="the task to finish")
    task = caller.fake.tasks[task_id]
    url = task.request["callback_url"]
    body, headers = caller.signed(task_id, task)
    before = await _asset(env, asset_id)
    async with httpx.AsyncClient(timeout=10) as client:
        wrong_key = {**headers, **openrouter_headers("not-the-secret", body)}
        stale_body, stale = caller.signed(task_id, task, timestamp=int(time.time()) - 600)
        unsigned = {key: value for key, value in headers.items() if key != "X-OpenRouter-Signature"}
        for forged_body, forged in (
            (body, wrong_key),
            (stale_body, stale),
            (body, unsigned),
            (body + b" ", headers),
        ):
            refused = await client.post(url, content=forged_body, headers=forged)
            assert refused.status_code == 401, refused.text
        other = json.loads(body)
        other["data"]["id"] = "job-someone-elses"
        other_body = json.dumps(other).encode()
        other_headers = {**headers, **openrouter_headers(OPENROUTER_SECRET, other_body)}
        assert (await client.post(url, content=other_body, headers=other_headers)).status_code == 404
        still = await _asset(env, asset_id)
        assert still["status"] == "PROCESSING" and still["updated_at"] == before["updated_at"]
        assert _polls(caller.fake, task_id) == 0
        real = await client.post(url, content=body, headers=headers)
        assert real.status_code == 200 and real.json()["outcome"] == "polled", real.text
    done = await _status(env, asset_id, "COMPLETED")
    assert done["sha256"] == hashlib.sha256(task.result).hexdigest()


async def test_an_unsigned_familys_callback_at_a_forged_url_is_refused(env: Env) -> None:
    """Kling signs nothing: the token's MAC over the asset attempt is what a forger cannot make."""
    caller = env.callers["kling"]
    asset_id = await _generate(env, "kling", "kling: forged url")
    held = await eventually(
        lambda: _asset(env, asset_id), lambda a: bool(a["external_task_id"]), timeout=WAIT, what="a task id"
    )
    task_id = held["external_task_id"]
    caller.lose.add(task_id)
    await eventually(lambda: _value(caller._done), lambda done: task_id in done, what="the task to finish")
    task = caller.fake.tasks[task_id]
    url = task.request["callback_url"]
    base, token = url.rsplit("/", 1)
    prefix, asset, attempt, mac = token.split(".")
    forged_mac = "A" * len(mac) if mac != "A" * len(mac) else "B" * len(mac)
    body, headers = caller.signed(task_id, task)
    async with httpx.AsyncClient(timeout=10) as client:
        for forged in (
            f"{prefix}.{asset}.{attempt}.{forged_mac}",
            f"{prefix}.{asset}.{int(attempt) + 1}.{mac}",
        ):
            refused = await client.post(f"{base}/{forged}", content=body, headers=headers)
            assert refused.status_code == 404, refused.text
        assert (await _asset(env, asset_id))["status"] == "PROCESSING"
        assert _polls(caller.fake, task_id) == 0
        real = await client.post(url, content=body, headers=headers)
        assert real.status_code == 200 and real.json()["outcome"] == "polled", real.text
    await _status(env, asset_id, "COMPLETED")


@pytest.mark.parametrize("family", list(FAMILIES))
async def test_repeated_callbacks_are_harmless(env: Env, family: str) -> None:
    asset_id = await _generate(env, family, f"{family}: said twice")
    asset = await _status(env, asset_id, "COMPLETED")
    caller, task_id = env.callers[family], asset["external_task_id"]
    [final] = [callback for callback in _callbacks(env, family, task_id) if not callback.progress]
    polls = _polls(caller.fake, task_id)
    async with httpx.AsyncClient(timeout=10) as client:
        # Ark repeats a terminal callback up to three times; Kling and MiniMax report every change.
        for _ in range(3):
            body, headers = caller.signed(task_id, caller.fake.tasks[task_id])
            again = await client.post(final.url, content=body, headers=headers)
            assert again.status_code == 200 and again.json()["outcome"] == "ignored", again.text
    after = await _asset(env, asset_id)
    assert after["status"] == "COMPLETED" and after["updated_at"] == asset["updated_at"]
    assert _polls(caller.fake, task_id) == polls
    assert (await _history(env, asset_id)).count("COMPLETED") == 1


async def test_a_kling_task_whose_answer_was_lost_is_adopted_and_polled_where_it_was_submitted(
    env: Env,
) -> None:
    asset_id = await _generate(env, "kling", "kling: [lose] the answer")
    asset = await _status(env, asset_id, "COMPLETED", "FAILED")
    assert asset["status"] == "COMPLETED", asset
    fake = env.callers["kling"].fake
    # One task: the lost submission was never sent again.
    [task] = [task for task in fake.tasks.values() if task.prompt == "kling: [lose] the answer"]
    assert asset["external_task_id"] == task.id and asset["error_message"] == ""
    async with httpx.AsyncClient(timeout=30) as plain:
        assert (await plain.get(asset["file_url"])).content == task.result
    # Adopted by the "processing" callback (any state tells the task exists), ended by the "succeed" one.
    answers = [json.loads(callback.answer)["outcome"] for callback in _callbacks(env, "kling", task.id)]
    assert answers == ["adopted", "polled"]
    polled = {path for method, path, _ in fake.requests if method == "GET" and path.endswith(f"/{task.id}")}
    assert polled == {f"/v1/videos/text2video/{task.id}", f"/files/{task.id}"}
    history = (await env.http.get(f"/api/assets/{asset_id}/history/")).json()["items"]
    assert "waiting_callback" in [item["step"] for item in history]
    assert "FAILED" not in [item["to_status"] for item in history]


async def _value(value: Any) -> Any:
    return value


def _sample(name: str, **labels: str) -> float:
    """A counter's value in this process (the services run in it)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0
