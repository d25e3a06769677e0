"""The poll schedule's arithmetic: delays, linger, copy reserve, the early due time, deadlines."""

from __future__ import annotations

import datetime as dt

import pytest

from assetgen.v1 import provider_adapter_pb2
from assetgen_orchestrator import schedule


def _policy(**fields: float) -> provider_adapter_pb2.PollPolicy:
    return provider_adapter_pb2.PollPolicy(**fields)  # type: ignore[arg-type]


def _highest(low: float, high: float) -> float:
    return high


def _lowest(low: float, high: float) -> float:
    return low


def test_the_jitter_is_injected_and_only_shortens() -> None:
    policy = _policy(initial_delay_ms=10_000, backoff=1.0, max_delay_ms=10_000)
    assert schedule.next_poll_delay(policy, 0.0, uniform=_highest) == 10.0
    assert schedule.next_poll_delay(policy, 0.0, uniform=_lowest) == pytest.approx(9.0)


def test_delays_grow_with_age_to_the_steady_interval() -> None:
    policy = _policy(initial_delay_ms=1000, backoff=2.0, max_delay_ms=5000)
    ages_and_delays = [(0.0, 1.0), (1.0, 2.0), (3.0, 4.0), (7.0, 5.0), (600.0, 5.0)]
    for age, delay in ages_and_delays:
        assert schedule.next_poll_delay(policy, age, uniform=_highest) == delay
    assert schedule.next_poll_delay(policy, -5.0, uniform=_highest) == 1.0  # a clock running behind


def test_a_hint_wins_and_the_minimum_interval_is_a_floor_even_for_the_jitter() -> None:
    policy = _policy(initial_delay_ms=1000, min_interval_ms=5000)
    assert schedule.next_poll_delay(policy, 0.0, hint_ms=20_000, uniform=_highest) == 20.0
    assert schedule.next_poll_delay(policy, 0.0, hint_ms=500, uniform=_lowest) == 5.0


def test_an_empty_policy_takes_the_defaults() -> None:
    empty = _policy()
    assert schedule.steady_interval(empty) == 30.0
    assert schedule.min_interval(empty) == 0.0
    assert schedule.next_poll_delay(empty, 0.0, uniform=_highest) == 2.0
    assert schedule.next_poll_delay(empty, 4.0, uniform=_highest) == 4.0  # 2 + 4 × (1.5 − 1)


def test_the_linger_is_a_hundredth_of_the_interval_within_its_range() -> None:
    assert schedule.poll_linger(_policy(max_delay_ms=10_000)) == pytest.approx(0.1)
    assert schedule.poll_linger(_policy(max_delay_ms=1_000)) == 0.05
    assert schedule.poll_linger(_policy(max_delay_ms=600_000)) == 0.5
    assert schedule.poll_linger(_policy(max_delay_ms=600_000), callbacks=True) == 0.0


def test_the_copy_reserve_is_three_hundredths_of_the_delay_at_most_a_second() -> None:
    assert schedule.copy_reserve(10.0) == pytest.approx(0.3)
    assert schedule.copy_reserve(100.0) == 1.0


def test_a_poll_falls_due_early_by_the_pull_pause_linger_copy_and_time_taken() -> None:
    policy = _policy(initial_delay_ms=10_000, backoff=1.0, max_delay_ms=10_000)
    margin = schedule.early_margin(policy, 10.0, pull_pause=0.25, elapsed=2.0)
    assert margin == pytest.approx(0.25 + 0.1 + 0.3 + 2.0)
    assert schedule.due_in(policy, 10.0, pull_pause=0.25, elapsed=2.0) == pytest.approx(10.0 - margin)


def test_the_early_due_time_never_undercuts_the_minimum_interval() -> None:
    policy = _policy(initial_delay_ms=1000, backoff=1.0, max_delay_ms=1000, min_interval_ms=1000)
    assert schedule.due_in(policy, 1.0, pull_pause=0.25, elapsed=0.5) == 1.0


def test_a_held_back_submission_waits_at_least_half_a_second_spread_later() -> None:
    assert schedule.held_back_delay(0, uniform=_lowest) == 0.5
    assert schedule.held_back_delay(2000, uniform=_lowest) == 2.0
    assert schedule.held_back_delay(2000, uniform=_highest) == pytest.approx(2.4)


def test_retries_double_each_try_within_a_fifth_either_way() -> None:
    assert [schedule.retry_delay(2.0, tries, uniform=_lowest) for tries in (1, 2, 3)] == pytest.approx(
        [1.6, 3.2, 6.4]
    )
    assert schedule.retry_delay(2.0, 1, uniform=_highest) == pytest.approx(2.4)


def test_the_profiles_deadline_wins_over_the_default() -> None:
    assert schedule.deadline_seconds(_policy(deadline_ms=90_000), 3600.0) == 90.0
    assert schedule.deadline_seconds(_policy(), 3600.0) == 3600.0


def test_age_reads_a_naive_moment_as_utc() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.UTC)
    assert schedule.age_seconds(dt.datetime(2026, 1, 1, 12, 0, 0), now) == 30.0
    assert schedule.age_seconds(dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC), now) == 30.0


def test_durations_read_as_a_person_writes_them() -> None:
    assert [schedule.duration_text(s) for s in (3600.0, 7200.0, 5400.0, 90.0, 45.0, 0.5)] == [
        "1h",
        "2h",
        "90m",
        "90s",
        "45s",
        "0.5s",
    ]
