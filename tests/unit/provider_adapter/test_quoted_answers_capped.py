"""A provider's answer quoted in a task's error is capped, whatever path of the body the profile reads."""

from __future__ import annotations

import httpx

from assetgen.v1 import provider_adapter_pb2
from assetgen_provider_adapter.answers import status_of
from assetgen_provider_adapter.engine_types import FAILED, MAX_TEXT, ProviderAnswer, TaskResult
from assetgen_provider_adapter.messages import to_task_status
from assetgen_provider_adapter.profiles import load_presets


def test_a_long_failure_message_is_capped() -> None:
    body = {"code": 200, "data": {"state": "fail", "failMsg": "x" * 10_000, "failCode": "c" * 10_000}}
    answer = ProviderAnswer(status=200, headers=httpx.Headers(), body=body, text="")
    failed = status_of(load_presets()["kie-ai"], answer, "t1", {})
    assert failed.state == FAILED
    assert len(failed.error_message) == MAX_TEXT and len(failed.error_code) <= MAX_TEXT


def test_the_task_status_caps_every_provider_text() -> None:
    result = TaskResult(
        state=FAILED, raw_state="r" * 10_000, error_message="m" * 10_000, error_code="c" * 10_000
    )
    status = to_task_status(result, provider_adapter_pb2.PollPolicy())
    assert len(status.raw_state) == MAX_TEXT and len(status.error_code) == MAX_TEXT
    assert len(status.error_message) == 2 * MAX_TEXT
