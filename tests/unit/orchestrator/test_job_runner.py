"""The job runner's pull loop: jobs that trickle in are pulled in batches (the pause shrinking as they
pour in), a full pull is followed at once, and new work published meanwhile cuts the pause short."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeoutError

from assetgen_orchestrator import jobs as jobs_module
from assetgen_orchestrator.jobs import Done, Job, JobPublisher, JobRunner, Later, Outcome


class _Message:
    def __init__(self, asset_id: str) -> None:
        self.data = json.dumps({"asset_id": asset_id, "attempt": 1}).encode()
        self.subject = "assetgen.jobs.step"
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


class _Subscription:
    """Answers each fetch with the next of ``batches``, then with nothing (a timeout)."""

    def __init__(self, batches: list[list[_Message]]) -> None:
        self.batches = batches
        self.fetched_at: list[float] = []

    async def fetch(self, batch: int, timeout: float) -> list[_Message]:
        self.fetched_at.append(asyncio.get_running_loop().time())
        if self.batches:
            return self.batches.pop(0)
        await asyncio.sleep(timeout)
        raise NatsTimeoutError


async def _done(job: Job) -> Outcome:
    return Done()


async def _poison(data: bytes, reason: str) -> None:
    raise AssertionError(reason)


def _runner(*, concurrency: int, pull_pause: float, new_work_pause: float = 0.05) -> JobRunner:
    return JobRunner(
        None,  # type: ignore[arg-type]  # the pull loop is given its subscription
        _done,
        _poison,
        concurrency=concurrency,
        ack_wait=30.0,
        max_ack_pending=1000,
        pull_pause=pull_pause,
        new_work_pause=new_work_pause,
    )


async def _until(condition: Any, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("condition not reached in time")
        await asyncio.sleep(0.005)


async def test_a_pull_that_found_less_than_it_asked_is_followed_by_a_pause() -> None:
    messages = [_Message(f"ast_{n}") for n in range(3)]
    subscription = _Subscription([[message] for message in messages])
    runner = _runner(concurrency=10, pull_pause=0.2)

    loop = asyncio.create_task(runner._pull_loop(subscription))  # type: ignore[arg-type]
    try:
        await _until(lambda: len(subscription.fetched_at) >= 3 and all(m.acked for m in messages), 5.0)
    finally:
        loop.cancel()
    gaps = [b - a for a, b in zip(subscription.fetched_at, subscription.fetched_at[1:], strict=False)]
    assert all(gap >= 0.2 for gap in gaps[:2])


async def test_a_full_pull_is_followed_by_the_next_at_once() -> None:
    messages = [_Message(f"ast_{n}") for n in range(3)]
    subscription = _Subscription([messages[:2], messages[2:]])
    runner = _runner(concurrency=2, pull_pause=30.0)

    loop = asyncio.create_task(runner._pull_loop(subscription))  # type: ignore[arg-type]
    try:
        # Far sooner than the pause: the consumer may hold more due jobs.
        await _until(lambda: all(m.acked for m in messages), 5.0)
    finally:
        loop.cancel()
    assert len(subscription.fetched_at) == 2


async def test_new_work_published_during_a_pause_is_pulled_after_the_short_pause() -> None:
    first, fresh = _Message("ast_due"), _Message("ast_new")
    subscription = _Subscription([[first], [fresh]])
    runner = _runner(concurrency=10, pull_pause=30.0, new_work_pause=0.1)

    loop = asyncio.create_task(runner._pull_loop(subscription))  # type: ignore[arg-type]
    try:
        await _until(lambda: first.acked, 5.0)
        published_at = asyncio.get_running_loop().time()
        runner.job_published()
        # Far sooner than the 30 s pause meant for polls: a fresh job's first step is waited for.
        await _until(lambda: fresh.acked, 5.0)
    finally:
        loop.cancel()
    assert subscription.fetched_at[1] - published_at >= 0.1  # it still gathered company briefly


async def test_new_work_never_lengthens_a_pause() -> None:
    messages = [_Message("ast_1"), _Message("ast_2")]
    subscription = _Subscription([[messages[0]], [messages[1]]])
    runner = _runner(concurrency=10, pull_pause=0.2, new_work_pause=30.0)

    loop = asyncio.create_task(runner._pull_loop(subscription))  # type: ignore[arg-type]
    try:
        await _until(lambda: messages[0].acked, 5.0)
        runner.job_published()
        await _until(lambda: messages[1].acked, 5.0)
    finally:
        loop.cancel()
    assert 0.2 <= subscription.fetched_at[1] - subscription.fetched_at[0] < 5.0


class _JetStream:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, subject: str, payload: bytes, **_: Any) -> None:
        if self.error is not None:
            raise self.error
        self.published.append((subject, payload))


async def test_the_publisher_announces_a_job_only_once_it_is_published() -> None:
    announced: list[int] = []
    js = _JetStream()
    publisher = JobPublisher(js, on_published=lambda: announced.append(len(js.published)))  # type: ignore[arg-type]

    await publisher.publish(Job("ast_1", 1))

    assert announced == [1]
    js.error = ConnectionError("no NATS")
    with pytest.raises(ConnectionError):
        await publisher.publish(Job("ast_2", 1))
    assert announced == [1]


def test_jobs_that_pour_in_shorten_the_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(jobs_module.time, "monotonic", lambda: clock[0])
    runner = _runner(concurrency=1000, pull_pause=0.5)
    assert runner._pause_seconds() == 0.5  # nothing seen yet: the longest pause

    for _ in range(20):  # 200 jobs a pull every 0.05 s: 4,000 a second
        clock[0] += 0.05
        runner._rate.pulled(200)
    # 50 jobs fall due in 12.5 ms at that rate: the pause shrinks to its floor.
    assert runner._pause_seconds() == pytest.approx(jobs_module.MIN_PULL_PAUSE)

    for _ in range(40):  # then 10 jobs a pull every 0.2 s: 50 a second
        clock[0] += 0.2
        runner._rate.pulled(10)
    assert runner._pause_seconds() == 0.5  # 50 jobs take a second: capped at the longest pause


def test_the_job_rate_follows_what_the_pulls_bring(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(jobs_module.time, "monotonic", lambda: clock[0])
    rate = jobs_module._JobRate()
    for _ in range(50):  # 100 jobs every 0.1 s for 5 s: 1,000 a second
        clock[0] += 0.1
        rate.pulled(100)
    assert rate.per_second() == pytest.approx(1000, rel=0.01)
    for _ in range(20):  # then nothing for 2 s (empty pulls, timed out)
        clock[0] += 0.1
        rate.pulled(0)
    assert rate.per_second() < 1000 / 10


class _Delivery:
    """A job message as JetStream delivers it: its stream sequence and delivery count."""

    def __init__(self, delivered: int, sequence: int = 7) -> None:
        self.data = json.dumps({"asset_id": "ast_1", "attempt": 1}).encode()
        self.subject = "assetgen.jobs.step.ast_1"
        self.metadata = SimpleNamespace(sequence=SimpleNamespace(stream=sequence), num_delivered=delivered)
        self.naked = False

    async def ack(self) -> None:
        pass

    async def nak(self, delay: float) -> None:
        self.naked = True


async def test_a_step_knows_whether_its_job_comes_back_by_this_runners_own_schedule() -> None:
    seen: list[bool] = []

    async def handler(job: Job) -> Outcome:
        seen.append(jobs_module.step_resumed())
        return Later(1.0)

    runner = JobRunner(
        None,  # type: ignore[arg-type]
        handler,
        _poison,
        concurrency=1,
        ack_wait=30.0,
        max_ack_pending=10,
    )
    for delivery in (
        _Delivery(1),  # the first delivery
        _Delivery(2),  # brought back by the NAK above
        _Delivery(6, sequence=8),  # its last step ran elsewhere (or died): this runner never NAKed it
        _Delivery(7, sequence=8),  # and now back by this runner's own schedule
        _Delivery(3, sequence=9),
    ):
        await asyncio.create_task(runner._run(delivery))  # type: ignore[arg-type]  # a task each, as pulled
    assert seen == [False, False, True, False, True]
    assert not jobs_module.step_resumed()  # the flag belongs to each step's own task
