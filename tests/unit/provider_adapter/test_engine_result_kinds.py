"""The engine over MockTransport with the shipped presets: inline results, multipart, raw paths, guards."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from assetgen_provider_adapter.engine import ProviderEngine, ProviderTarget, ProviderUnreachable, RetryPolicy
from assetgen_provider_adapter.profiles import Profile, load_presets
from assetgen_runtime.errors import InvalidArgument
from assetgen_runtime.http import DirectClient
from assetgen_runtime.netguard import FetchRefused, NetworkGuard

KEY = "sk-unit-key"
FAST = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01, max_total=1.0)
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class Routes:
    """A MockTransport handler answering by (method, path) and keeping every request."""

    def __init__(self, routes: dict[tuple[str, str], httpx.Response]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = (request.method, request.url.raw_path.decode("ascii").split("?")[0])
        if key not in self.routes:
            return httpx.Response(404, json={"error": {"message": f"no route {key}"}})
        return self.routes[key]


async def _resolve(host: str, port: int) -> list[str]:
    return ["10.0.0.1"] if host.endswith(".internal") else ["93.184.216.34"]


def _engine(routes: Routes, max_inline: int = 1024**2) -> ProviderEngine:
    return ProviderEngine(
        DirectClient(transport=httpx.MockTransport(routes)),
        retry=FAST,
        guard=NetworkGuard(resolver=_resolve),
        max_inline_bytes=max_inline,
    )


def _target(preset: str, base_url: str = "", data: dict[str, Any] | None = None) -> ProviderTarget:
    profile = Profile.parse(data) if data is not None else load_presets()[preset]
    return ProviderTarget(name=preset, base_url=base_url or profile.base_url, profile=profile, api_key=KEY)


async def test_openai_images_base64_is_an_inline_output() -> None:
    encoded = base64.b64encode(PNG).decode()
    routes = Routes(
        {("POST", "/v1/images/generations"): httpx.Response(200, json={"data": [{"b64_json": encoded}]})}
    )
    result = await _engine(routes).submit(
        _target("openai-images"), {"prompt": "fox"}, request_schema={"prompt": "{{prompt}}"}
    )
    assert result.state == "COMPLETED"
    [output] = result.outputs
    assert (output.kind, output.data, output.needs_upload) == ("inline", PNG, True)


async def test_base64_over_the_inline_cap_fails_without_decoding() -> None:
    encoded = base64.b64encode(PNG * 100).decode()
    routes = Routes(
        {("POST", "/v1/images/generations"): httpx.Response(200, json={"data": [{"b64_json": encoded}]})}
    )
    result = await _engine(routes, max_inline=1000).submit(
        _target("openai-images"), {"prompt": "fox"}, request_schema={"prompt": "{{prompt}}"}
    )
    assert result.state == "FAILED" and "larger than 1000 bytes" in result.error_message


async def test_replicate_data_uri_output_is_decoded_inline() -> None:
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    body = {"id": "p1", "status": "succeeded", "output": uri, "urls": {"get": "https://api.replicate.com/x"}}
    routes = Routes({("POST", "/v1/predictions"): httpx.Response(201, json=body)})
    result = await _engine(routes).submit(_target("replicate"), {"prompt": "x"}, request_schema={"input": {}})
    assert result.state == "COMPLETED"
    assert [(o.kind, o.content_type, o.data) for o in result.outputs] == [("inline", "image/png", PNG)]
    assert routes.requests[0].headers["Prefer"] == "wait=5"


async def test_stability_image_is_multipart_and_content_filtered_is_a_failure() -> None:
    filtered = {"image": base64.b64encode(PNG).decode(), "finish_reason": "CONTENT_FILTERED", "seed": 1}
    routes = Routes({("POST", "/v2beta/stable-image/generate/core"): httpx.Response(200, json=filtered)})
    result = await _engine(routes).submit(
        _target("stability-image"),
        {"prompt": "fox", "n": 2},
        request_schema={"prompt": "{{prompt}}", "n": "{{n}}"},
    )
    assert (result.state, result.error_message) == ("FAILED", "CONTENT_FILTERED")
    sent = routes.requests[0]
    assert sent.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert sent.headers["Accept"] == "application/json"
    assert b'name="prompt"\r\n\r\nfox' in sent.content and b'name="n"\r\n\r\n2' in sent.content


async def test_stability_video_attaches_the_image_file_fetched_through_the_guard() -> None:
    routes = Routes(
        {
            ("GET", "/in.png"): httpx.Response(200, content=PNG, headers={"content-type": "image/png"}),
            ("POST", "/v2beta/image-to-video"): httpx.Response(200, json={"id": "g" * 64}),
        }
    )
    engine = _engine(routes)
    result = await engine.submit(
        _target("stability-video"), {"image_url": "https://cdn.example/in.png"}, request_schema={"seed": 0}
    )
    assert (result.state, result.task_id) == ("PROCESSING", "g" * 64)
    assert (
        b'name="image"; filename="image"' in routes.requests[-1].content
        and PNG in routes.requests[-1].content
    )
    with pytest.raises(FetchRefused):
        await engine.submit(
            _target("stability-video"), {"image_url": "https://files.internal/in.png"}, request_schema={}
        )


async def test_stability_video_poll_202_then_raw_mp4_body() -> None:
    path = "/v2beta/image-to-video/result/abc"
    running = Routes({("GET", path): httpx.Response(202, json={"id": "abc", "status": "in-progress"})})
    assert (await _engine(running).poll(_target("stability-video"), "abc", {})).state == "PROCESSING"
    assert running.requests[0].headers["Accept"] == "video/*"
    mp4 = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 32
    done = Routes({("GET", path): httpx.Response(200, content=mp4, headers={"content-type": "video/mp4"})})
    result = await _engine(done).poll(_target("stability-video"), "abc", {})
    assert result.state == "COMPLETED"
    assert [(o.kind, o.content_type, o.data) for o in result.outputs] == [("inline", "video/mp4", mp4)]
    too_big = await _engine(done, max_inline=10).poll(_target("stability-video"), "abc", {})
    assert too_big.state == "FAILED" and "larger than 10 bytes" in too_big.error_message


async def test_google_veo_operation_names_keep_their_slashes_and_filtered_is_failed() -> None:
    name = "models/veo-3.0-generate-001/operations/op1"
    filtered = {
        "name": name,
        "done": True,
        "response": {
            "generateVideoResponse": {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": ["unsafe"]}
        },
    }
    routes = Routes({("GET", f"/v1beta/{name}"): httpx.Response(200, json=filtered)})
    result = await _engine(routes).poll(_target("google-veo"), name, {})
    assert (result.state, result.raw_state, result.error_message) == ("FAILED", "filtered", "unsafe")
    assert result.error_code == "RAI_MEDIA_FILTERED"
    assert routes.requests[0].headers["x-goog-api-key"] == KEY


async def test_google_veo_video_download_inherits_the_key_only_on_the_providers_origin() -> None:
    name = "models/veo/operations/op2"
    samples = [
        {"video": {"uri": "https://generativelanguage.googleapis.com/v1beta/files/f:download?alt=media"}},
        {"video": {"uri": "https://elsewhere.example/f.mp4"}},
    ]
    done = {"name": name, "done": True, "response": {"generateVideoResponse": {"generatedSamples": samples}}}
    routes = Routes({("GET", f"/v1beta/{name}"): httpx.Response(200, json=done)})
    result = await _engine(routes).poll(_target("google-veo"), name, {})
    assert result.state == "COMPLETED"
    assert [o.kind for o in result.outputs] == ["download", "download"]
    assert result.outputs[0].headers == {"x-goog-api-key": KEY}
    assert result.outputs[1].headers == {}


async def test_other_placeholders_in_paths_are_escaped() -> None:
    routes = Routes(
        {("GET", "/v1/videos/a%2Fb"): httpx.Response(200, json={"id": "a/b", "status": "queued"})}
    )
    result = await _engine(routes).poll(_target("openai-videos"), "a/b", {})
    assert result.state == "PENDING"


async def test_openai_video_result_is_a_download_of_content_with_the_key() -> None:
    routes = Routes(
        {
            ("GET", "/v1/videos/v1"): httpx.Response(
                200, json={"id": "v1", "status": "completed", "progress": 100}
            )
        }
    )
    result = await _engine(routes).poll(_target("openai-videos"), "v1", {})
    assert result.state == "COMPLETED"
    [output] = result.outputs
    assert output.kind == "download"
    assert output.url == "https://api.openai.com/v1/videos/v1/content?variant=video"
    assert output.headers["authorization"] == f"Bearer {KEY}"


async def test_fal_result_fetch_failure_is_failed_with_the_detail_message() -> None:
    handle = {
        "status_url": "https://queue.fal.run/fal-ai/flux/requests/r1/status",
        "response_url": "https://queue.fal.run/fal-ai/flux/requests/r1",
    }
    detail = {"detail": [{"msg": "NSFW prompt", "type": "content_policy_violation"}]}
    routes = Routes(
        {
            ("GET", "/fal-ai/flux/requests/r1/status"): httpx.Response(200, json={"status": "COMPLETED"}),
            ("GET", "/fal-ai/flux/requests/r1"): httpx.Response(422, json=detail),
        }
    )
    result = await _engine(routes).poll(_target("fal"), "r1", handle)
    assert (result.state, result.error_message, result.error_code) == (
        "FAILED",
        "NSFW prompt",
        "content_policy_violation",
    )
    assert routes.requests[0].headers["Authorization"] == f"Key {KEY}"


async def test_captured_urls_into_private_networks_are_refused() -> None:
    routes = Routes({})
    with pytest.raises(FetchRefused):
        await _engine(routes).poll(_target("fal"), "r1", {"status_url": "http://metadata.internal/latest"})
    assert routes.requests == []


async def test_runway_sends_its_version_header_and_cancel_deletes() -> None:
    routes = Routes(
        {
            ("GET", "/v1/tasks/t1"): httpx.Response(200, json={"id": "t1", "status": "THROTTLED"}),
            ("DELETE", "/v1/tasks/t1"): httpx.Response(204),
        }
    )
    engine = _engine(routes)
    assert (await engine.poll(_target("runway"), "t1", {})).state == "PENDING"
    assert await engine.cancel(_target("runway"), "t1", {}) == (True, True, "")
    assert all(r.headers["X-Runway-Version"] == "2024-11-06" for r in routes.requests)
    assert await engine.cancel(_target("kie-ai"), "t1", {}) == (False, False, "the provider has no cancel")


async def test_a_multipart_template_must_be_an_object() -> None:
    with pytest.raises(InvalidArgument):
        await _engine(Routes({})).submit(_target("stability-image"), {}, request_schema=["not", "fields"])


@pytest.mark.parametrize("name", sorted(load_presets()))
def test_every_preset_names_its_family_and_validates(name: str) -> None:
    profile = load_presets()[name]
    assert profile.name == name and len(profile.description) > 40
    assert json.loads(json.dumps(profile.data)) == profile.data


@pytest.mark.parametrize(("status", "error"), [(503, ProviderUnreachable), (404, InvalidArgument)])
async def test_an_input_file_that_cannot_be_fetched_sends_nothing(
    status: int, error: type[Exception]
) -> None:
    routes = Routes({("GET", "/in.png"): httpx.Response(status)})
    with pytest.raises(error, match="input file"):
        await _engine(routes).submit(
            _target("stability-video"), {"image_url": "https://cdn.example/in.png"}, request_schema={}
        )
    assert [r.method for r in routes.requests] == ["GET"]
