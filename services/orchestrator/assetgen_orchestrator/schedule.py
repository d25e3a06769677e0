"""When a generation's job runs again: the poll schedule's arithmetic, as pure functions.

Every function here takes what it needs — a task's poll policy, its age, the runner's pull pause,
the time a step took — and returns seconds; randomness comes in as a ``uniform(low, high)``
function, so a caller (or a test) decides what jitter is. The lifecycle asks these *when* and
decides *what* itself.

How a poll is paced, end to end: the n-th delay grows geometrically with the task's age up to the
steady interval (:func:`next_poll_delay`); the job message then falls due *early* by what may
still delay the next poll — the runner's pause before its pull, the linger of its ``PollTasks``
batch, the copy of a result it may find, and the time this step took since asking
(:func:`early_margin`) — so a finished task is completed within the interval the profile promises.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

from assetgen.v1 import provider_adapter_pb2

__all__ = [
    "COPY_RESERVE_MAX",
    "COPY_RESERVE_SHARE",
    "POLL_LINGER_RANGE",
    "POLL_LINGER_SHARE",
    "Uniform",
    "age_seconds",
    "capped_retry_delay",
    "copy_reserve",
    "deadline_seconds",
    "due_in",
    "duration_text",
    "early_margin",
    "held_back_delay",
    "min_interval",
    "next_poll_delay",
    "poll_linger",
    "retry_delay",
    "steady_interval",
    "time_left",
]

Uniform = Callable[[float, float], float]
"""A random number between its two arguments (``random.uniform``)."""

DEFAULT_INITIAL_DELAY = 2.0
DEFAULT_BACKOFF = 1.5
DEFAULT_STEADY_INTERVAL = 30.0
JITTER_SHARE = 0.1
"""A delay is jittered up to this share sooner, so tasks submitted together do not poll together."""
POLL_LINGER_SHARE = 0.01
"""A poll waits for others to share its ``PollTasks`` call up to 1 % of its steady interval: due
jobs arrive a pull at a time, and the longer the interval, the fewer polls a second and the longer
they can wait for each other unnoticed."""
POLL_LINGER_RANGE = (0.05, 0.5)
COPY_RESERVE_SHARE = 0.03
"""The interval promises a finished task *completed* within it, not only seen: the end of each
interval is kept for copying the result the next poll may find (copy times: bench/README.md)."""
COPY_RESERVE_MAX = 1.0
HELD_BACK_MIN_DELAY = 0.5
"""Shortest wait before asking again for a submission the adapter held back at a provider limit."""


def _uniform(uniform: Uniform | None) -> Uniform:
    # Looked up at call time, so that replacing ``random.uniform`` (in a test) reaches it.
    return uniform if uniform is not None else random.uniform


def steady_interval(policy: provider_adapter_pb2.PollPolicy) -> float:
    """Seconds between polls once the backoff has reached its cap."""
    return (policy.max_delay_ms or DEFAULT_STEADY_INTERVAL * 1000) / 1000


def min_interval(policy: provider_adapter_pb2.PollPolicy) -> float:
    """The provider's shortest allowed time between polls of a task (its rate limit), in seconds."""
    return policy.min_interval_ms / 1000


def next_poll_delay(
    policy: provider_adapter_pb2.PollPolicy,
    age: float,
    hint_ms: int = 0,
    *,
    left: float | None = None,
    uniform: Uniform | None = None,
) -> float:
    """Seconds until the next poll of a task submitted ``age`` seconds ago, jittered up to 10 % sooner.

    Delays grow geometrically — initial, initial × backoff, initial × backoff², … — capped at the
    maximum. After polls at those delays a task's age is initial × (backoffⁿ − 1) / (backoff − 1),
    so the n-th delay is initial + age × (backoff − 1): the age alone gives the schedule. A
    provider's hint wins, but is capped at the maximum too (a hint of hours would leave a finished
    task unseen); the profile's minimum interval is a floor. No delay reaches past the ``left``
    seconds to the generation's deadline: a delay that would is exactly ``left`` (the job then
    runs at the deadline and ends the generation as timed out).

    The jitter, which keeps tasks submitted together from polling together, only ever shortens a
    delay: the configured interval is a promise that a finished task is seen within it, and the
    minimum interval (a provider's rate limit) is never undercut.
    """
    initial = (policy.initial_delay_ms or DEFAULT_INITIAL_DELAY * 1000) / 1000
    backoff = policy.backoff or DEFAULT_BACKOFF
    ceiling = steady_interval(policy)
    delay = min(hint_ms / 1000 if hint_ms > 0 else initial + max(age, 0.0) * (backoff - 1), ceiling)
    floor = min_interval(policy)
    jittered = max(max(delay, floor) * _uniform(uniform)(1.0 - JITTER_SHARE, 1.0), floor)
    if left is not None and jittered >= left:
        return max(left, 0.0)
    return jittered


def poll_linger(policy: provider_adapter_pb2.PollPolicy, *, callbacks: bool = False) -> float:
    """How long a poll may wait to share a PollTasks call: 1 % of its steady poll interval; nothing
    while the task's callbacks are expected, since its poll is then a callback's (to be answered at
    once: the lag with callbacks is measured in bench/README.md) or a rare safety poll."""
    if callbacks:
        return 0.0
    low, high = POLL_LINGER_RANGE
    return min(max(steady_interval(policy) * POLL_LINGER_SHARE, low), high)


def copy_reserve(delay: float) -> float:
    """How much sooner than ``delay`` a poll falls due, to leave time for copying what it finds."""
    return min(delay * COPY_RESERVE_SHARE, COPY_RESERVE_MAX)


def early_margin(
    policy: provider_adapter_pb2.PollPolicy, delay: float, *, pull_pause: float, elapsed: float
) -> float:
    """How much sooner than ``delay`` the next poll's job must fall due to keep the interval's promise.

    The interval runs from the poll, not from the end of its step, so the ``elapsed`` seconds since
    asking (batching, the provider's answer, queueing in a busy adapter, the write) are taken off;
    and the job falls due as early as the next poll may wait for its pull (``pull_pause``, the job
    runner's longest pause) and its batch, plus the time a result's copy takes.
    """
    return pull_pause + poll_linger(policy) + copy_reserve(delay) + elapsed


def due_in(
    policy: provider_adapter_pb2.PollPolicy, delay: float, *, pull_pause: float, elapsed: float
) -> float:
    """Seconds until the next poll's job falls due: ``delay`` less the early margin, never below the
    provider's minimum interval."""
    margin = early_margin(policy, delay, pull_pause=pull_pause, elapsed=elapsed)
    return max(delay - margin, min_interval(policy))


def held_back_delay(poll_after_ms: int, *, uniform: Uniform | None = None) -> float:
    """Seconds until a submission held back at a provider limit is tried again: the adapter's hint
    (at least half a second), spread up to 20 % later so held-back submissions do not return together."""
    return max(poll_after_ms / 1000, HELD_BACK_MIN_DELAY) * _uniform(uniform)(1.0, 1.2)


def retry_delay(base: float, tries: int, *, uniform: Uniform | None = None) -> float:
    """Seconds before the ``tries``-th retry of a step: ``base``, doubled each try, ±20 %."""
    return base * 2 ** (tries - 1) * _uniform(uniform)(0.8, 1.2)


MAX_RETRY_DOUBLINGS = 32
"""Beyond this many doublings every retry delay is at its cap anyway (and 2ⁿ stays a small float)."""


def capped_retry_delay(
    base: float, tries: int, *, cap: float, left: float, uniform: Uniform | None = None
) -> float:
    """Seconds before the ``tries``-th retry of a step that may go on until a deadline ``left`` seconds
    away: ``base`` doubled each try up to ``cap``, jittered ±20 % (but never above ``cap``), and never
    past the deadline, so the last try comes at it rather than after it."""
    doubled = base * 2.0 ** min(max(tries - 1, 0), MAX_RETRY_DOUBLINGS)
    delay = min(min(doubled, cap) * _uniform(uniform)(0.8, 1.2), cap)
    return max(min(delay, left), 0.0)


def time_left(started: dt.datetime | None, deadline: float, now: dt.datetime) -> float:
    """Seconds from ``now`` to the deadline of a generation that started at ``started`` (no start: all)."""
    if started is None:
        return deadline
    return deadline - age_seconds(started, now)


def deadline_seconds(policy: provider_adapter_pb2.PollPolicy, default: float) -> float:
    """How long a generation may wait for its provider: the profile's deadline, or ``default``."""
    return (policy.deadline_ms / 1000) or default


def age_seconds(moment: dt.datetime, now: dt.datetime) -> float:
    """Seconds from ``moment`` to ``now``; a naive ``moment`` (SQLite hands those back) is UTC."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return (now - aware).total_seconds()


def duration_text(seconds: float) -> str:
    """A duration as a person writes it: ``1h``, ``90m`` or ``45s``."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
