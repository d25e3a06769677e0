"""The generic engine against httpx.MockTransport: the kie-ai preset and other profile shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from assetgen_provider_adapter.engine import (
    ProviderEngine,
    ProviderTarget,
    ProviderUnreachable,
    RetryPolicy,
    SubmitOutcomeUnknown,
)
from assetgen_provider_adapter.errors import ProviderBusy
from assetgen_provider_adapter.profiles import Profile, load_presets
from assetgen_runtime.http import DirectClient
from assetgen_runtime.netguard import NetworkGuard

KEY = "sk-very-secret"
TEMPLATE = {"model": "google/nano-banana", "input": {"prompt": "{{prompt}}", "n": "{{n?}}"}}
FAST = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01, max_total=1.0)

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a list and keeps every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def _public_resolver(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]  # every test host looks public to the SSRF guard


def _engine(handler: Handler, retry: RetryPolicy = FAST) -> ProviderEngine:
    return ProviderEngine(
        DirectClient(transport=httpx.MockTransport(handler)),
        retry=retry,
        guard=NetworkGuard(resolver=_public_resolver),
    )


def _kie(base_url: str = "https://api.kie.ai", key: str | None = KEY) -> ProviderTarget:
    return ProviderTarget(name="kie", base_url=base_url, profile=load_presets()["kie-ai"], api_key=key)


def _record(state: str, **data: Any) -> httpx.Response:
    return httpx.Response(
        200, json={"code": 200, "message": "success", "data": {"taskId": "t1", "state": state, **data}}
    )


async def test_kie_submit_renders_the_template_and_reads_the_envelope() -> None:
    recorder = Recorder(
        httpx.Response(200, json={"code": 200, "msg": "success", "data": {"taskId": "task_1"}})
    )
    result = await _engine(recorder).submit(_kie(), {"prompt": 'say "hi"\n'}, request_schema=TEMPLATE)
    assert (result.state, result.task_id, result.handle) == ("PROCESSING", "task_1", {})
    sent = recorder.requests[0]
    assert sent.method == "POST" and str(sent.url) == "https://api.kie.ai/api/v1/jobs/createTask"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.content) == {"model": "google/nano-banana", "input": {"prompt": 'say "hi"\n'}}


async def test_model_api_endpoint_overrides_the_submit_path() -> None:
    recorder = Recorder(httpx.Response(200, json={"code": 200, "data": {"taskId": "t"}}))
    await _engine(recorder).submit(
        _kie(), {"prompt": "p"}, request_schema=TEMPLATE, api_endpoint="/api/v1/veo/generate"
    )
    assert recorder.requests[0].url.path == "/api/v1/veo/generate"


@pytest.mark.parametrize(
    ("response", "message", "code"),
    [
        (
            httpx.Response(200, json={"code": 401, "msg": "You do not have access permissions"}),
            "You do not have access permissions",
            "401",
        ),
        (
            httpx.Response(200, json={"code": 402, "msg": "Insufficient Credits"}),
            "Insufficient Credits",
            "402",
        ),
        (
            httpx.Response(401, json={"code": 401, "msg": "You do not have access permissions"}),
            "You do not have access permissions",
            "401",
        ),
        (httpx.Response(400, text="bad request, plain text"), "bad request, plain text", "400"),
        (httpx.Response(422, json={}), "the provider refused the task with HTTP 422", "422"),
    ],
)
async def test_kie_refusals_are_failed_with_the_providers_words(
    response: httpx.Response, message: str, code: str
) -> None:
    recorder = Recorder(response)
    result = await _engine(recorder).submit(_kie(), {"prompt": "p"}, request_schema=TEMPLATE)
    assert (result.state, result.error_message, result.error_code) == ("FAILED", message, code)
    assert len(recorder.requests) == 1  # a refusal is not retried


async def test_missing_task_id_in_an_accepted_answer_is_a_failure() -> None:
    result = await _engine(Recorder(httpx.Response(200, json={"code": 200, "data": {}}))).submit(
        _kie(), {"prompt": "p"}, request_schema=TEMPLATE
    )
    assert result.state == "FAILED" and "task id" in result.error_message


async def test_transient_statuses_and_envelopes_are_retried() -> None:
    # A 429 and the provider's own "not accepted" envelope are definite refusals: retried. (A 5xx
    # after sending is an unknown outcome, never resent: test_submit_outcome.py.)
    recorder = Recorder(
        httpx.Response(429, text="busy"),
        httpx.Response(200, json={"code": 455, "msg": "Service Unavailable (maintenance)"}),
        httpx.Response(200, json={"code": 200, "data": {"taskId": "t"}}),
    )
    result = await _engine(recorder).submit(_kie(), {"prompt": "p"}, request_schema=TEMPLATE)
    assert result.task_id == "t" and len(recorder.requests) == 3


async def test_persistent_429_raises_busy_naming_the_provider() -> None:
    recorder = Recorder(
        httpx.Response(429, headers={"Retry-After": "0"}, json={"code": 429, "msg": "Rate Limited"})
    )
    with pytest.raises(ProviderBusy, match="provider kie busy: HTTP 429 after 3 attempt") as busy:
        await _engine(recorder).submit(_kie(), {"prompt": "p"}, request_schema=TEMPLATE)
    assert isinstance(busy.value, ProviderUnreachable) and busy.value.retry_after == 0
    assert len(recorder.requests) == 3


async def test_a_long_retry_after_stops_retrying_at_once_and_is_reported() -> None:
    recorder = Recorder(httpx.Response(429, headers={"Retry-After": "60"}))
    with pytest.raises(ProviderUnreachable, match=r"retry after 60s"):
        await _engine(recorder).submit(_kie(), {"prompt": "p"}, request_schema=TEMPLATE)
    assert len(recorder.requests) == 1


async def test_connect_errors_are_transient() -> None:
    recorder = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(ProviderUnreachable, match="cannot connect"):
        await _engine(recorder).submit(_kie(), {"prompt": "p"}, request_schema=TEMPLATE)
    assert len(recorder.requests) == 3


async def test_a_lost_submit_answer_is_an_unknown_outcome_and_not_retried() -> None:
    recorder = Recorder(httpx.ReadTimeout("slow"))
    with pytest.raises(SubmitOutcomeUnknown, match="outcome is unknown"):
        await _engine(recorder).submit(_kie(), {"prompt": "p"}, request_schema=TEMPLATE)
    assert len(recorder.requests) == 1


async def test_a_lost_poll_answer_is_retried_then_unavailable() -> None:
    recorder = Recorder(httpx.ReadTimeout("slow"))
    with pytest.raises(ProviderUnreachable):
        await _engine(recorder).poll(_kie(), "t1", {})
    assert len(recorder.requests) == 3


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        ("waiting", "PENDING"),
        ("queuing", "PENDING"),
        ("generating", "PROCESSING"),
        ("brand-new-state", "PROCESSING"),
        ("", "PROCESSING"),
    ],
)
async def test_kie_poll_state_mapping_never_ends_on_unknown_values(raw: str, state: str) -> None:
    recorder = Recorder(_record(raw, resultJson="", failCode=None, failMsg=None))
    result = await _engine(recorder).poll(_kie(), "t1", {})
    assert (result.state, result.raw_state, result.error_message) == (state, raw, "")
    sent = recorder.requests[0]
    assert str(sent.url) == "https://api.kie.ai/api/v1/jobs/recordInfo?taskId=t1"
    assert sent.headers["Authorization"] == f"Bearer {KEY}"


async def test_kie_poll_without_a_state_field_is_in_progress() -> None:
    result = await _engine(Recorder(httpx.Response(200, json={"code": 200, "data": {}}))).poll(
        _kie(), "t1", {}
    )
    assert result.state == "PROCESSING"


async def test_kie_success_parses_result_json_string() -> None:
    urls = ["https://cdn/1.png", "https://cdn/2.png"]
    recorder = Recorder(
        _record("success", resultJson=json.dumps({"resultUrls": urls}), failCode="", failMsg="")
    )
    result = await _engine(recorder).poll(_kie(), "t1", {})
    assert result.state == "COMPLETED"
    assert [output.url for output in result.outputs] == urls
    assert result.progress == 1.0 and result.error_message == ""


async def test_success_without_results_is_a_failure() -> None:
    result = await _engine(Recorder(_record("success", resultJson=""))).poll(_kie(), "t1", {})
    assert result.state == "FAILED" and "returned no result" in result.error_message


@pytest.mark.parametrize("fail_code", [None, "", "CONTENT_POLICY"])
async def test_kie_fail_reports_fail_msg(fail_code: str | None) -> None:
    recorder = Recorder(_record("fail", failCode=fail_code, failMsg="nsfw content detected", resultJson=None))
    result = await _engine(recorder).poll(_kie(), "t1", {})
    assert (result.state, result.error_message) == ("FAILED", "nsfw content detected")
    assert result.error_code == (fail_code or "")


async def test_kie_poll_envelope_error_is_failed_with_msg_or_message() -> None:
    result = await _engine(
        Recorder(httpx.Response(200, json={"code": 404, "message": "task not found"}))
    ).poll(_kie(), "t1", {})
    assert (result.state, result.error_message, result.error_code) == ("FAILED", "task not found", "404")


async def test_the_key_is_only_sent_to_the_providers_own_origin() -> None:
    recorder = Recorder(httpx.Response(200, json={"code": 200, "data": {"taskId": "t"}}))
    engine = _engine(recorder)
    await engine.submit(
        _kie(), {"prompt": "p"}, request_schema=TEMPLATE, api_endpoint="https://evil.example/steal"
    )
    await engine.submit(
        _kie(), {"prompt": "p"}, request_schema=TEMPLATE, api_endpoint="http://api.kie.ai/insecure"
    )
    assert all("Authorization" not in request.headers for request in recorder.requests)


def _profile(**overrides: Any) -> Profile:
    data: dict[str, Any] = {
        "name": "replicate-test",
        "description": "replicate-shaped test profile",
        "connection": {"base_url": "https://api.replicate.com"},
        "auth": {"in": "header", "name": "Authorization", "template": "Bearer {{secret}}"},
        "submit": {
            "mode": "hybrid",
            "request": {
                "method": "POST",
                "url": "/v1/predictions",
                "headers": {"Prefer": "wait=5"},
                "body": {"type": "json"},
            },
            "task_id": "id",
            "captures": {"get_url": "urls.get"},
        },
        "poll": {
            "request": {"method": "GET", "url_from": "get_url"},
            "state": {
                "path": "status",
                "map": {
                    "starting": "PENDING",
                    "processing": "PROCESSING",
                    "succeeded": "COMPLETED",
                    "failed": "FAILED",
                    "canceled": "CANCELED",
                },
            },
            "progress": "progress",
            "interval": {"honor_header": "openai-poll-after-ms"},
        },
        "result": {
            "source": "status",
            "outputs": [{"kind": "url", "path": "as_list(output)", "content_type": "image/webp"}],
        },
        "error": {"message": "error || detail"},
    }
    for key, value in overrides.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    return Profile.parse(data)


def _target(profile: Profile, base_url: str = "https://api.replicate.com") -> ProviderTarget:
    return ProviderTarget(name="rep", base_url=base_url, profile=profile, api_key=KEY)


async def test_hybrid_submit_that_finishes_at_once_is_completed() -> None:
    body = {
        "id": "p1",
        "status": "succeeded",
        "output": "https://replicate.delivery/x.webp",
        "urls": {"get": "https://api.replicate.com/v1/predictions/p1"},
    }
    result = await _engine(Recorder(httpx.Response(201, json=body))).submit(
        _target(_profile()),
        {"prompt": "p"},
        request_schema={"version": "v", "input": {"prompt": "{{prompt}}"}},
    )
    assert result.state == "COMPLETED"
    assert [(o.url, o.content_type) for o in result.outputs] == [
        ("https://replicate.delivery/x.webp", "image/webp")
    ]
    assert result.handle == {"get_url": "https://api.replicate.com/v1/predictions/p1"}


async def test_hybrid_submit_still_running_then_polled_via_the_captured_url() -> None:
    started = {
        "id": "p1",
        "status": "starting",
        "urls": {"get": "https://api.replicate.com/v1/predictions/p1"},
    }
    recorder = Recorder(
        httpx.Response(201, json=started),
        httpx.Response(
            200, json={"status": "processing", "progress": 42}, headers={"openai-poll-after-ms": "1500"}
        ),
        httpx.Response(200, json={"status": "failed", "error": "CUDA out of memory"}),
    )
    engine = _engine(recorder)
    submitted = await engine.submit(_target(_profile()), {}, request_schema={"version": "v"})
    assert submitted.state == "PROCESSING" and submitted.task_id == "p1"
    assert recorder.requests[0].headers["Prefer"] == "wait=5"
    running = await engine.poll(_target(_profile()), submitted.task_id, submitted.handle)
    assert str(recorder.requests[1].url) == "https://api.replicate.com/v1/predictions/p1"
    assert (running.state, running.progress, running.poll_after_ms) == ("PROCESSING", 0.42, 1500)
    failed = await engine.poll(_target(_profile()), submitted.task_id, submitted.handle)
    assert (failed.state, failed.error_message) == ("FAILED", "CUDA out of memory")


async def test_captured_urls_on_foreign_hosts_get_no_key() -> None:
    recorder = Recorder(httpx.Response(200, json={"status": "processing"}))
    await _engine(recorder).poll(_target(_profile()), "p1", {"get_url": "https://elsewhere.example/p1"})
    assert "Authorization" not in recorder.requests[0].headers


async def test_sync_profile_and_query_auth() -> None:
    profile = _profile(
        auth={"in": "query", "name": "key", "template": "{{secret}}"},
        submit={"mode": "sync", "request": {"method": "POST", "url": "/v1/images", "body": {"type": "json"}}},
        result={"source": "submit", "outputs": [{"kind": "url", "path": "data[].url"}]},
        poll=None,
    )
    recorder = Recorder(
        httpx.Response(200, json={"data": [{"url": "https://a/1.png"}, {"url": "https://a/2.png"}]})
    )
    result = await _engine(recorder).submit(_target(profile), {}, request_schema={"prompt": "x"})
    assert result.state == "COMPLETED" and [o.url for o in result.outputs] == [
        "https://a/1.png",
        "https://a/2.png",
    ]
    assert recorder.requests[0].url.params["key"] == KEY


async def test_state_from_http_status_and_result_from_a_separate_request() -> None:
    profile = _profile(
        submit={"request": {"method": "POST", "url": "/gen", "body": {"type": "json"}}, "task_id": "id"},
        poll={
            "request": {"method": "GET", "url": "/result/{{task_id}}"},
            "state": {"source": "http_status", "map": {"202": "PROCESSING", "200": "COMPLETED"}},
        },
        result={
            "source": "request",
            "request": {"method": "GET", "url": "/files/{{task_id}}"},
            "outputs": [{"kind": "url", "path": "video.url"}],
        },
    )
    recorder = Recorder(httpx.Response(202, json={"status": "in-progress"}))
    running = await _engine(recorder).poll(_target(profile), "g1", {})
    assert (running.state, running.raw_state) == ("PROCESSING", "202")
    assert recorder.requests[0].url.path == "/result/g1"
    recorder = Recorder(
        httpx.Response(200, json={}), httpx.Response(200, json={"video": {"url": "https://v/1.mp4"}})
    )
    done = await _engine(recorder).poll(_target(profile), "g1", {})
    assert done.state == "COMPLETED" and done.outputs[0].url == "https://v/1.mp4"
    assert recorder.requests[1].url.path == "/files/g1"
