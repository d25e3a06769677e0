"""How soon a queued submission asks again: often when its turn is near, seldom when it is far."""

from __future__ import annotations

from assetgen_provider_adapter.submission_queue import (
    HEAD_RETRY_SECONDS,
    LONGEST_RETRY_SECONDS,
    retry_seconds,
)


def test_the_next_round_asks_often_and_later_rounds_less() -> None:
    # Ten slots: places 1-10 start when the running tasks end, 11-20 the round after, and so on.
    assert retry_seconds(1, 10) == retry_seconds(10, 10) == HEAD_RETRY_SECONDS
    assert retry_seconds(11, 10) == 2 * HEAD_RETRY_SECONDS
    assert retry_seconds(95, 10) == 10 * HEAD_RETRY_SECONDS
    assert retry_seconds(990, 10) == LONGEST_RETRY_SECONDS


def test_a_waiter_that_lost_a_race_or_has_no_capacity_left_still_asks() -> None:
    assert retry_seconds(0, 10) == HEAD_RETRY_SECONDS  # allowed to start, but a racer took the slot
    assert retry_seconds(3, 0) == 3 * HEAD_RETRY_SECONDS  # every key cooling: no slots at all


def test_a_thousand_waiters_ask_about_a_hundred_times_a_second_not_five_hundred() -> None:
    asks_per_second = sum(1 / retry_seconds(place, 10) for place in range(1, 991))
    assert 80 < asks_per_second < 120  # every waiter every 2 s would be 495
