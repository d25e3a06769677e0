"""The pure rules of the generation state machine: variables and poll pacing."""

from __future__ import annotations

import json
from typing import Any

from assetgen.v1 import provider_adapter_pb2
from assetgen_orchestrator.models import AssetRow
from assetgen_orchestrator.schedule import next_poll_delay
from assetgen_orchestrator.variables import build_variables


def _asset(**values: Any) -> AssetRow:
    return AssetRow(
        id="ast_1", box_id="box_1", status="PENDING", step="queued", source_type="GENERATED", **values
    )


def test_variables_merge_config_prompt_and_images() -> None:
    asset = _asset(
        prompt="a cat", image_url="https://x/y.png", config_json=json.dumps({"duration": "8", "n": 2})
    )
    assert build_variables(asset) == {
        "duration": "8",
        "n": 2,
        "prompt": "a cat",
        "image_url": "https://x/y.png",
        "image_urls": ["https://x/y.png"],
    }


def test_explicit_fields_win_over_config_keys() -> None:
    asset = _asset(prompt="real", config_json=json.dumps({"prompt": "from config"}))
    assert build_variables(asset)["prompt"] == "real"


def test_parent_file_becomes_image_url() -> None:
    asset = _asset(prompt="move", parent_asset_id="ast_0")
    variables = build_variables(asset, parent_url="https://s3/parent.png")
    assert variables["image_url"] == "https://s3/parent.png"
    assert variables["image_urls"] == ["https://s3/parent.png"]


def test_explicit_image_urls_are_kept() -> None:
    asset = _asset(image_url="https://a", image_urls_json=json.dumps(["https://b", "https://c"]))
    assert build_variables(asset)["image_urls"] == ["https://b", "https://c"]


def test_unset_variables_are_absent() -> None:
    assert build_variables(_asset()) == {}


def test_poll_delay_backs_off_geometrically_by_age_to_the_cap() -> None:
    policy = provider_adapter_pb2.PollPolicy(initial_delay_ms=1000, backoff=2.0, max_delay_ms=5000)
    # Polled at ages 0, 1, 3 (each after the previous delay): delays 1, 2, 4, then the cap.
    delays = [next_poll_delay(policy, age) for age in (0.0, 1.0, 3.0, 7.0, 600.0)]
    assert 0.9 <= delays[0] <= 1.0
    assert 1.8 <= delays[1] <= 2.0
    assert 3.6 <= delays[2] <= 4.0
    assert all(4.5 <= d <= 5.0 for d in delays[3:])


def test_poll_delay_without_backoff_is_the_interval_at_any_age() -> None:
    policy = provider_adapter_pb2.PollPolicy(initial_delay_ms=10_000, backoff=1.0, max_delay_ms=10_000)
    assert all(9.0 <= next_poll_delay(policy, age) <= 10.0 for age in (0.0, 55.0, 3600.0))


def test_jitter_only_shortens_a_delay_so_the_interval_is_never_overrun() -> None:
    policy = provider_adapter_pb2.PollPolicy(initial_delay_ms=60_000, backoff=1.0, max_delay_ms=60_000)
    delays = [next_poll_delay(policy, 120.0) for _ in range(2000)]
    assert max(delays) <= 60.0
    assert min(delays) >= 54.0
    assert max(delays) - min(delays) > 3.0  # jittered, not constant


def test_provider_hint_wins_but_not_below_minimum_interval() -> None:
    policy = provider_adapter_pb2.PollPolicy(initial_delay_ms=1000, min_interval_ms=5000)
    assert all(next_poll_delay(policy, 0, hint_ms=500) == 5.0 for _ in range(200))
    assert 9.0 <= next_poll_delay(policy, 0, hint_ms=10_000) <= 10.0


def test_defaults_apply_to_an_empty_policy() -> None:
    assert 1.8 <= next_poll_delay(provider_adapter_pb2.PollPolicy(), 0) <= 2.0
