"""Generation jobs on NATS JetStream: one durable message per asset attempt drives its whole life.

A job message carries ``{"asset_id", "attempt", "generation"}`` on the asset's own subject
(``assetgen.jobs.step.<asset id>``). Each delivery runs one step of the asset's state machine
(submit, poll, ingest); a step that must be repeated later — the next poll, a retry after a
provider error — NAKs the message with a delay, so the schedule lives in JetStream, survives any
process, and no process sleeps. The message is acknowledged when the asset reaches a terminal state.

The jobs stream holds a message for every asset in flight, and only for those (a work queue drops a
message once acknowledged), so whether an asset still has its job is a question to the stream about
the asset's subject: the reconciler (:mod:`.reconciler`) asks it to find and republish lost jobs.
Its copies (``replicas``, ``ASSETGEN_NATS_REPLICAS``) decide whether the schedule survives a node.

A step can tell whether its job comes back by this process's own schedule or not (``step_resumed``):
a delivery that this process did not NAK before ran last somewhere else — in a process that may have
died mid-step — so work that step did (a stored copy) may be there unrecorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.errors import NotJSMessageError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig

from assetgen_runtime.jetstream import ensure_stream
from assetgen_runtime.jsontext import parse_json_object

__all__ = [
    "JOBS_STREAM",
    "PULL_PAUSE",
    "Done",
    "Job",
    "JobPublisher",
    "JobRunner",
    "Later",
    "Outcome",
    "job_subject",
    "jobs_stream_config",
    "setup_streams",
    "step_resumed",
]

logger = logging.getLogger(__name__)

JOBS_STREAM = "ASSETGEN_JOBS"
JOBS_SUBJECT = "assetgen.jobs.step"
"""Where jobs were published before each asset had a subject of its own (still consumed)."""
ASSET_JOBS = f"{JOBS_SUBJECT}.>"
DUPLICATE_WINDOW = 120.0
EVENTS_STREAM = "ASSETGEN_EVENTS"
EVENTS_SUBJECTS = "assetgen.events.>"
CONSUMER = "orchestrator-steps"
_RESUMED: contextvars.ContextVar[bool] = contextvars.ContextVar("assetgen_step_resumed", default=False)
PULL_PAUSE = 0.25
"""Longest the runner lets due jobs gather after a pull that emptied the consumer (see ``JobRunner``)."""
PULL_BATCH = 50
"""Jobs the runner aims to bring per pull while they trickle in; the pause is as long as that takes."""
MIN_PULL_PAUSE = 0.02
"""Shortest pause after a pull that emptied the consumer, however fast jobs fall due."""
NEW_WORK_PAUSE = 0.05
"""Seconds the pause lasts at most once this process has published new work (see ``JobRunner``)."""


@dataclass(frozen=True)
class Job:
    """What a job message says: which asset attempt to move on."""

    asset_id: str
    attempt: int
    generation: int = 0
    """The asset's ``job_generation`` when published; a job older than the asset's stops."""


@dataclass(frozen=True)
class Done:
    """The job is finished (terminal state reached, or nothing left to do): acknowledge it."""


@dataclass(frozen=True)
class Later:
    """Run the job again after ``delay`` seconds (NAK with delay)."""

    delay: float


Outcome = Done | Later
Handler = Callable[[Job], Awaitable[Outcome]]
PoisonHandler = Callable[[bytes, str], Awaitable[None]]


def step_resumed() -> bool:
    """Whether the running step's job was delivered before and not rescheduled (NAKed) by this
    process since: its previous step ran elsewhere or died, and may have left work unrecorded."""
    return _RESUMED.get()


def _delivery(message: Msg) -> tuple[int, int]:
    """The message's stream sequence and how many times it was delivered ((0, 1) when unknown)."""
    try:
        metadata = message.metadata
    except (NotJSMessageError, AttributeError):  # not a JetStream delivery (a test's stand-in)
        return 0, 1
    return int(metadata.sequence.stream), int(metadata.num_delivered)


def job_subject(asset_id: str) -> str:
    """The subject of an asset's job messages."""
    return f"{JOBS_SUBJECT}.{asset_id}"


def jobs_stream_config(replicas: int = 1) -> StreamConfig:
    """The jobs work queue: one message per asset in flight, on ``replicas`` JetStream nodes."""
    return StreamConfig(
        name=JOBS_STREAM,
        subjects=[JOBS_SUBJECT, ASSET_JOBS],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW,
        num_replicas=replicas,
    )


async def setup_streams(js: JetStreamContext, *, events_max_age: float, replicas: int = 1) -> None:
    """Creates (or updates) the jobs work queue and the events stream; safe on every start."""
    await ensure_stream(js, jobs_stream_config(replicas))
    await ensure_stream(
        js,
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[EVENTS_SUBJECTS],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=events_max_age,
            num_replicas=replicas,
        ),
    )


class JobPublisher:
    """Publishes job messages, deduplicated per asset attempt and generation by JetStream's
    duplicate window: a job published twice (a retried publish) is stored once, while a new
    generation (the reconciler's) is a new message even within the window."""

    def __init__(
        self,
        js: JetStreamContext,
        *,
        timeout: float = 5.0,
        on_published: Callable[[], None] | None = None,
    ) -> None:
        self._js = js
        self._timeout = timeout
        self._on_published = on_published

    async def publish(self, job: Job) -> None:
        """Schedules ``job`` to run as soon as a worker is free, and says so to ``on_published``."""
        body = {"asset_id": job.asset_id, "attempt": job.attempt, "generation": job.generation}
        message_id = f"{job.asset_id}:{job.attempt}"
        if job.generation:
            message_id += f":g{job.generation}"
        await self._js.publish(
            job_subject(job.asset_id),
            json.dumps(body).encode(),
            timeout=self._timeout,
            headers={"Nats-Msg-Id": message_id},
        )
        if self._on_published is not None:
            self._on_published()


class JobRunner:
    """Pulls job messages from the shared durable consumer and runs them with bounded concurrency.

    Any number of replicas run this against the same consumer; JetStream hands each message to one
    of them at a time. A pull that found fewer jobs than it asked for is followed by a pause: jobs
    falling due at a steady trickle would otherwise leave one or two per pull, and every pull costs
    a round trip, JetStream's work and one database query for its steps whatever it brings, a fixed
    cost that dominates the runner's when polls trickle. The pause is as long as ``pull_batch``
    jobs take to fall due at the rate the last pulls saw, between ``min_pull_pause`` and
    ``pull_pause``: long when jobs trickle, short when they pour, because a pull of hundreds at
    once arrives at the provider-adapter as one burst, which makes polls late and costs the adapter
    more per poll (figures: bench/README.md). Polls fall due ``pull_pause`` early (the lifecycle is
    given the same ``ASSETGEN_MAX_PULL_PAUSE_MS``), so none runs late for it. New work must not wait
    for polls' company: once this process publishes a job (``job_published``), the pause ends within
    ``new_work_pause`` seconds, which still lets a burst of submissions leave in one pull.

    While a step runs longer than a third of the ack wait, the runner tells JetStream it is still in
    progress, so no message is held past its ack wait; one heartbeat task serves every running step,
    as thousands of polls a second cannot each afford a timer task.

    A pull that fails (the stream or its consumer deleted, or lost with a node) makes the runner
    create both again (``ensure_streams``, then its consumer) before it pulls on; the jobs lost
    with them are the reconciler's to republish.
    """

    def __init__(
        self,
        js: JetStreamContext,
        handler: Handler,
        on_poison: PoisonHandler,
        *,
        concurrency: int,
        ack_wait: float,
        max_ack_pending: int,
        pull_pause: float = PULL_PAUSE,
        pull_batch: int = PULL_BATCH,
        min_pull_pause: float = MIN_PULL_PAUSE,
        new_work_pause: float = NEW_WORK_PAUSE,
        ensure_streams: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._js = js
        self._ensure_streams = ensure_streams
        self._pull_pause = pull_pause
        self._pull_batch = pull_batch
        self._min_pull_pause = min(min_pull_pause, pull_pause)
        self._new_work_pause = new_work_pause
        self._rate = _JobRate()
        self._new_work = asyncio.Event()
        self._handler = handler
        self._on_poison = on_poison
        self._concurrency = concurrency
        self._ack_wait = ack_wait
        self._max_ack_pending = max_ack_pending
        self._slot_freed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._started_at: dict[int, tuple[Msg, float]] = {}
        # Stream sequences of jobs this runner NAKed: their next delivery is its own schedule.
        self._rescheduled: set[int] = set()
        self._subscription: JetStreamContext.PullSubscription | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        """Binds the durable consumer (creating it idempotently) and starts pulling."""
        subscription = await self._bind()
        self._subscription = subscription
        self._loop_task = asyncio.create_task(self._pull_loop(subscription), name="job-pull-loop")
        self._heartbeat_task = asyncio.create_task(self._heartbeats(), name="job-heartbeats")

    async def _bind(self) -> JetStreamContext.PullSubscription:
        """Creates or updates the durable consumer and subscribes to it."""
        config = ConsumerConfig(
            durable_name=CONSUMER,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._ack_wait,
            max_deliver=-1,
            max_ack_pending=self._max_ack_pending,
            max_waiting=512,
            filter_subjects=[JOBS_SUBJECT, ASSET_JOBS],
        )
        # Created, or updated (a consumer of an older version filtered on JOBS_SUBJECT alone).
        await self._js.add_consumer(JOBS_STREAM, config)
        return await self._js.pull_subscribe_bind(durable=CONSUMER, stream=JOBS_STREAM)

    async def _rebind(self, broken: JetStreamContext.PullSubscription) -> JetStreamContext.PullSubscription:
        """After a failed pull: the stream and consumer made sure of, and a new subscription."""
        if self._ensure_streams is None:
            return broken
        try:
            await self._ensure_streams()
            subscription = await self._bind()
        except Exception as exc:
            logger.warning("could not set up the jobs consumer again: %s", exc)
            return broken
        with contextlib.suppress(Exception):
            await broken.unsubscribe()
        self._subscription = subscription
        return subscription

    async def stop(self, timeout: float) -> None:
        """Stops pulling and waits up to ``timeout`` for running steps; unfinished ones are redelivered."""
        self._stopping.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    async def _pull_loop(self, subscription: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            while len(self._tasks) >= self._concurrency:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            free = min(self._concurrency - len(self._tasks), 256)
            self._new_work.clear()  # work published from here on may have missed this pull
            try:
                messages = await subscription.fetch(free, timeout=1.0)
            except (TimeoutError, NatsTimeoutError):
                self._rate.pulled(0)
                continue
            except Exception:
                logger.exception("fetching jobs failed; retrying")
                await asyncio.sleep(1.0)  # back off from a broken connection, not to wait for state
                subscription = await self._rebind(subscription)
                continue
            self._rate.pulled(len(messages))
            for message in messages:
                task = asyncio.create_task(self._run(message))
                self._tasks.add(task)
                task.add_done_callback(self._finished)
            if len(messages) < free and self._pull_pause:
                await self._pause()

    def job_published(self) -> None:
        """Tells the runner that new work is waiting, so that a pause for polls does not hold it up."""
        self._new_work.set()

    def _pause_seconds(self) -> float:
        """As long as ``pull_batch`` jobs take to fall due at the recent rate, within the bounds."""
        rate = self._rate.per_second()
        wanted = self._pull_batch / rate if rate > 0 else self._pull_pause
        return min(max(wanted, self._min_pull_pause), self._pull_pause)

    async def _pause(self) -> None:
        """Waits for company for the next pull, or ``new_work_pause`` after new work is published."""
        loop = asyncio.get_running_loop()
        seconds = self._pause_seconds()
        ends = loop.time() + seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._new_work.wait(), seconds)
        if self._new_work.is_set():
            # A gathering pause, not a wait for state: submissions published together leave together.
            await asyncio.sleep(max(0.0, min(self._new_work_pause, ends - loop.time())))

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()

    async def _run(self, message: Msg) -> None:
        try:
            job = _parse(message.data)
            if job is None:
                await self._on_poison(message.data, "malformed job message")
                await message.term()
                return
            sequence, delivered = _delivery(message)
            # Each message runs in a task of its own, so the flag is this step's alone.
            _RESUMED.set(delivered > 1 and sequence not in self._rescheduled)
            self._rescheduled.discard(sequence)
            self._started_at[id(message)] = (message, asyncio.get_running_loop().time())
            try:
                outcome = await self._handler(job)
            finally:
                del self._started_at[id(message)]
            if isinstance(outcome, Later):
                await message.nak(delay=max(outcome.delay, 0.0))
                self._rescheduled.add(sequence)
            else:
                await message.ack()
        except Exception:
            # Left unacknowledged on purpose: JetStream redelivers after the ack wait.
            logger.exception("job step failed unexpectedly", extra={"subject": message.subject})

    async def _heartbeats(self) -> None:
        """Every third of the ack wait, marks the steps running at least that long as in progress."""
        interval = self._ack_wait / 3
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)  # a timer: heartbeats are periodic by nature
            now = loop.time()
            for message, started in list(self._started_at.values()):
                if now - started >= interval:
                    with contextlib.suppress(Exception):
                        await message.in_progress()


class _JobRate:
    """Jobs pulled per second, averaged over the last second or so of pulls (an exponential average)."""

    _HALF_LIFE = 0.5

    def __init__(self) -> None:
        self._rate = 0.0
        self._last = time.monotonic()

    def pulled(self, count: int) -> None:
        """Records one pull's ``count`` jobs."""
        now = time.monotonic()
        elapsed, self._last = max(now - self._last, 1e-3), now
        weight = 0.5 ** (elapsed / self._HALF_LIFE)
        self._rate = weight * self._rate + (1 - weight) * count / elapsed

    def per_second(self) -> float:
        """The average rate."""
        return self._rate


def _parse(data: bytes) -> Job | None:
    try:
        body = parse_json_object(data, "job message")
        return Job(
            asset_id=str(body["asset_id"]),
            attempt=int(body["attempt"]),
            generation=int(body.get("generation", 0)),
        )
    except (ValueError, KeyError, TypeError):
        return None
