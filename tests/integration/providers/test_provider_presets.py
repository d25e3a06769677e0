"""Every shipped preset end to end: public HTTP API → orchestrator → adapter → a fake of that family → S3.

One stack for the module and one fake server per family. All generations start together in a
module fixture (the presets' real poll intervals are seconds long), and each test waits for its own
asset and checks the outcome: COMPLETED with exactly the provider's bytes in S3, or FAILED with the
provider's own error text.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from assetgen_dev.fake_providers import (
    FAIL_TEXT,
    FILTER_TEXT,
    RUNWAY_VERSION,
    FakeFal,
    FakeGoogleVeo,
    FakeKieFluxKontext,
    FakeKieJobs,
    FakeKieVeo,
    FakeLuma,
    FakeOpenAIImages,
    FakeOpenAIVideos,
    FakeProvider,
    FakeReplicate,
    FakeRunway,
    FakeStabilityImage,
    FakeStabilityVideo,
)
from assetgen_dev.stack import Stack, WholeStackFactory
from assetgen_dev.testing import eventually

KEY = "sk-test-provider-key-0123456789"

# An inline profile for Kie's Flux Kontext family, which no preset covers: an integer successFlag
# and a single result URL string (not a list).
FLUX_KONTEXT_PROFILE: dict[str, Any] = {
    "name": "kie-flux-kontext",
    "description": "Kie.ai Flux Kontext: successFlag 0-3, data.response.resultImageUrl is one string.",
    "connection": {"base_url": "https://api.kie.ai", "timeout": "30s"},
    "auth": {"in": "header", "name": "Authorization", "template": "Bearer {{secret}}"},
    "submit": {
        "request": {"method": "POST", "url": "/api/v1/flux/kontext/generate", "body": {"type": "json"}},
        "accept_when": "code == `200`",
        "task_id": "data.taskId",
    },
    "poll": {
        "request": {
            "method": "GET",
            "url": "/api/v1/flux/kontext/record-info",
            "query": {"taskId": "{{task_id}}"},
        },
        "state": {
            "path": "to_string(data.successFlag)",
            "map": {"0": "PROCESSING", "1": "COMPLETED", "2": "FAILED", "3": "FAILED"},
        },
        "interval": {"initial": "1s", "backoff": 1.5, "max": "5s"},
    },
    "result": {"source": "status", "outputs": [{"kind": "url", "path": "data.response.resultImageUrl"}]},
    "error": {"message": "data.errorMessage || msg", "failure_when": "code != `200`"},
}


@dataclass
class Case:
    """One generation through one preset and what it must end as."""

    id: str
    preset: str
    fake: Callable[[], FakeProvider]
    schema: dict[str, Any]
    model_type: str = "IMAGE"
    api_endpoint: str = ""
    base_path: str = ""
    marker: str = ""
    with_image: bool = False
    expect: str = "COMPLETED"
    error_text: str = ""
    profile: dict[str, Any] | None = None

    @property
    def prompt(self) -> str:
        return f"{self.id}: a red fox {self.marker}".strip()


def _cases() -> list[Case]:
    kie = {"model": "flux-2/pro-text-to-image", "input": {"prompt": "{{prompt}}", "aspect_ratio": "1:1"}}
    kie_veo = {"prompt": "{{prompt}}", "model": "veo3_fast", "aspect_ratio": "16:9"}
    replicate = {"version": "black-forest-labs/flux-schnell", "input": {"prompt": "{{prompt}}"}}
    fal = {"prompt": "{{prompt}}", "image_size": "square_hd", "num_images": 1}
    stability = {"prompt": "{{prompt}}", "output_format": "png", "aspect_ratio": "{{aspect_ratio?}}"}
    stability_video = {"seed": 0, "cfg_scale": 1.8, "motion_bucket_id": 127}
    openai_images = {"model": "gpt-image-1", "prompt": "{{prompt}}", "n": 1, "size": "1024x1024"}
    openai_videos = {"model": "sora-2", "prompt": "{{prompt}}", "seconds": "4", "size": "1280x720"}
    runway = {
        "model": "gen4_turbo",
        "promptImage": "{{image_url}}",
        "promptText": "{{prompt}}",
        "ratio": "1280:720",
        "duration": 5,
    }
    luma = {"prompt": "{{prompt}}", "model": "ray-2", "aspect_ratio": "16:9"}
    veo = {"instances": [{"prompt": "{{prompt}}"}], "parameters": {"aspectRatio": "16:9"}}
    veo_path = "/v1beta/models/veo-3.0-generate-001:predictLongRunning"
    return [
        Case("kie-ai", "kie-ai", lambda: FakeKieJobs(KEY), kie),
        Case("kie-ai-fail", "kie-ai", lambda: FakeKieJobs(KEY), kie, marker="[fail]", expect="FAILED"),
        Case("kie-veo", "kie-veo", lambda: FakeKieVeo(KEY), kie_veo, "VIDEO"),
        Case(
            "kie-veo-fail",
            "kie-veo",
            lambda: FakeKieVeo(KEY),
            kie_veo,
            "VIDEO",
            marker="[fail]",
            expect="FAILED",
        ),
        Case("replicate", "replicate", lambda: FakeReplicate(KEY), replicate),
        Case("replicate-sync-data-uri", "replicate", lambda: FakeReplicate(KEY), replicate, marker="[sync]"),
        Case(
            "replicate-fail",
            "replicate",
            lambda: FakeReplicate(KEY),
            replicate,
            marker="[fail]",
            expect="FAILED",
        ),
        Case("fal", "fal", lambda: FakeFal(KEY), fal, api_endpoint="/fal-ai/flux/dev"),
        Case(
            "fal-fail",
            "fal",
            lambda: FakeFal(KEY),
            fal,
            api_endpoint="/fal-ai/flux/dev",
            marker="[fail]",
            expect="FAILED",
        ),
        Case("stability-image", "stability-image", lambda: FakeStabilityImage(KEY), stability),
        Case(
            "stability-image-filtered",
            "stability-image",
            lambda: FakeStabilityImage(KEY),
            stability,
            marker="[filtered]",
            expect="FAILED",
            error_text="CONTENT_FILTERED",
        ),
        Case(
            "stability-video",
            "stability-video",
            lambda: FakeStabilityVideo(KEY),
            stability_video,
            "VIDEO",
            with_image=True,
        ),
        Case("openai-images", "openai-images", lambda: FakeOpenAIImages(KEY), openai_images),
        Case(
            "openai-images-fail",
            "openai-images",
            lambda: FakeOpenAIImages(KEY),
            openai_images,
            marker="[fail]",
            expect="FAILED",
        ),
        Case("openai-videos", "openai-videos", lambda: FakeOpenAIVideos(KEY), openai_videos, "VIDEO"),
        Case(
            "openai-videos-fail",
            "openai-videos",
            lambda: FakeOpenAIVideos(KEY),
            openai_videos,
            "VIDEO",
            marker="[fail]",
            expect="FAILED",
        ),
        Case("runway", "runway", lambda: FakeRunway(KEY), runway, "VIDEO", with_image=True),
        Case(
            "runway-fail",
            "runway",
            lambda: FakeRunway(KEY),
            runway,
            "VIDEO",
            with_image=True,
            marker="[fail]",
            expect="FAILED",
        ),
        Case("luma", "luma", lambda: FakeLuma(KEY), luma, "VIDEO", base_path="/dream-machine/v1"),
        Case(
            "luma-fail",
            "luma",
            lambda: FakeLuma(KEY),
            luma,
            "VIDEO",
            base_path="/dream-machine/v1",
            marker="[fail]",
            expect="FAILED",
        ),
        Case("google-veo", "google-veo", lambda: FakeGoogleVeo(KEY), veo, "VIDEO", api_endpoint=veo_path),
        Case(
            "google-veo-filtered",
            "google-veo",
            lambda: FakeGoogleVeo(KEY),
            veo,
            "VIDEO",
            api_endpoint=veo_path,
            marker="[filtered]",
            expect="FAILED",
            error_text=FILTER_TEXT,
        ),
        Case(
            "google-veo-fail",
            "google-veo",
            lambda: FakeGoogleVeo(KEY),
            veo,
            "VIDEO",
            api_endpoint=veo_path,
            marker="[fail]",
            expect="FAILED",
        ),
        Case(
            "custom-flux-kontext",
            "",
            lambda: FakeKieFluxKontext(KEY),
            {"prompt": "{{prompt}}"},
            profile=FLUX_KONTEXT_PROFILE,
        ),
        Case(
            "custom-flux-kontext-fail",
            "",
            lambda: FakeKieFluxKontext(KEY),
            {"prompt": "{{prompt}}"},
            profile=FLUX_KONTEXT_PROFILE,
            marker="[fail]",
            expect="FAILED",
        ),
    ]


CASES = _cases()


class _Collector(logging.Handler):
    """Keeps every log record's message and fields, to prove no key ever reaches a log line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__}")


@dataclass
class Env:
    """The running system, one fake per case, and each case's asset id."""

    stack: Stack
    http: httpx.AsyncClient
    box: str
    fakes: dict[str, FakeProvider] = field(default_factory=dict)
    assets: dict[str, str] = field(default_factory=dict)
    logs: _Collector = field(default_factory=_Collector)


async def _launch(env: Env, case: Case) -> None:
    fake = env.fakes[case.id]
    provider = f"p-{case.id}"
    body: dict[str, Any] = {"name": provider, "base_url": fake.base_url + case.base_path, "api_key": KEY}
    if case.profile is not None:
        body["profile"] = case.profile
    else:
        body["preset"] = case.preset
    response = await env.http.post("/api/providers/", json=body)
    assert response.status_code == 201, response.text
    model = {
        "provider": provider,
        "name": f"m-{case.id}",
        "model_type": case.model_type,
        "request_schema": case.schema,
        "api_endpoint": case.api_endpoint,
    }
    response = await env.http.post("/api/models/", json=model)
    assert response.status_code == 201, response.text
    generate: dict[str, Any] = {"model": f"m-{case.id}", "prompt": case.prompt}
    if case.with_image:
        generate["image_url"] = f"{fake.base_url}/inputs/image.png"
    response = await env.http.post(f"/api/boxes/{env.box}/generate/", json=generate)
    assert response.status_code == 202, response.text
    env.assets[case.id] = response.json()["id"]


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    fakes: dict[str, FakeProvider] = {case.id: case.fake() for case in CASES}
    async with whole_stack(tmp_path_factory.mktemp("providers"), fakes=fakes.values()) as system:
        logs = _Collector()
        adapter_logger = logging.getLogger("assetgen_provider_adapter")
        previous_level = adapter_logger.level
        adapter_logger.setLevel(logging.DEBUG)
        logging.getLogger().addHandler(logs)
        try:
            response = await system.http.post("/api/boxes/", json={"name": f"presets-{uuid.uuid4().hex[:8]}"})
            assert response.status_code == 201, response.text
            environment = Env(
                stack=system.stack, http=system.http, box=response.json()["id"], fakes=fakes, logs=logs
            )
            for case in CASES:
                await _launch(environment, case)
            yield environment
        finally:
            logging.getLogger().removeHandler(logs)
            adapter_logger.setLevel(previous_level)


async def _wait_terminal(env: Env, asset_id: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        response = await env.http.get(f"/api/assets/{asset_id}/")
        assert response.status_code == 200, response.text
        return dict(response.json())

    return await eventually(
        read,
        lambda a: a["status"] in ("COMPLETED", "FAILED", "CANCELED"),
        timeout=120,
        what="terminal status",
    )


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
async def test_generation_through_each_preset(env: Env, case: Case) -> None:
    asset = await _wait_terminal(env, env.assets[case.id])
    fake = env.fakes[case.id]
    assert asset["status"] == case.expect, asset["error_message"]
    if case.expect == "FAILED":
        assert (case.error_text or FAIL_TEXT) in asset["error_message"], asset
        assert asset["file_url"] == ""
        return
    task = fake.tasks.get(asset["external_task_id"]) or fake.task_by_prompt(case.prompt)
    async with httpx.AsyncClient(timeout=30) as plain:
        stored = (await plain.get(asset["file_url"])).content
    assert stored == task.result
    assert asset["sha256"] == hashlib.sha256(stored).hexdigest()
    assert asset["content_type"] == task.content_type


async def test_runway_requests_carry_the_version_header(env: Env) -> None:
    await _wait_terminal(env, env.assets["runway"])
    sent = [headers for _, path, headers in env.fakes["runway"].requests if path.startswith("/v1/")]
    assert sent and all(headers.get("X-Runway-Version") == RUNWAY_VERSION for headers in sent)
    async with httpx.AsyncClient(timeout=10) as client:
        refused = await client.post(
            f"{env.fakes['runway'].base_url}/v1/image_to_video",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"promptText": "x", "duration": 5},
        )
    assert refused.status_code == 400 and "X-Runway-Version" in refused.json()["error"]


async def test_google_veo_operation_name_is_polled_unescaped(env: Env) -> None:
    await _wait_terminal(env, env.assets["google-veo"])
    polls = [path for method, path, _ in env.fakes["google-veo"].requests if method == "GET"]
    assert any("/v1beta/models/veo-3.0-generate-001/operations/" in path for path in polls)
    assert not any("%2F" in path for path in polls)


async def test_openai_video_content_fetched_with_the_key(env: Env) -> None:
    await _wait_terminal(env, env.assets["openai-videos"])
    content = [
        h for _, path, h in env.fakes["openai-videos"].requests if path.split("?")[0].endswith("/content")
    ]
    assert content and all(h.get("Authorization") == f"Bearer {KEY}" for h in content)


async def test_fal_polls_the_returned_status_url_not_the_submit_path(env: Env) -> None:
    await _wait_terminal(env, env.assets["fal"])
    paths = [path for method, path, _ in env.fakes["fal"].requests if method == "GET"]
    assert any(path.startswith("/fal-ai/flux/requests/") and path.endswith("/status") for path in paths)
    assert not any(path.startswith("/fal-ai/flux/dev/requests") for path in paths)


async def test_stability_submit_is_multipart(env: Env) -> None:
    await _wait_terminal(env, env.assets["stability-image"])
    posts = [h for method, _, h in env.fakes["stability-image"].requests if method == "POST"]
    assert posts and all(h["Content-Type"].startswith("multipart/form-data") for h in posts)
    video = env.fakes["stability-video"].tasks
    assert any(isinstance(task.request.get("image"), bytes) for task in video.values())


async def test_invalid_inline_profile_is_refused_and_nothing_is_created(env: Env) -> None:
    broken = {
        **FLUX_KONTEXT_PROFILE,
        "poll": {**FLUX_KONTEXT_PROFILE["poll"], "state": {"map": {"x": "DONE"}}},
    }
    response = await env.http.post(
        "/api/providers/", json={"name": "broken", "profile": broken, "base_url": "http://127.0.0.1:9"}
    )
    assert response.status_code == 400, response.text
    assert "$.poll.state" in response.text
    assert (await env.http.get("/api/providers/broken/")).status_code == 404
    both = await env.http.post(
        "/api/providers/", json={"name": "both", "preset": "kie-ai", "profile": FLUX_KONTEXT_PROFILE}
    )
    assert both.status_code == 400, both.text


async def test_api_keys_are_never_returned(env: Env) -> None:
    listing = await env.http.get("/api/providers/")
    assert listing.status_code == 200
    assert KEY not in listing.text
    assert all(item["has_api_key"] for item in listing.json()["items"])


async def test_the_key_never_reaches_a_log_line(env: Env) -> None:
    for case in CASES:
        await _wait_terminal(env, env.assets[case.id])
    assert any("task submitted" in line for line in env.logs.lines)
    assert not [line for line in env.logs.lines if KEY in line]
