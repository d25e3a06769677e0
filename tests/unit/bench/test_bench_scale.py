"""When a scale level has fallen behind (bench/scale.py)."""

from __future__ import annotations

from typing import Any

from bench.options import Options
from bench.scale import level_verdict

GIB = 1024**3


def _level(**changes: Any) -> dict[str, Any]:
    level = {
        "level": 10_000,
        "in_flight": 10_000,
        "lateness_s": {"count": 100, "p99": 0.2},
        "rss_bytes_services_nats_database": GIB,
    }
    return level | changes


def test_a_level_on_time_within_memory_and_fully_placed_keeps_up() -> None:
    assert level_verdict(_level(), Options()) == []


def test_late_polls_a_short_ramp_or_too_much_memory_each_fall_behind() -> None:
    options = Options()
    assert level_verdict(_level(lateness_s={"count": 100, "p99": 1.5}), options) == [
        "poll lateness p99 1.5 s > 1 s"
    ]
    assert level_verdict(_level(in_flight=9_000), options) == ["only 9000 of 10000 in flight after the ramp"]
    assert level_verdict(_level(rss_bytes_services_nats_database=3 * GIB), options) == [
        "services + NATS + database resident 3.00 GiB over the limit"
    ]
    # No gap measured at all (nothing polled twice in the window) is not "on time".
    assert level_verdict(_level(lateness_s={"count": 0}), options) == ["poll lateness p99 None s > 1 s"]
