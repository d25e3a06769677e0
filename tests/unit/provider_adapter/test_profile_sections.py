"""Profiles parse once into typed sections: defaults filled, paths compiled, sections by field name."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from assetgen_provider_adapter.paths import evaluate
from assetgen_provider_adapter.profile_sections import PollSpec, SubmitSpec
from assetgen_provider_adapter.profiles import Profile, load_presets


def _minimal() -> dict[str, Any]:
    return {
        "name": "minimal",
        "description": "the least a profile may say",
        "connection": {"base_url": "https://api.example.com"},
        "auth": {"in": "none"},
        "submit": {"request": {"method": "POST", "url": "/tasks"}, "task_id": "id"},
        "poll": {
            "request": {"method": "GET", "url": "/tasks/{{task_id}}"},
            "state": {"path": "s", "map": {"ok": "COMPLETED"}},
        },
        "result": {"source": "status", "outputs": [{"kind": "url", "path": "url"}]},
    }


def test_defaults_are_filled_once() -> None:
    profile = Profile.parse(_minimal())
    assert profile.mode == "async" and profile.submit.accept_when is None and profile.submit.captures == ()
    assert profile.submit.request.body.type == "none" and not profile.submit.request.body.has_template
    assert profile.connection.timeout_ms is None and profile.timeout_seconds(7.0) == 7.0
    assert profile.http_errors.retryable == frozenset({408, 429, 500, 502, 503, 504})
    assert profile.http_errors.retry_after_header == "" and profile.http_errors.retry_when is None
    assert profile.error.message is profile.error.code is profile.error.failure_when is None
    assert isinstance(profile.poll, PollSpec) and profile.poll.state.unknown == "PROCESSING"
    assert not profile.poll.state.from_http_status and profile.poll.honor_header == ""
    assert profile.cancel is None and profile.webhook is None and not profile.limits.any
    assert profile.result.outputs[0].content_type == "" and not profile.result.download_with_auth


def test_paths_are_compiled_and_evaluate() -> None:
    profile = load_presets()["kie-ai"]
    assert profile.submit.task_id is not None
    assert evaluate(profile.submit.task_id, {"data": {"taskId": "t1"}}) == "t1"


def test_sections_read_by_json_field_name_too() -> None:
    profile = load_presets()["kie-ai"]
    assert isinstance(profile.submit, SubmitSpec)
    assert profile.submit["request"]["url"] == profile.submit.request.url == "/api/v1/jobs/createTask"
    with pytest.raises(KeyError):
        profile.submit["no_such_field"]


def test_a_sync_profile_has_no_poll_and_cancel_false_means_none() -> None:
    data = copy.deepcopy(_minimal())
    data.pop("poll")
    data["submit"]["mode"] = "sync"
    data["result"]["source"] = "submit"
    data["cancel"] = {"supported": False, "request": {"method": "POST", "url": "/cancel"}}
    profile = Profile.parse(data)
    assert profile.poll is None and profile.cancel is None


def test_limits_and_auth_hosts_are_normalised() -> None:
    data = _minimal()
    data["auth"] = {"in": "header", "name": "X-Key", "template": "{{secret}}", "hosts": ["Files.Example.COM"]}
    data["limits"] = {"max_concurrency": 2, "submit_rate": "10/m", "min_poll_interval": "5s"}
    profile = Profile.parse(data)
    assert profile.auth.placement == "header" and profile.auth.hosts == frozenset({"files.example.com"})
    assert (profile.limits.max_concurrency, profile.limits.submit_count, profile.limits.submit_period) == (
        2,
        10,
        60.0,
    )
    assert profile.poll_timing.min_interval_ms == 5000 and profile.poll_timing.initial_delay_ms == 5000
