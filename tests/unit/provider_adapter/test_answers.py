"""Reading answers: one reported_failure, failures that name their task, states and outputs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from assetgen_provider_adapter.answers import TooLarge, failure, outputs_of, reported_failure, status_of
from assetgen_provider_adapter.engine_types import FAILED, PROCESSING, ProviderAnswer, ProviderTarget
from assetgen_provider_adapter.profiles import Profile, load_presets


def _answer(body: Any, status: int = 200, text: str = "") -> ProviderAnswer:
    return ProviderAnswer(status=status, headers=httpx.Headers(), body=body, text=text)


def _kie() -> Profile:
    return load_presets()["kie-ai"]


def test_reported_failure_is_none_unless_failure_when_holds() -> None:
    profile = _kie()
    assert profile.error.failure_when is not None
    assert reported_failure(profile, _answer({"code": 200, "data": {"state": "waiting"}})) is None
    assert reported_failure(profile, _answer(None, text="not json")) is None


def test_failure_names_the_task_and_falls_back_to_text_and_status() -> None:
    failed = failure(
        _kie(), _answer(None, 502, "bad gateway"), "fallback", task_id="t", handle={"h": 1}, raw_state="r"
    )
    assert (failed.state, failed.task_id, failed.handle, failed.raw_state) == (FAILED, "t", {"h": 1}, "r")
    assert (failed.error_message, failed.error_code) == ("bad gateway", "502")
    assert failure(_kie(), _answer(None, 200), "fallback").error_message == "fallback"


def test_status_of_maps_state_and_keeps_the_task() -> None:
    result = status_of(_kie(), _answer({"code": 200, "data": {"state": "generating"}}), "t1", {"k": "v"})
    assert (result.state, result.task_id, result.handle) == (PROCESSING, "t1", {"k": "v"})
    failed = status_of(_kie(), _answer({"code": 200, "data": {"state": "fail", "failMsg": "nsfw"}}), "t1", {})
    assert (failed.state, failed.task_id, failed.raw_state, failed.error_message) == (
        FAILED,
        "t1",
        "fail",
        "nsfw",
    )


def test_outputs_refuse_a_body_past_the_cap() -> None:
    target = ProviderTarget(name="kie", base_url="https://api.kie.ai", profile=_kie())
    answer = _answer(None)
    answer.too_large = True
    with pytest.raises(TooLarge):
        outputs_of(target, answer, None, max_inline=10, auth_headers=lambda url: {})
