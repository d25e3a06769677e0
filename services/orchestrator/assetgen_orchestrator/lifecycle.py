"""The generation state machine: one job delivery moves an asset one step on.

Steps (under the public status)::

    PENDING    waiting_parent ─► queued ───────────────┐ submit
    PROCESSING                     polling ◄───────────┤ (NAK with the next poll delay)
    PROCESSING                     ingesting ◄─────────┘ provider COMPLETED (a copy over 1 s)
    COMPLETED / FAILED / CANCELED  done

Every change is a compare-and-set on the asset's version (see ``AssetStore.update_asset``); a step
that loses the race re-reads the asset and decides again, so a late or duplicated message can never
move an asset backwards or finish it twice. Submitting is safe to repeat: the provider-adapter
records its intent before it sends and answers a repeated (asset, attempt) from that record.

Polls are cheap on purpose, as 10,000 tasks in flight at a 10 s interval are 1,000 polls a second:
the polls that come due together go to the adapter in one ``PollTasks`` call per model, a poll that
changes nothing visible writes nothing, and the next delay follows from the task's age, so no poll
counter has to be stored.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import random
from collections.abc import Awaitable
from dataclasses import dataclass
from time import monotonic
from typing import TypeAlias

import grpc

from assetgen.v1 import (
    common_pb2,
    provider_adapter_pb2,
    provider_adapter_pb2_grpc,
    storage_pb2,
    storage_pb2_grpc,
)
from assetgen_orchestrator.convert import parse_poll_policy, poll_policy_json
from assetgen_orchestrator.events import EventPublisher
from assetgen_orchestrator.jobs import PULL_PAUSE, Done, Job, Later, Outcome
from assetgen_orchestrator.metrics import POLLS, TRANSITIONS
from assetgen_orchestrator.models import Asset, Status, Step, utcnow
from assetgen_orchestrator.store import AssetStore
from assetgen_runtime.batching import Batcher
from assetgen_runtime.errors import status_error

__all__ = ["Lifecycle", "LifecycleConfig", "build_variables", "next_poll_delay"]

logger = logging.getLogger(__name__)

# Errors that say "try again later" rather than "this will never work".
_TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)
_PARENT_CHECK_INTERVAL = 2.0
# A result copied within this long completes its asset with one write and no INGESTING step.
_QUIET_INGEST = 1.0
_MAX_CAS_RETRIES = 5
_POLL_BATCH = 100
# Polls share one PollTasks call over 1 % of their poll interval (50–500 ms): due jobs arrive a
# pull at a time (see JobRunner), and the longer the interval, the fewer polls a second and the
# longer they can wait for each other unnoticed. The job steps of one pull share one asset query.
_POLL_LINGER_SHARE = 0.01
_POLL_LINGER_RANGE = (0.05, 0.5)
# The interval promises a finished task *completed* within it, not only seen: the end of each
# interval (3 %, at most 1 s) is kept for copying the result the next poll may find, which takes
# 0.07 s on median and 0.36 s at p99 with 10,000 in flight (`make bench`).
_COPY_RESERVE_SHARE = 0.03
_COPY_RESERVE_MAX = 1.0

PollBatcher: TypeAlias = Batcher[provider_adapter_pb2.PollTaskRequest, provider_adapter_pb2.TaskStatus]


@dataclass(frozen=True)
class LifecycleConfig:
    """The knobs of the state machine (from the orchestrator's settings)."""

    step_retries: int
    retry_base_seconds: float
    rpc_timeout: float
    submit_timeout: float
    ingest_timeout: float
    default_deadline: float


def build_variables(asset: Asset, parent_url: str = "") -> dict[str, object]:
    """The template variables of a generation: every config key, then prompt and image URLs.

    ``image_urls`` defaults to ``[image_url]``; with a parent asset, ``image_url`` is its stored file.
    """
    variables: dict[str, object] = dict(json.loads(asset.config_json or "{}"))
    if asset.prompt:
        variables["prompt"] = asset.prompt
    image_url = parent_url or asset.image_url
    image_urls = json.loads(asset.image_urls_json or "[]")
    if image_url:
        variables["image_url"] = image_url
    if image_urls:
        variables["image_urls"] = image_urls
    elif image_url:
        variables["image_urls"] = [image_url]
    return variables


def next_poll_delay(policy: provider_adapter_pb2.PollPolicy, age: float, hint_ms: int = 0) -> float:
    """Seconds until the next poll of a task submitted ``age`` seconds ago, jittered up to 10 % sooner.

    Delays grow geometrically — initial, initial × backoff, initial × backoff², … — capped at the
    maximum. After polls at those delays a task's age is initial × (backoffⁿ − 1) / (backoff − 1),
    so the n-th delay is initial + age × (backoff − 1): the age alone gives the schedule. A
    provider's hint wins; the profile's minimum interval is a floor.

    The jitter, which keeps tasks submitted together from polling together, only ever shortens a
    delay: the configured interval is a promise that a finished task is seen within it, and the
    minimum interval (a provider's rate limit) is never undercut.
    """
    initial = (policy.initial_delay_ms or 2000) / 1000
    backoff = policy.backoff or 1.5
    ceiling = _steady_interval(policy)
    delay = hint_ms / 1000 if hint_ms > 0 else min(initial + max(age, 0.0) * (backoff - 1), ceiling)
    floor = policy.min_interval_ms / 1000
    return max(max(delay, floor) * random.uniform(0.9, 1.0), floor)


def _steady_interval(policy: provider_adapter_pb2.PollPolicy) -> float:
    """Seconds between polls once the backoff has reached its cap."""
    return (policy.max_delay_ms or 30_000) / 1000


def _copy_reserve(delay: float) -> float:
    """How much sooner than ``delay`` a poll falls due, to leave time for copying what it finds."""
    return min(delay * _COPY_RESERVE_SHARE, _COPY_RESERVE_MAX)


def _poll_linger(policy: provider_adapter_pb2.PollPolicy) -> float:
    """How long a poll may wait to share a PollTasks call: 1 % of its steady poll interval."""
    low, high = _POLL_LINGER_RANGE
    return min(max(_steady_interval(policy) * _POLL_LINGER_SHARE, low), high)


class Lifecycle:
    """Runs one step of an asset's generation per job delivery."""

    def __init__(
        self,
        store: AssetStore,
        adapter: provider_adapter_pb2_grpc.ProviderAdapterServiceStub,
        storage: storage_pb2_grpc.StorageServiceStub,
        events: EventPublisher,
        config: LifecycleConfig,
    ) -> None:
        self._store = store
        self._adapter = adapter
        self._storage = storage
        self._events = events
        self._config = config
        self._running: set[tuple[str, int]] = set()
        self._poll_batchers: dict[tuple[str, float], PollBatcher] = {}

    async def handle(self, job: Job) -> Outcome:
        """Moves the job's asset on by one step and says when to run the job again, if ever."""
        key = (job.asset_id, job.attempt)
        if key in self._running:
            # JetStream redelivered a job this process is still running (its in-progress heartbeat
            # could not reach NATS): running the step twice at once would submit concurrently.
            return Later(1.0)
        self._running.add(key)
        try:
            return await self._handle(job)
        finally:
            self._running.discard(key)

    async def _handle(self, job: Job) -> Outcome:
        for _ in range(_MAX_CAS_RETRIES):
            # The store answers the lookups of one pull's steps with one query.
            asset = await self._store.find_asset(job.asset_id)
            if asset is None or asset.attempt != job.attempt or Status(asset.status).terminal:
                return Done()
            try:
                outcome = await self._step(asset)
            except grpc.aio.AioRpcError as error:
                outcome = await self._on_rpc_error(asset, error)
            except Exception as error:
                logger.exception("generation step crashed", extra={"asset_id": asset.id})
                outcome = await self._retry_or_fail(asset, f"internal error: {type(error).__name__}")
            if outcome is not None:
                return outcome
        # Someone keeps changing the asset under us; look again shortly.
        return Later(1.0)

    async def on_poison(self, data: bytes, reason: str) -> None:
        """A job message nobody can run: fail its asset with the reason if the message names one."""
        try:
            body = json.loads(data)
            asset = await self._store.find_asset(str(body["asset_id"]))
        except Exception:
            logger.error("dropping unreadable job message: %s", reason)
            return
        if asset is not None and not Status(asset.status).terminal:
            await self._fail(asset, f"generation job could not be processed: {reason}")

    async def _step(self, asset: Asset) -> Outcome | None:
        step = Step(asset.step)
        if step is Step.WAITING_PARENT:
            return await self._wait_for_parent(asset)
        if step in (Step.QUEUED, Step.SUBMITTING):  # SUBMITTING: rows written by older versions
            return await self._submit(asset)
        if step is Step.POLLING:
            return await self._poll(asset)
        if step is Step.INGESTING:
            return await self._ingest(asset)
        return Done()

    async def _wait_for_parent(self, asset: Asset) -> Outcome | None:
        parent = await self._store.find_asset(asset.parent_asset_id or "")
        if parent is None:
            return await self._fail(asset, f"parent asset {asset.parent_asset_id} no longer exists")
        if parent.status in (Status.FAILED, Status.CANCELED):
            reason = parent.error_message or parent.status.lower()
            return await self._fail(asset, f"parent asset {parent.id} {parent.status.lower()}: {reason}")
        if parent.status != Status.COMPLETED:
            return Later(_PARENT_CHECK_INTERVAL)
        if not await self._store.update_asset(asset, step=Step.QUEUED, message="parent asset completed"):
            return None
        return await self._submit(asset)

    async def _submit(self, asset: Asset) -> Outcome | None:
        parent_url = await self._parent_url(asset)
        asked_at = monotonic()
        status = await self._adapter.SubmitTask(
            provider_adapter_pb2.SubmitTaskRequest(
                asset_id=asset.id,
                attempt=asset.attempt,
                model=asset.model,
                variables_json=json.dumps(build_variables(asset, parent_url)),
                box_id=asset.box_id,
            ),
            # Must outlast the adapter's own provider timeout and retries: a submission cut off
            # midway has an unknown outcome and will not be resent.
            timeout=self._config.submit_timeout,
        )
        return await self._apply(asset, status, submitted=True, asked_at=asked_at)

    async def _poll(self, asset: Asset) -> Outcome | None:
        policy = self._policy(asset)
        deadline = (policy.deadline_ms / 1000) or self._config.default_deadline
        started = asset.submitted_at or asset.created_at
        if started is not None and _age(started) > deadline:
            return await self._fail(asset, f"timed out after {_duration(deadline)} waiting for the provider")
        POLLS.labels(asset.model).inc()
        asked_at = monotonic()
        status = await self._poll_batcher(asset.model, _poll_linger(policy)).load(
            provider_adapter_pb2.PollTaskRequest(
                asset_id=asset.id,
                model=asset.model,
                task_id=asset.external_task_id,
                task_handle_json=asset.task_handle_json,
                box_id=asset.box_id,
            )
        )
        return await self._apply(asset, status, submitted=False, asked_at=asked_at)

    def _poll_batcher(self, model: str, linger: float) -> PollBatcher:
        """One batcher per model (and linger), so a slow provider never holds up another's polls."""
        key = (model, linger)
        batcher = self._poll_batchers.get(key)
        if batcher is None:
            batcher = self._poll_batchers[key] = Batcher(
                self._poll_many, max_batch=_POLL_BATCH, linger=linger
            )
        return batcher

    async def _poll_many(
        self, requests: list[provider_adapter_pb2.PollTaskRequest]
    ) -> list[provider_adapter_pb2.TaskStatus | BaseException]:
        """Polls a batch in one PollTasks call; each task's error is raised to its own step."""
        try:
            response = await self._adapter.PollTasks(
                provider_adapter_pb2.PollTasksRequest(tasks=requests), timeout=self._config.rpc_timeout
            )
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            # An adapter older than PollTasks (during a rolling upgrade): one call per task.
            return await asyncio.gather(
                *(self._adapter.PollTask(request, timeout=self._config.rpc_timeout) for request in requests),
                return_exceptions=True,
            )
        return [
            result.status if result.HasField("status") else status_error(result.error)
            for result in response.results
        ]

    async def _apply(
        self, asset: Asset, status: provider_adapter_pb2.TaskStatus, *, submitted: bool, asked_at: float
    ) -> Outcome | None:
        """Records what the provider said of a task (asked at monotonic ``asked_at``) and what follows."""
        state = status.state
        common: dict[str, object] = {
            "raw_status": status.raw_state[:200],
            "error_count": 0,
            "external_task_id": status.task_id or asset.external_task_id,
            "task_handle_json": status.task_handle_json or asset.task_handle_json,
        }
        if status.HasField("poll_policy"):
            common["poll_policy_json"] = poll_policy_json(status.poll_policy)
        if submitted:
            common["submitted_at"] = utcnow()
        if state == provider_adapter_pb2.TASK_STATE_COMPLETED:
            if not status.outputs:
                return await self._fail(
                    asset, "the provider reported success but returned no result", **common
                )
            if status.outputs[0].HasField("stored"):
                # The adapter already stored an inline or authenticated result itself.
                return await self._record(asset, status.outputs[0].stored, progress=1.0, **common)
            finished = {**common, "result_url": status.outputs[0].url, "progress": 1.0}
            if submitted:
                # The task id is not recorded yet: record it, with the step, before the copy.
                if not await self._start_ingest(asset, finished):
                    return None
                return await self._ingest(asset)
            return await self._copy_result(asset, finished)
        if state == provider_adapter_pb2.TASK_STATE_FAILED:
            reason = status.error_message or f"the provider reported {status.raw_state or 'failure'}"
            return await self._fail(asset, reason, **common)
        if state == provider_adapter_pb2.TASK_STATE_CANCELED:
            return await self._end(asset, Status.CANCELED, "canceled at the provider", **common)
        if submitted and not status.task_id and state == provider_adapter_pb2.TASK_STATE_PENDING:
            # The adapter held the submission back at a provider limit; nothing was sent: ask again.
            return Later(max(status.poll_after_ms, 500) / 1000 * random.uniform(1.0, 1.2))
        # PENDING, PROCESSING, or anything unknown: still running.
        progress = min(max(status.progress, 0.0), 1.0)
        visible = asset.status != Status.PROCESSING or abs(progress - asset.progress) > 1e-6
        if submitted or visible or _differs(asset, common):
            if not await self._store.update_asset(
                asset,
                status=Status.PROCESSING,
                step=Step.POLLING,
                progress=progress,
                message=f"submitted; provider task {status.task_id}" if submitted else "",
                **common,
            ):
                return None
            if visible:
                await self._events.publish(asset)
        age = _age(asset.submitted_at) if asset.submitted_at is not None else 0.0
        policy = self._policy(asset)
        delay = next_poll_delay(policy, age, status.poll_after_ms)
        # The interval runs from this poll, not from the end of its step: the time the step took
        # since asking (batching, the provider's answer, queueing in a busy adapter, the write)
        # is taken off. And the message falls due as early as the next poll may wait for its pull
        # and its batch, plus the time a result's copy takes, so that none of these makes a
        # completion later than its interval promises.
        early = PULL_PAUSE + _poll_linger(policy) + _copy_reserve(delay) + (monotonic() - asked_at)
        return Later(max(delay - early, policy.min_interval_ms / 1000))

    async def _start_ingest(self, asset: Asset, changes: dict[str, object]) -> bool:
        """Records the step INGESTING (the provider is done, the copy under way) and tells watchers."""
        if not await self._store.update_asset(
            asset,
            step=Step.INGESTING,
            status=Status.PROCESSING,
            message="provider finished; copying the result into storage",
            **changes,
        ):
            return False
        await self._events.publish(asset)
        return True

    async def _copy_result(self, asset: Asset, changes: dict[str, object]) -> Outcome | None:
        """Copies a polled task's result into storage and completes the asset with ``changes``.

        A copy over within ``_QUIET_INGEST`` seconds — most images — completes the asset with one
        write. A longer one is recorded as the step INGESTING meanwhile, so watchers see the provider
        done and the copy under way, and a job redelivered after a crash resumes the copy; before
        that write, a redelivered job polls the provider again, which answers the same.
        """
        copying: asyncio.Future[common_pb2.StoredObject] = asyncio.ensure_future(
            self._copy(asset, str(changes["result_url"]))
        )
        try:
            done, _ = await asyncio.wait({copying}, timeout=_QUIET_INGEST)
            if not done:
                if not await self._start_ingest(asset, changes):
                    await self._abandon(copying)  # someone else moved the asset on
                    return None
                changes = {}
            stored = await copying
        finally:
            # Cancelling the call makes storage discard what it copied so far.
            copying.cancel()
        return await self._record(asset, stored, **changes)

    async def _abandon(self, copying: asyncio.Future[common_pb2.StoredObject]) -> None:
        """Stops a copy nobody wants any more, and deletes its object if it was stored already."""
        copying.cancel()
        await asyncio.wait({copying})
        if not copying.cancelled() and copying.exception() is None:
            await self._delete_orphan(copying.result().key)

    async def _delete_orphan(self, key: str) -> None:
        await self._storage.Delete(storage_pb2.DeleteRequest(key=key), timeout=self._config.rpc_timeout)

    async def _ingest(self, asset: Asset) -> Outcome | None:
        return await self._record(asset, await self._copy(asset, asset.result_url))

    def _copy(self, asset: Asset, url: str) -> Awaitable[common_pb2.StoredObject]:
        """The storage call that copies the result at ``url`` into the asset's place."""
        return self._storage.Ingest(
            storage_pb2.IngestRequest(url=url, box_id=asset.box_id, asset_id=asset.id),
            timeout=self._config.ingest_timeout,
        )

    async def _record(
        self, asset: Asset, stored: common_pb2.StoredObject, **changes: object
    ) -> Outcome | None:
        """Completes the asset with its stored file (ingested, or uploaded by the adapter)."""
        if not await self._store.update_asset(
            asset,
            status=Status.COMPLETED,
            step=Step.DONE,
            object_key=stored.key,
            content_type=stored.content_type,
            size_bytes=stored.size_bytes,
            sha256=stored.sha256,
            error_message="",
            finished_at=utcnow(),
            message="result stored",
            **changes,
        ):
            # Another worker finished it first; our copy is an orphan nobody references.
            await self._delete_orphan(stored.key)
            return None
        TRANSITIONS.labels(Status.COMPLETED.value).inc()
        await self._events.publish(asset, file_url=stored.url or await self._file_url(asset.object_key))
        return Done()

    async def _on_rpc_error(self, asset: Asset, error: grpc.aio.AioRpcError) -> Outcome | None:
        details = error.details() or error.code().name
        if error.code() == grpc.StatusCode.ABORTED and asset.step in (Step.QUEUED, Step.SUBMITTING):
            # The adapter's ledger says another call is still submitting this attempt (a job
            # redelivered mid-submit). Not a failure: it resolves, SENT or "outcome unknown",
            # within the adapter's submit timeout, so wait without spending a retry.
            logger.info("submission in progress elsewhere; checking again", extra={"asset_id": asset.id})
            return Later(self._config.retry_base_seconds * random.uniform(0.8, 1.2))
        if error.code() in _TRANSIENT:
            return await self._retry_or_fail(asset, details)
        return await self._fail(asset, details)

    async def _retry_or_fail(self, asset: Asset, reason: str) -> Outcome | None:
        tries = asset.error_count + 1
        if tries > self._config.step_retries:
            return await self._fail(asset, f"{reason} (gave up after {tries} tries)")
        if not await self._store.update_asset(asset, error_count=tries):
            return None
        delay = self._config.retry_base_seconds * 2 ** (tries - 1) * random.uniform(0.8, 1.2)
        logger.warning(
            "step failed, retrying in %.1fs: %s", delay, reason, extra={"asset_id": asset.id, "try": tries}
        )
        return Later(delay)

    async def _fail(self, asset: Asset, reason: str, **changes: object) -> Outcome | None:
        return await self._end(asset, Status.FAILED, reason, error_message=reason, **changes)

    async def _end(self, asset: Asset, status: Status, message: str, **changes: object) -> Outcome | None:
        if not await self._store.update_asset(
            asset, status=status, step=Step.DONE, finished_at=utcnow(), message=message, **changes
        ):
            return None
        TRANSITIONS.labels(status.value).inc()
        logger.info("asset %s", status.lower(), extra={"asset_id": asset.id, "reason": message})
        await self._events.publish(asset)
        return Done()

    async def _parent_url(self, asset: Asset) -> str:
        if not asset.parent_asset_id:
            return ""
        parent = await self._store.find_asset(asset.parent_asset_id)
        if parent is None or not parent.object_key:
            return ""
        return await self._file_url(parent.object_key)

    async def _file_url(self, key: str) -> str:
        response = await self._storage.GetObjectUrls(
            storage_pb2.GetObjectUrlsRequest(keys=[key]), timeout=self._config.rpc_timeout
        )
        return response.urls.get(key, "")

    @staticmethod
    def _policy(asset: Asset) -> provider_adapter_pb2.PollPolicy:
        return parse_poll_policy(asset.poll_policy_json)


def _differs(asset: Asset, changes: dict[str, object]) -> bool:
    """Whether writing ``changes`` would change the stored asset."""
    return any(getattr(asset, key) != value for key, value in changes.items())


def _age(moment: dt.datetime) -> float:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    return (utcnow() - aware).total_seconds()


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
