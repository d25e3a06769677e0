"""The deadline in the schedule's arithmetic: capped retry backoff, time left, bounded poll hints."""

from __future__ import annotations

import datetime as dt

import pytest

from assetgen.v1 import provider_adapter_pb2
from assetgen_orchestrator import schedule


def _highest(low: float, high: float) -> float:
    return high


def _lowest(low: float, high: float) -> float:
    return low


def test_a_retry_doubles_up_to_the_cap_and_the_jitter_never_exceeds_it() -> None:
    delays = [
        schedule.capped_retry_delay(2.0, n, cap=60.0, left=3600.0, uniform=_highest) for n in (1, 2, 3, 6)
    ]
    assert delays == [pytest.approx(2.4), pytest.approx(4.8), pytest.approx(9.6), 60.0]
    assert schedule.capped_retry_delay(2.0, 6, cap=60.0, left=3600.0, uniform=_lowest) == pytest.approx(48.0)


def test_a_retry_after_thousands_of_tries_is_the_cap() -> None:
    assert schedule.capped_retry_delay(2.0, 5000, cap=60.0, left=1e9, uniform=_highest) == 60.0


def test_no_retry_is_scheduled_past_the_deadline() -> None:
    assert schedule.capped_retry_delay(2.0, 10, cap=60.0, left=7.5, uniform=_highest) == 7.5
    assert schedule.capped_retry_delay(2.0, 10, cap=60.0, left=-3.0, uniform=_highest) == 0.0


def test_time_left_counts_from_the_start() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    now = start + dt.timedelta(minutes=50)
    assert schedule.time_left(start, 3600.0, now) == pytest.approx(600.0)
    assert schedule.time_left(start.replace(tzinfo=None), 3600.0, now) == pytest.approx(600.0)  # SQLite
    assert schedule.time_left(None, 3600.0, now) == 3600.0


def test_a_hint_is_capped_at_the_steady_interval() -> None:
    policy = provider_adapter_pb2.PollPolicy(initial_delay_ms=1000, max_delay_ms=30_000)
    assert schedule.next_poll_delay(policy, 0.0, hint_ms=36_000_000, uniform=_highest) == 30.0


def test_a_delay_reaching_past_the_deadline_ends_at_it() -> None:
    policy = provider_adapter_pb2.PollPolicy(initial_delay_ms=10_000, backoff=1.0, max_delay_ms=10_000)
    assert schedule.next_poll_delay(policy, 100.0, left=4.0, uniform=_highest) == 4.0
    assert schedule.next_poll_delay(policy, 100.0, left=-1.0, uniform=_highest) == 0.0
    assert schedule.next_poll_delay(policy, 100.0, left=50.0, uniform=_highest) == 10.0
