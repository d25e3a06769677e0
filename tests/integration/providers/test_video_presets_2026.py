"""The video API families of late 2026 end to end: public HTTP API → orchestrator → adapter → a fake
of that family (``/work/shared/reference/provider-apis-2026.md`` shapes) → S3.

Each case ends COMPLETED with exactly the provider's bytes in S3, or FAILED with the provider's own
words (moderation, a failed task, ``expired``). All generations start together in a module fixture
(the presets' real poll intervals are seconds long); each test waits for its own asset.
"""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
import pytest

from assetgen.v1 import provider_adapter_pb2, provider_adapter_pb2_grpc
from assetgen_dev.fake_providers import (
    DASHSCOPE_FILTER_TEXT,
    FAIL_TEXT,
    KLING_FILTER_TEXT,
    MINIMAX_FILTER_TEXT,
    OPENROUTER_FILTER_TEXT,
    SEEDANCE_FILTER_TEXT,
    FakeDashScope,
    FakeKling,
    FakeMiniMax,
    FakeOpenRouterVideo,
    FakeProvider,
    FakeSeedance,
)
from assetgen_dev.stack import Stack, WholeStackFactory
from assetgen_dev.testing import eventually

KEY = "sk-test-video-key-0123456789"
KLING_ACCESS, KLING_SECRET = "ak-test-kling-0123", "sk-test-kling-secret-456789"
KLING_KEY = {"access_key": KLING_ACCESS, "secret_key": KLING_SECRET}

SEEDANCE = {
    "model": "dreamina-seedance-2-0-260128",
    "content": [{"type": "text", "text": "{{prompt}}"}],
    "duration": "{{duration?}}",
    "ratio": "16:9",
}
WAN = {
    "model": "wan2.6-t2v",
    "input": {"prompt": "{{prompt}}"},
    "parameters": {"size": "1280*720", "duration": 5},
}
OPENROUTER = {"model": "google/veo-3.1", "prompt": "{{prompt}}", "duration": 8, "resolution": "720p"}
KLING = {"model_name": "kling-v2-6", "prompt": "{{prompt}}", "duration": "5", "mode": "std"}
KLING_I2V = {**KLING, "image": "{{image_url}}"}
MINIMAX = {"model": "MiniMax-Hailuo-2.3", "prompt": "{{prompt}}", "duration": 6, "resolution": "768P"}


# The README's worked example: Kling as an inline profile, leaving out what the provider
# (base_url) and the model (api_endpoint, the body) give.
KLING_INLINE: dict[str, Any] = {
    "auth": {
        "in": "header",
        "name": "Authorization",
        "template": "Bearer {{jwt}}",
        "jwt": {
            "secret": "{{secret_key}}",
            "ttl": "30m",
            "not_before": "5s",
            "claims": {"iss": "{{access_key}}", "exp": "{{exp}}", "nbf": "{{nbf}}"},
        },
    },
    "submit": {
        "request": {"method": "POST", "body": {"type": "json"}},
        "task_id": "data.task_id",
        "accept_when": "code == `0`",
    },
    "poll": {
        "request": {"method": "GET", "url": "{{submit_path}}/{{task_id}}"},
        "state": {
            "path": "data.task_status",
            "map": {
                "submitted": "PENDING",
                "processing": "PROCESSING",
                "succeed": "COMPLETED",
                "failed": "FAILED",
            },
        },
        "interval": {"initial": "1s", "backoff": 1.5, "max": "5s"},
        "deadline": "2h",
    },
    "result": {"source": "status", "outputs": [{"kind": "url", "path": "data.task_result.videos[].url"}]},
    "error": {"call_message": "message", "call_code": "code", "task_message": "data.task_status_msg"},
    "http_errors": {"retryable": [408, 500, 502, 503, 504], "retry_when": "code == `1302` || code == `1303`"},
}


def _kling() -> FakeProvider:
    return FakeKling(KLING_ACCESS, KLING_SECRET)


@dataclass
class Case:
    """One generation through one preset and what it must end as."""

    id: str
    preset: str
    fake: Callable[[], FakeProvider]
    schema: dict[str, Any]
    base_path: str = ""
    marker: str = ""
    expect: str = "COMPLETED"
    error_text: str = FAIL_TEXT
    credentials: Any = KEY
    api_endpoint: str = ""
    with_image: bool = False
    profile: dict[str, Any] | None = None

    @property
    def prompt(self) -> str:
        return f"{self.id}: a red fox {self.marker}".strip()


def _family(
    preset: str,
    fake: Callable[[], FakeProvider],
    schema: dict[str, Any],
    base_path: str,
    credentials: Any = KEY,
    **extra: str,
) -> list[Case]:
    """The usual cases of a family: success, a failed task, and any marker → expected text given."""
    cases = [
        Case(preset, preset, fake, schema, base_path, credentials=credentials),
        Case(
            f"{preset}-fail",
            preset,
            fake,
            schema,
            base_path,
            marker="[fail]",
            expect="FAILED",
            credentials=credentials,
        ),
    ]
    for marker, text in extra.items():
        cases.append(
            Case(
                f"{preset}-{marker}",
                preset,
                fake,
                schema,
                base_path,
                marker=f"[{marker}]",
                expect="FAILED",
                error_text=text,
                credentials=credentials,
            )
        )
    return cases


CASES = [
    *_family(
        "seedance-ark",
        lambda: FakeSeedance(KEY),
        SEEDANCE,
        "/api/v3",
        filtered=SEEDANCE_FILTER_TEXT,
        expired="expired",
    ),
    *_family(
        "dashscope-wan",
        lambda: FakeDashScope(KEY),
        WAN,
        "",
        filtered=DASHSCOPE_FILTER_TEXT,
        unknown="the task is missing or expired",
    ),
    *_family(
        "openrouter-video",
        lambda: FakeOpenRouterVideo(KEY),
        OPENROUTER,
        "/api/v1",
        filtered=OPENROUTER_FILTER_TEXT,
        expired="expired",
    ),
    *_family("kling", _kling, KLING, "", KLING_KEY, filtered=KLING_FILTER_TEXT),
    Case(
        "kling-image2video",
        "kling",
        _kling,
        KLING_I2V,
        credentials=KLING_KEY,
        api_endpoint="/v1/videos/image2video",
        with_image=True,
    ),
    Case(
        "kling-wrong-secret",
        "kling",
        _kling,
        KLING,
        expect="FAILED",
        error_text="Authorization signature is invalid",
        credentials={"access_key": KLING_ACCESS, "secret_key": "not-the-secret"},
    ),
    *_family("minimax", lambda: FakeMiniMax(KEY), MINIMAX, "", filtered=MINIMAX_FILTER_TEXT),
    Case(
        "kling-inline",
        "",
        _kling,
        KLING_I2V,
        credentials=KLING_KEY,
        api_endpoint="/v1/videos/image2video",
        with_image=True,
        profile=KLING_INLINE,
    ),
    Case(
        "kling-inline-fail",
        "",
        _kling,
        KLING_I2V,
        marker="[fail]",
        expect="FAILED",
        credentials=KLING_KEY,
        api_endpoint="/v1/videos/image2video",
        with_image=True,
        profile=KLING_INLINE,
    ),
    # Held queued/PENDING or running, to be canceled by the tests below.
    Case(
        "seedance-hold", "seedance-ark", lambda: FakeSeedance(KEY), SEEDANCE, "/api/v3", "[hold]", "CANCELED"
    ),
    Case(
        "seedance-running",
        "seedance-ark",
        lambda: FakeSeedance(KEY),
        SEEDANCE,
        "/api/v3",
        "[running]",
        "CANCELED",
    ),
    Case("dashscope-hold", "dashscope-wan", lambda: FakeDashScope(KEY), WAN, "", "[hold]", "CANCELED"),
    Case("dashscope-running", "dashscope-wan", lambda: FakeDashScope(KEY), WAN, "", "[running]", "CANCELED"),
]


@dataclass
class Env:
    """The running system, one fake per case, and each case's asset id."""

    stack: Stack
    http: httpx.AsyncClient
    box: str
    fakes: dict[str, FakeProvider] = field(default_factory=dict)
    assets: dict[str, str] = field(default_factory=dict)


async def _launch(env: Env, case: Case) -> None:
    fake = env.fakes[case.id]
    provider = f"p-{case.id}"
    body: dict[str, Any] = {
        "name": provider,
        "base_url": fake.base_url + case.base_path,
        "api_key": case.credentials,
    }
    if case.profile is not None:
        body["profile"] = case.profile
    else:
        body["preset"] = case.preset
    response = await env.http.post("/api/providers/", json=body)
    assert response.status_code == 201, response.text
    model = {
        "provider": provider,
        "name": f"m-{case.id}",
        "model_type": "VIDEO",
        "request_schema": case.schema,
        "api_endpoint": case.api_endpoint,
    }
    response = await env.http.post("/api/models/", json=model)
    assert response.status_code == 201, response.text
    generate = {"model": f"m-{case.id}", "prompt": case.prompt}
    if case.with_image:
        generate["image_url"] = f"{fake.base_url}/inputs/image.png"
    response = await env.http.post(f"/api/boxes/{env.box}/generate/", json=generate)
    assert response.status_code == 202, response.text
    env.assets[case.id] = response.json()["id"]


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    fakes: dict[str, FakeProvider] = {case.id: case.fake() for case in CASES}
    async with whole_stack(tmp_path_factory.mktemp("video-2026"), fakes=fakes.values()) as system:
        response = await system.http.post("/api/boxes/", json={"name": f"video-{uuid.uuid4().hex[:8]}"})
        assert response.status_code == 201, response.text
        environment = Env(stack=system.stack, http=system.http, box=response.json()["id"], fakes=fakes)
        for case in CASES:
            await _launch(environment, case)
        yield environment


async def _asset(env: Env, case_id: str) -> dict[str, Any]:
    response = await env.http.get(f"/api/assets/{env.assets[case_id]}/")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _wait_terminal(env: Env, case_id: str) -> dict[str, Any]:
    return await eventually(
        lambda: _asset(env, case_id),
        lambda a: a["status"] in ("COMPLETED", "FAILED", "CANCELED"),
        timeout=120,
        what=f"terminal status of {case_id}",
    )


FINISHING = [case for case in CASES if case.expect != "CANCELED"]


@pytest.mark.parametrize("case", FINISHING, ids=[case.id for case in FINISHING])
async def test_generation_through_each_preset(env: Env, case: Case) -> None:
    asset = await _wait_terminal(env, case.id)
    fake = env.fakes[case.id]
    assert asset["status"] == case.expect, asset["error_message"]
    if case.expect == "FAILED":
        assert case.error_text in asset["error_message"], asset
        assert asset["file_url"] == ""
        return
    task = fake.tasks[asset["external_task_id"]]
    async with httpx.AsyncClient(timeout=30) as plain:
        stored = (await plain.get(asset["file_url"])).content
    assert stored == task.result
    assert asset["sha256"] == hashlib.sha256(stored).hexdigest()
    assert asset["content_type"] == "video/mp4"


async def test_expired_says_expired_and_nothing_else(env: Env) -> None:
    for case_id in ("seedance-ark-expired", "openrouter-video-expired"):
        asset = await _wait_terminal(env, case_id)
        assert asset["status"] == "FAILED"
        assert asset["error_message"].endswith("expired"), asset["error_message"]
        assert "state" not in asset["error_message"]


async def test_dashscope_async_header_on_submit_only(env: Env) -> None:
    await _wait_terminal(env, "dashscope-wan")
    sent = env.fakes["dashscope-wan"].requests
    posts = [headers for method, path, headers in sent if method == "POST"]
    polls = [
        headers for method, path, headers in sent if method == "GET" and path.startswith("/api/v1/tasks/")
    ]
    assert posts and all(headers.get("X-DashScope-Async") == "enable" for headers in posts)
    assert polls and not any("X-DashScope-Async" in headers for headers in polls)


async def test_openrouter_result_downloaded_with_the_key(env: Env) -> None:
    asset = await _wait_terminal(env, "openrouter-video")
    assert asset["status"] == "COMPLETED"
    fake = env.fakes["openrouter-video"]
    assert isinstance(fake, FakeOpenRouterVideo)
    assert fake.content_requests == [True]
    async with httpx.AsyncClient(timeout=10) as plain:  # the URL itself is worth nothing without the key
        refused = await plain.get(
            f"{fake.base_url}/api/v1/videos/{asset['external_task_id']}/content?index=0"
        )
    assert refused.status_code == 401


async def _started(env: Env, case_id: str) -> dict[str, Any]:
    return await eventually(
        lambda: _asset(env, case_id), lambda a: bool(a["external_task_id"]), timeout=60, what="a task id"
    )


async def _adapter_cancel(env: Env, case_id: str, task_id: str) -> provider_adapter_pb2.CancelTaskResponse:
    async with grpc.aio.insecure_channel(env.stack.provider_adapter_addr) as channel:
        stub = provider_adapter_pb2_grpc.ProviderAdapterServiceStub(channel)
        response: provider_adapter_pb2.CancelTaskResponse = await stub.CancelTask(
            provider_adapter_pb2.CancelTaskRequest(
                asset_id=env.assets[case_id], model=f"m-{case_id}", task_id=task_id
            ),
            timeout=30,
        )
        return response


@pytest.mark.parametrize(
    ("case_id", "allowed_state"), [("seedance-hold", "queued"), ("dashscope-hold", "PENDING")]
)
async def test_cancel_reaches_the_provider_while_queued(env: Env, case_id: str, allowed_state: str) -> None:
    asset = await _started(env, case_id)
    response = await env.http.post(f"/api/assets/{asset['id']}/cancel/")
    assert response.status_code in (200, 202), response.text
    fake = env.fakes[case_id]
    task = fake.tasks[asset["external_task_id"]]

    async def canceled_there() -> bool:
        return task.canceled

    await eventually(canceled_there, bool, timeout=30, what="the provider's task canceled")
    assert (await _asset(env, case_id))["status"] == "CANCELED"


@pytest.mark.parametrize(
    ("case_id", "state"), [("seedance-running", "running"), ("dashscope-running", "RUNNING")]
)
async def test_cancel_is_refused_clearly_outside_the_allowed_state(
    env: Env, case_id: str, state: str
) -> None:
    asset = await _started(env, case_id)
    fake = env.fakes[case_id]
    response = await _adapter_cancel(env, case_id, asset["external_task_id"])
    assert response.supported and not response.canceled
    assert f"this one is {state!r}, so no cancel was sent" in response.message
    assert not [path for method, path, _ in fake.requests if method == "DELETE" or path.endswith("/cancel")]
    task = fake.tasks[asset["external_task_id"]]
    assert not task.canceled
    # The asset itself is still canceled on our side (and the provider left alone).
    assert (await env.http.post(f"/api/assets/{asset['id']}/cancel/")).status_code in (200, 202)


async def test_kling_signs_a_jwt_and_reuses_it(env: Env) -> None:
    await _wait_terminal(env, "kling")
    fake = env.fakes["kling"]
    assert isinstance(fake, FakeKling)
    assert len(fake.tokens) >= 3  # a submit and at least two polls
    assert len(set(fake.tokens)) == 1, "one token, signed once and reused until near its expiry"
    claims = fake.claims[0]
    assert claims["iss"] == KLING_ACCESS
    assert claims["exp"] - claims["nbf"] == 30 * 60 + 5
    assert KLING_SECRET not in "".join(fake.tokens)


async def test_kling_polls_the_family_it_submitted_to(env: Env) -> None:
    asset = await _wait_terminal(env, "kling-image2video")
    assert asset["status"] == "COMPLETED", asset["error_message"]
    polls = [path for method, path, _ in env.fakes["kling-image2video"].requests if method == "GET"]
    task_polls = [path for path in polls if path.startswith("/v1/videos/")]
    assert task_polls and all(
        path == f"/v1/videos/image2video/{asset['external_task_id']}" for path in task_polls
    )


async def test_minimax_resolves_the_file_id_with_a_second_call(env: Env) -> None:
    asset = await _wait_terminal(env, "minimax")
    assert asset["status"] == "COMPLETED", asset["error_message"]
    fake = env.fakes["minimax"]
    assert isinstance(fake, FakeMiniMax)
    assert len(fake.retrieved) == 1 and fake.retrieved[0].isdigit()
    failed = await _wait_terminal(env, "minimax-fail")
    assert not env.fakes["minimax-fail"].retrieved, "a failed task has no file to resolve"
    assert failed["error_message"].endswith(FAIL_TEXT)


async def test_a_key_without_the_parts_the_auth_uses_is_refused(env: Env) -> None:
    plain = await env.http.post(
        "/api/providers/",
        json={
            "name": "kling-plain",
            "preset": "kling",
            "base_url": "https://api-singapore.klingai.com",
            "api_key": "x",
        },
    )
    assert plain.status_code == 400, plain.text
    assert "access_key, secret_key" in plain.json()["error"]
    half = await env.http.post(
        "/api/providers/",
        json={
            "name": "kling-half",
            "preset": "kling",
            "base_url": "https://api-singapore.klingai.com",
            "api_key": {"access_key": "a"},
        },
    )
    assert half.status_code == 400, half.text
    assert "secret_key" in half.json()["error"]
    assert (await env.http.get("/api/providers/kling-plain/")).status_code == 404
    listing = await env.http.get("/api/providers/")
    assert KLING_SECRET not in listing.text and KLING_ACCESS not in listing.text


async def test_presets_list_sixteen_with_two_retired(env: Env) -> None:
    response = await env.http.get("/api/presets/")
    assert response.status_code == 200, response.text
    presets = {item["name"]: item for item in response.json()["items"]}
    assert len(presets) == 16
    assert {"kling", "minimax", "seedance-ark", "dashscope-wan", "openrouter-video"} <= set(presets)
    retired = {name: item["retired"] for name, item in presets.items() if item["retired"]}
    assert set(retired) == {"openai-videos", "stability-video"}
    assert retired["openai-videos"]["date"] == "2026-09-24"
    assert retired["stability-video"]["reason"]
    assert "gpt-image-2" in presets["openai-images"]["description"]


async def test_a_retired_preset_still_creates_with_a_warning(env: Env) -> None:
    created = await env.http.post(
        "/api/providers/",
        json={
            "name": "old-sora",
            "preset": "openai-videos",
            "base_url": "https://api.openai.com",
            "api_key": "k",
        },
    )
    assert created.status_code == 201, created.text
    assert "retired upstream since 2026-09-24" in created.json()["warning"]
    current = await env.http.post(
        "/api/providers/",
        json={"name": "new-kling", "preset": "kling", "api_key": KLING_KEY},
    )
    assert current.status_code == 201, current.text
    assert current.json()["warning"] == ""


async def test_a_placeholder_typo_is_refused_before_any_task(env: Env) -> None:
    typo = copy.deepcopy(KLING_INLINE)
    typo["poll"]["request"]["url"] = "{{submit_pth}}/{{task_id}}"
    created = await env.http.post(
        "/api/providers/",
        json={
            "name": "kling-typo",
            "profile": typo,
            "base_url": "https://api-singapore.klingai.com",
            "api_key": KLING_KEY,
        },
    )
    assert created.status_code == 201, created.text  # the model's template could still give it
    model = await env.http.post(
        "/api/models/",
        json={
            "provider": "kling-typo",
            "name": "kling-typo-model",
            "model_type": "VIDEO",
            "api_endpoint": "/v1/videos/text2video",
            "request_schema": {"prompt": "{{prompt}}"},
        },
    )
    assert model.status_code == 400, model.text
    assert "{{submit_pth}}" in model.json()["error"]
    no_endpoint = await env.http.post(
        "/api/models/",
        json={
            "provider": "kling-typo",
            "name": "x",
            "model_type": "VIDEO",
            "request_schema": {"p": "{{prompt}}"},
        },
    )
    assert no_endpoint.status_code == 400 and "api_endpoint" in no_endpoint.json()["error"]
    in_submit = copy.deepcopy(KLING_INLINE)
    in_submit["submit"]["request"]["headers"] = {"X-Task": "{{task_id}}"}
    refused = await env.http.post(
        "/api/providers/",
        json={"name": "kling-bad", "profile": in_submit, "base_url": "https://api-singapore.klingai.com"},
    )
    assert refused.status_code == 400, refused.text
    assert "{{task_id}} has no value when the task is submitted" in refused.json()["error"]


async def test_key_parts_can_be_replaced_and_must_still_fit_the_auth(env: Env) -> None:
    created = await env.http.post(
        "/api/providers/", json={"name": "kling-rotate", "preset": "kling", "api_key": KLING_KEY}
    )
    assert created.status_code == 201, created.text
    rotated = await env.http.patch(
        "/api/providers/kling-rotate/", json={"api_key": {"access_key": "ak-2", "secret_key": "sk-2"}}
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["has_api_key"] and "sk-2" not in rotated.text
    plain = await env.http.patch("/api/providers/kling-rotate/", json={"api_key": "one-part"})
    assert plain.status_code == 400 and "access_key, secret_key" in plain.json()["error"]
    # Moving the stored parts to a profile whose auth uses a one-part key is refused too.
    to_minimax = await env.http.patch("/api/providers/kling-rotate/", json={"preset": "minimax"})
    assert to_minimax.status_code == 400 and "one-part key" in to_minimax.json()["error"]
