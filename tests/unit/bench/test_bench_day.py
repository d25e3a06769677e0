"""Whether a production day kept up (bench/day.py)."""

from __future__ import annotations

from typing import Any

from bench.day import kept_up


def _day(**changes: Any) -> dict[str, Any]:
    figures = {
        "generations": 600,
        "completed": 600,
        "submit_lateness_s": {"count": 600, "p99": 0.05},
        "added_s": {"count": 600, "p99": 6.0},
    }
    return figures | changes


def test_every_generation_done_on_time_keeps_up() -> None:
    assert kept_up(_day(), interval=5.0) == []


def test_unfinished_late_submissions_or_too_much_added_time_fall_behind() -> None:
    assert kept_up(_day(completed=590), 5.0) == ["10 of 600 not completed"]
    assert kept_up(_day(submit_lateness_s={"count": 600, "p99": 2.5}), 5.0) == [
        "submissions accepted up to 2.50 s late (p99)"
    ]
    assert kept_up(_day(added_s={"count": 600, "p99": 12.0}), 5.0) == [
        "time added p99 12.0 s > two poll intervals (10 s)"
    ]
    assert kept_up(_day(completed=0, added_s={"count": 0}), 5.0) == [
        "600 of 600 not completed",
        "time added p99 None s > two poll intervals (10 s)",
    ]
