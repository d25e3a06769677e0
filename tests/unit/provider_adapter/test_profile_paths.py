"""JMESPath with the provider functions, and profile validation."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from assetgen_provider_adapter.paths import search, truthy
from assetgen_provider_adapter.profiles import Profile, ProfileError, load_presets, parse_duration_ms


def test_from_json_parses_kies_result_string() -> None:
    body = {"data": {"resultJson": json.dumps({"resultUrls": ["https://x/1.png", "https://x/2.png"]})}}
    assert search("from_json(data.resultJson).resultUrls", body) == ["https://x/1.png", "https://x/2.png"]


@pytest.mark.parametrize("raw", [None, "", "not json", "{"])
def test_from_json_of_nothing_or_garbage_is_null(raw: str | None) -> None:
    assert search("from_json(data.resultJson).resultUrls", {"data": {"resultJson": raw}}) is None


@pytest.mark.parametrize(
    ("output", "expected"), [("u", ["u"]), (["a", "b"], ["a", "b"]), (None, []), (3, [3])]
)
def test_as_list(output: Any, expected: list[Any]) -> None:
    assert search("as_list(output)", {"output": output}) == expected


def test_error_fallbacks_accept_null_and_empty() -> None:
    expression = "data.failMsg || msg || message"
    assert search(expression, {"data": {"failMsg": "boom"}, "msg": "m"}) == "boom"
    assert search(expression, {"data": {"failMsg": None}, "message": "from message"}) == "from message"
    assert search(expression, {"data": {"failMsg": ""}, "msg": "from msg"}) == "from msg"


def test_truthy_follows_jmespath() -> None:
    assert not any(truthy(v) for v in (None, False, "", [], {}))
    assert all(truthy(v) for v in (0, "x", [0], {"a": 1}, True))


def _kie() -> dict[str, Any]:
    return copy.deepcopy(dict(load_presets()["kie-ai"].data))


def test_kie_preset_is_shipped_and_valid() -> None:
    profile = load_presets()["kie-ai"]
    assert profile.base_url == "https://api.kie.ai"
    assert profile.submit["request"]["url"] == "/api/v1/jobs/createTask"
    timing = profile.poll_timing
    assert (timing.initial_delay_ms, timing.backoff, timing.max_delay_ms) == (3000, 1.5, 30_000)
    assert timing.min_interval_ms == 1000 and timing.deadline_ms == 900_000


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda p: p["poll"]["state"]["map"].update(done="FINISHED"),
            "$.poll.state.map.done: 'FINISHED' is not one of",
        ),
        (lambda p: p["poll"]["state"].update(unknown="FAILED"), "$.poll.state.unknown"),
        (lambda p: p["auth"].update({"in": "cookie"}), "$.auth.in"),
        (lambda p: p["submit"].pop("task_id"), "'task_id' is a required property"),
        (lambda p: p.pop("poll"), "$: 'poll' is a required property"),
        (lambda p: p["connection"].update(timeout="soon"), "$.connection.timeout"),
        (lambda p: p["submit"]["request"].update(verb="POST"), "$.submit.request: Additional properties"),
        (lambda p: p["result"]["outputs"][0].update(kind="blob", path="x"), "$.result.outputs[0].kind"),
        (lambda p: p["submit"].update(task_id="data.[taskId"), "$.submit.task_id: malformed JMESPath"),
        (lambda p: p["error"].update(message="a ||"), "$.error.message: malformed JMESPath"),
        (
            lambda p: (
                p["poll"]["request"].update(url_from="status_url", url=None)
                or p["poll"]["request"].pop("url")
            ),
            "$.poll.request.url_from: no submit capture named 'status_url'",
        ),
    ],
)
def test_profile_errors_point_at_the_field(mutate: Any, expected: str) -> None:
    data = _kie()
    mutate(data)
    with pytest.raises(ProfileError) as error:
        Profile.parse(data)
    assert expected in str(error.value)


def test_sync_profile_needs_no_poll() -> None:
    data = _kie()
    data.pop("poll")
    data["submit"]["mode"] = "sync"
    data["result"]["source"] = "submit"
    assert Profile.parse(data).mode == "sync"


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        (250, 250),
        ("500ms", 500),
        ("3s", 3000),
        ("1.5s", 1500),
        ("15m", 900_000),
        ("1h", 3_600_000),
        (None, 7),
    ],
)
def test_durations(value: Any, ms: int) -> None:
    assert parse_duration_ms(value, 7) == ms
