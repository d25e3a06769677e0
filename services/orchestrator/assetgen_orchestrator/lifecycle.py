"""The generation state machine: one job delivery moves an asset one step on.

Steps (under the public status)::

    PENDING    waiting_parent ─► queued ───────────────┐ submit
    PROCESSING                     polling ◄───────────┤ (NAK with the next poll delay)
    PROCESSING                     ingesting ◄─────────┤ provider COMPLETED (a copy over 1 s)
    PROCESSING                     waiting_callback ◄──┘ outcome unknown, callback URL sent
    COMPLETED / FAILED / CANCELED  done

A submission whose outcome is unknown (sent, its answer lost) is never sent again. If it carried our
callback URL, the asset waits in ``waiting_callback`` for the provider's callback, which adopts the
task (:mod:`.callback_service`), and fails "outcome unknown" only at the deadline; without one it
fails at once. Either way it ends once.

Every change is a compare-and-set on the asset's version (see ``AssetStore.update_asset``); a step
that loses the race re-reads the asset and decides again, so a late or duplicated message can never
move an asset backwards or finish it twice. Submitting is safe to repeat: the provider-adapter
records its intent before it sends and answers a repeated (asset, attempt) from that record.

What the provider says of a task is handled one state per ``_on_<state>`` method; *when* the next
poll falls due is the arithmetic of :mod:`.schedule`, and copying a result is :mod:`.ingest`'s.

Once the provider has the task, the work is paid for and followed to the generation's deadline: a
poll or a copy that fails (adapter, provider, storage or S3 unreachable) is tried again with capped
backoff until then, however many tries that takes, and a failed copy keeps the result's reference,
so it is retried as a copy. Submissions keep a number of tries. Waiting for a parent ends at the
deadline too, and a job older than the asset's ``job_generation`` (the reconciler published a new
one) stops, so no asset is driven by two jobs.

Polls are cheap on purpose, as thousands of tasks are in flight at once: the polls that come due
together go to the adapter in one ``PollTasks`` call per model (:mod:`.polls`), a poll that changes
nothing visible writes nothing, and the next delay follows from the task's age, so no poll counter
has to be stored.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from time import monotonic
from typing import Any

import grpc

from assetgen.v1 import provider_adapter_pb2, provider_adapter_pb2_grpc, storage_pb2_grpc
from assetgen_orchestrator import schedule
from assetgen_orchestrator.convert import parse_poll_policy, poll_policy_json
from assetgen_orchestrator.cost_ledger import CostLedger
from assetgen_orchestrator.costs import AssetCost, charge_of
from assetgen_orchestrator.events import EventPublisher
from assetgen_orchestrator.ingest import ResultIngest
from assetgen_orchestrator.jobs import Done, Job, Later, Outcome
from assetgen_orchestrator.metrics import POLLS, TRANSITIONS
from assetgen_orchestrator.models import AssetRow, Status, Step, utcnow
from assetgen_orchestrator.polls import TaskPolls
from assetgen_orchestrator.store import AssetStore
from assetgen_orchestrator.variables import build_variables
from assetgen_runtime.errors import reason_of
from assetgen_runtime.jsontext import parse_json_object

__all__ = ["Lifecycle", "LifecycleConfig"]

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
_PROJECTS_REMEMBERED = 10_000
_MAX_CAS_RETRIES = 5
# The adapter's reason for a submission that may have reached the provider: its cost stays reserved.
_OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
# The same for a submission that carried our callback URL: its callback may still adopt the task.
_CALLBACK_AWAITED = "OUTCOME_UNKNOWN_CALLBACK_AWAITED"
# In a task's handle while its callbacks are expected (the adapter's CALLBACK_MARK; an adopted task's too).
_CALLBACK_MARK = '"assetgen_callback"'


@dataclass(frozen=True)
class LifecycleConfig:
    """The knobs of the state machine (from the orchestrator's settings)."""

    step_retries: int
    """Tries of a submission (or a wait for a parent) that fails for a transient reason before FAILED."""
    retry_base_seconds: float
    rpc_timeout: float
    submit_timeout: float
    ingest_timeout: float
    default_deadline: float
    max_pull_pause: float
    """The job runner's longest pause before a pull: polls fall due this much early for it."""
    retry_max_seconds: float = 60.0
    """Longest wait between retries of a poll or a copy, which go on until the generation's deadline."""


class Lifecycle:
    """Runs one step of an asset's generation per job delivery."""

    def __init__(
        self,
        store: AssetStore,
        adapter: provider_adapter_pb2_grpc.ProviderAdapterServiceStub,
        storage: storage_pb2_grpc.StorageServiceStub,
        events: EventPublisher,
        config: LifecycleConfig,
        callback_url: Callable[[str, int], str] | None = None,
        *,
        ledger: CostLedger | None = None,
    ) -> None:
        self._store = store
        self._adapter = adapter
        self._events = events
        self._config = config
        self._ledger = ledger
        self._projects: dict[str, str] = {}
        self._ingest = ResultIngest(
            store, storage, events, rpc_timeout=config.rpc_timeout, ingest_timeout=config.ingest_timeout
        )
        self._running: set[tuple[str, int]] = set()
        self._polls = TaskPolls(adapter, rpc_timeout=config.rpc_timeout)
        # Where the provider may call back about this attempt's task ('' : callbacks are off).
        self._callback_url = callback_url or _no_callback

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
            if job.generation < asset.job_generation:
                # The reconciler published a newer job for this asset: that one drives it now.
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
            body = parse_json_object(data, "job message")
            asset = await self._store.find_asset(str(body["asset_id"]))
        except Exception:
            logger.error("dropping unreadable job message: %s", reason)
            return
        if asset is not None and not Status(asset.status).terminal:
            await self._fail(asset, f"generation job could not be processed: {reason}")

    async def _step(self, asset: AssetRow) -> Outcome | None:
        step = Step(asset.step)
        if step is Step.WAITING_PARENT:
            return await self._wait_for_parent(asset)
        if step in (Step.QUEUED, Step.SUBMITTING):  # SUBMITTING: rows written by older versions
            return await self._submit(asset)
        if step is Step.POLLING:
            return await self._poll(asset)
        if step is Step.INGESTING:
            return await self._ingest.resume(asset)
        if step is Step.WAITING_CALLBACK:
            return await self._callback_deadline(asset)
        return Done()

    async def _wait_for_parent(self, asset: AssetRow) -> Outcome | None:
        parent = await self._store.find_asset(asset.parent_asset_id or "")
        if parent is None:
            return await self._fail(asset, f"parent asset {asset.parent_asset_id} no longer exists")
        if parent.status in (Status.FAILED, Status.CANCELED):
            reason = parent.error_message or parent.status.lower()
            return await self._fail(asset, f"parent asset {parent.id} {parent.status.lower()}: {reason}")
        if parent.status != Status.COMPLETED:
            deadline = schedule.deadline_seconds(self._policy(asset), self._config.default_deadline)
            left = schedule.time_left(asset.attempt_started_at or asset.created_at, deadline, utcnow())
            if left <= 0:
                waited = schedule.duration_text(deadline)
                return await self._fail(
                    asset, f"parent asset {parent.id} did not finish within {waited}; gave up waiting for it"
                )
            return Later(min(_PARENT_CHECK_INTERVAL, left))
        if not await self._store.update_asset(asset, step=Step.QUEUED, message="parent asset completed"):
            return None
        return await self._submit(asset)

    async def _submit(self, asset: AssetRow) -> Outcome | None:
        if asset.cost_json and self._ledger is not None:
            await self._ledger.reserve(asset.id, asset.attempt)
        parent_url = await self._parent_url(asset)
        asked_at = monotonic()
        status = await self._adapter.SubmitTask(
            provider_adapter_pb2.SubmitTaskRequest(
                asset_id=asset.id,
                attempt=asset.attempt,
                model=asset.model,
                variables_json=json.dumps(build_variables(asset, parent_url)),
                box_id=asset.box_id,
                project=await self._project_of(asset.box_id),
                callback_url=self._callback_url(asset.id, asset.attempt),
            ),
            # Must outlast the adapter's own provider timeout and retries: a submission cut off
            # midway has an unknown outcome and will not be resent.
            timeout=self._config.submit_timeout,
        )
        return await self._apply(asset, status, submitted=True, asked_at=asked_at)

    async def _poll(self, asset: AssetRow) -> Outcome | None:
        policy = self._policy(asset)
        deadline = schedule.deadline_seconds(policy, self._config.default_deadline)
        started = asset.submitted_at or asset.created_at
        if started is not None and schedule.age_seconds(started, utcnow()) >= deadline:
            waited = schedule.duration_text(deadline)
            # A task whose polls kept failing (its key refused, the provider down) says why.
            failing = asset.error_count and asset.error_message
            last = f"; the last poll: {asset.error_message}" if failing else ""
            return await self._fail(asset, f"timed out after {waited} waiting for the provider{last}")
        POLLS.labels(asset.model).inc()
        asked_at = monotonic()
        status = await self._polls.poll(
            provider_adapter_pb2.PollTaskRequest(
                asset_id=asset.id,
                model=asset.model,
                task_id=asset.external_task_id,
                task_handle_json=asset.task_handle_json,
                box_id=asset.box_id,
            ),
            linger=schedule.poll_linger(policy, callbacks=_CALLBACK_MARK in asset.task_handle_json),
        )
        return await self._apply(asset, status, submitted=False, asked_at=asked_at)

    # -- what the provider said: one state per method ------------------------------------------

    async def _apply(
        self, asset: AssetRow, status: provider_adapter_pb2.TaskStatus, *, submitted: bool, asked_at: float
    ) -> Outcome | None:
        """Records what the provider said of a task (asked at monotonic ``asked_at``) and what follows."""
        reported = _reported_changes(asset, status, submitted=submitted)
        state = status.state
        if state == provider_adapter_pb2.TASK_STATE_COMPLETED:
            return await self._on_completed(asset, status, reported, submitted=submitted)
        if state == provider_adapter_pb2.TASK_STATE_FAILED:
            return await self._on_failed(asset, status, reported)
        if state == provider_adapter_pb2.TASK_STATE_CANCELED:
            return await self._on_canceled(asset, reported)
        if submitted and not status.task_id and state == provider_adapter_pb2.TASK_STATE_PENDING:
            return await self._on_held_back(asset, status)
        # PENDING, PROCESSING, or anything unknown: still running.
        return await self._on_running(asset, status, reported, submitted=submitted, asked_at=asked_at)

    async def _on_completed(
        self,
        asset: AssetRow,
        status: provider_adapter_pb2.TaskStatus,
        reported: dict[str, object],
        *,
        submitted: bool,
    ) -> Outcome | None:
        """The provider is done: settle its cost, store its result (unless the adapter did) and
        complete the asset."""
        # Typed loosely: these are asset columns, passed on as keyword changes next to record()'s own.
        changes: dict[str, Any] = {**reported, **await self._settle(asset, status)}
        if not status.outputs:
            return await self._fail(asset, "the provider reported success but returned no result", **changes)
        if status.outputs[0].HasField("stored"):
            # The adapter already stored an inline or authenticated result itself.
            return await self._ingest.record(asset, status.outputs[0].stored, progress=1.0, **changes)
        finished = {**changes, "result_url": status.outputs[0].url, "progress": 1.0}
        if submitted:
            # The task id is not recorded yet: record it, with the step, before the copy.
            if not await self._ingest.start(asset, finished):
                return None
            return await self._ingest.resume(asset)
        return await self._ingest.copy_and_record(asset, finished)

    async def _on_failed(
        self, asset: AssetRow, status: provider_adapter_pb2.TaskStatus, reported: dict[str, object]
    ) -> Outcome | None:
        """The provider gave up on the task: the asset fails with its reason."""
        reason = status.error_message or f"the provider reported {status.raw_state or 'failure'}"
        if status.charges_failures:
            reported = {**reported, **await self._settle(asset, status)}
        return await self._fail(asset, reason, **reported)

    async def _on_canceled(self, asset: AssetRow, reported: dict[str, object]) -> Outcome | None:
        """The task was canceled at the provider: so is the asset."""
        return await self._end(asset, Status.CANCELED, "canceled at the provider", **reported)

    async def _on_held_back(self, asset: AssetRow, status: provider_adapter_pb2.TaskStatus) -> Outcome | None:
        """The adapter held the submission back at a provider limit; nothing was sent: ask again.
        Its place in the provider's queue is written when it moved (watchers see it on read)."""
        if status.HasField("key_disabled"):
            await self._events.key_disabled(status.key_disabled, asset_id=asset.id)
        if status.queue_position != asset.queue_position:
            if not await self._store.update_asset(asset, queue_position=status.queue_position):
                return None
        return Later(schedule.held_back_delay(status.poll_after_ms, uniform=random.uniform))

    async def _on_running(
        self,
        asset: AssetRow,
        status: provider_adapter_pb2.TaskStatus,
        reported: dict[str, object],
        *,
        submitted: bool,
        asked_at: float,
    ) -> Outcome | None:
        """The task is still running: write what watchers would see changed, and poll again later."""
        progress = min(max(status.progress, 0.0), 1.0)
        visible = asset.status != Status.PROCESSING or abs(progress - asset.progress) > 1e-6
        if submitted or visible or _differs(asset, reported):
            if not await self._store.update_asset(
                asset,
                status=Status.PROCESSING,
                step=Step.POLLING,
                progress=progress,
                message=f"submitted; provider task {status.task_id}" if submitted else "",
                **reported,
            ):
                return None
            if visible:
                await self._events.publish(asset)
        now = utcnow()
        age = schedule.age_seconds(asset.submitted_at, now) if asset.submitted_at is not None else 0.0
        policy = self._policy(asset)
        left = schedule.deadline_seconds(policy, self._config.default_deadline) - age
        delay = schedule.next_poll_delay(policy, age, status.poll_after_ms, left=left, uniform=random.uniform)
        if delay >= left:
            return Later(delay)  # the deadline comes first: the job runs at it, to end the generation
        elapsed = monotonic() - asked_at
        return Later(schedule.due_in(policy, delay, pull_pause=self._config.max_pull_pause, elapsed=elapsed))

    # -- errors and endings --------------------------------------------------------------------

    async def _on_rpc_error(self, asset: AssetRow, error: grpc.aio.AioRpcError) -> Outcome | None:
        details = error.details() or error.code().name
        if error.code() == grpc.StatusCode.ABORTED and asset.step in (Step.QUEUED, Step.SUBMITTING):
            # The adapter's ledger says another call is still submitting this attempt (a job
            # redelivered mid-submit). Not a failure: it resolves, SENT or "outcome unknown",
            # within the adapter's submit timeout, so wait without spending a retry.
            logger.info("submission in progress elsewhere; checking again", extra={"asset_id": asset.id})
            return Later(schedule.retry_delay(self._config.retry_base_seconds, 1, uniform=random.uniform))
        if error.code() in _TRANSIENT:
            return await self._retry_or_fail(asset, details)
        if reason_of(error) == _CALLBACK_AWAITED:
            return await self._await_callback(asset, details)
        if reason_of(error) == _OUTCOME_UNKNOWN:
            # The provider may have the task and bill it: the reservation stays for an operator,
            # who clears it by retrying or deleting the asset.
            return await self._close(asset, Status.FAILED, details, {"error_message": details}, release=False)
        return await self._fail(asset, details)

    async def _await_callback(self, asset: AssetRow, reason: str) -> Outcome | None:
        """The submission's outcome is unknown but it carried our callback URL: the asset stays in
        flight, so that the callback, if the provider has the task, adopts it rather than completing
        an asset already FAILED (two endings). The unknown outcome is its error until then."""
        # The adapter names it "outcome unknown at <provider>: <why>"; the history note keeps the head.
        unknown = reason.partition(":")[0]
        if not await self._store.update_asset(
            asset,
            status=Status.PROCESSING,
            step=Step.WAITING_CALLBACK,
            submitted_at=utcnow(),
            error_message=reason,
            message=f"{unknown}: waiting for its callback",
        ):
            return None
        await self._events.publish(asset)
        logger.warning("submission outcome unknown; waiting for its callback", extra={"asset_id": asset.id})
        return await self._callback_deadline(asset)

    async def _callback_deadline(self, asset: AssetRow) -> Outcome | None:
        """Waits for the callback until the deadline (the callback's job supersedes this one), then
        fails the asset "outcome unknown", its cost kept reserved for an operator."""
        deadline = schedule.deadline_seconds(self._policy(asset), self._config.default_deadline)
        left = schedule.time_left(asset.submitted_at or asset.created_at, deadline, utcnow())
        if left > 0:
            return Later(left)
        unknown = asset.error_message or "outcome unknown at the provider"
        reason = f"{unknown}; no callback came within {schedule.duration_text(deadline)}"
        return await self._close(asset, Status.FAILED, reason, {"error_message": reason}, release=False)

    async def _retry_or_fail(self, asset: AssetRow, reason: str) -> Outcome | None:
        """Tries the step again later, or fails the asset if it has tried long enough.

        Once the provider has the task (polling, copying its result) the work is paid for: a failing
        poll or copy is tried again, backing off to ``retry_max_seconds``, until the generation's
        deadline, however many tries that takes. Before (submitting, waiting for a parent) a step
        gets ``step_retries`` tries.
        """
        tries = asset.error_count + 1
        last_try = False
        if asset.step in (Step.POLLING, Step.INGESTING):
            deadline = schedule.deadline_seconds(self._policy(asset), self._config.default_deadline)
            left = schedule.time_left(asset.submitted_at or asset.created_at, deadline, utcnow())
            if left <= 0:
                waited = schedule.duration_text(deadline)
                gave_up = f"gave up at the deadline, {waited} after submission, after {tries} tries"
                return await self._fail(asset, f"{reason} ({gave_up})")
            delay = schedule.capped_retry_delay(
                self._config.retry_base_seconds,
                tries,
                cap=self._config.retry_max_seconds,
                left=left,
                uniform=random.uniform,
            )
            last_try = delay >= left  # the next try is the deadline's, which names this reason
        elif tries > self._config.step_retries:
            return await self._fail(asset, f"{reason} (gave up after {tries} tries)")
        else:
            delay = schedule.retry_delay(self._config.retry_base_seconds, tries, uniform=random.uniform)
        kept = {"error_message": reason} if last_try else {}
        if not await self._store.update_asset(asset, error_count=tries, **kept):
            return None
        logger.warning(
            "step failed, retrying in %.1fs: %s", delay, reason, extra={"asset_id": asset.id, "try": tries}
        )
        return Later(delay)

    async def _fail(self, asset: AssetRow, reason: str, **changes: object) -> Outcome | None:
        return await self._end(asset, Status.FAILED, reason, error_message=reason, **changes)

    async def _end(self, asset: AssetRow, status: Status, message: str, **changes: object) -> Outcome | None:
        return await self._close(asset, status, message, changes, release=True)

    async def _close(
        self, asset: AssetRow, status: Status, message: str, changes: dict[str, object], *, release: bool
    ) -> Outcome | None:
        """Ends the asset in ``status``; an attempt not completed releases its cost unless told not to."""
        if release and status is not Status.COMPLETED and "cost_json" not in changes:
            changes = {**changes, **await self._release(asset)}
        if not await self._store.update_asset(
            asset, status=status, step=Step.DONE, finished_at=utcnow(), message=message, **changes
        ):
            return None
        TRANSITIONS.labels(status.value).inc()
        logger.info("asset %s", status.lower(), extra={"asset_id": asset.id, "reason": message})
        await self._events.publish(asset)
        return Done()

    async def _project_of(self, box_id: str) -> str:
        """The project of a box (boxes never move), remembered: queues at a provider take projects in turn."""
        project = self._projects.get(box_id)
        if project is None:
            if len(self._projects) >= _PROJECTS_REMEMBERED:
                self._projects.clear()
            project = self._projects[box_id] = (await self._store.get_box(box_id)).project_id
        return project

    async def _settle(self, asset: AssetRow, status: provider_adapter_pb2.TaskStatus) -> dict[str, object]:
        """Charges the attempt what the provider reports it used (else its estimate): the ledger
        first, so a step redelivered before the asset is written charges it once; the asset's
        ``cost_json`` change to write with the step."""
        cost = AssetCost.parse(asset.cost_json)
        if cost is None or self._ledger is None:
            return {}
        amount = charge_of(cost, status.usage if status.HasField("usage") else None)
        await self._ledger.settle(asset.id, asset.attempt, amount)
        return {"cost_json": cost.settled(amount).text()}

    async def _release(self, asset: AssetRow) -> dict[str, object]:
        """Releases an attempt's unsettled cost; the asset shows it charged nothing."""
        cost = AssetCost.parse(asset.cost_json)
        if cost is None or self._ledger is None or cost.charged:
            return {}
        await self._ledger.release(asset.id, asset.attempt)
        return {"cost_json": cost.settled(Decimal(0)).text()}

    async def _parent_url(self, asset: AssetRow) -> str:
        if not asset.parent_asset_id:
            return ""
        parent = await self._store.find_asset(asset.parent_asset_id)
        if parent is None or not parent.object_key:
            return ""
        return await self._ingest.file_url(parent.object_key)

    @staticmethod
    def _policy(asset: AssetRow) -> provider_adapter_pb2.PollPolicy:
        return parse_poll_policy(asset.poll_policy_json)


def _no_callback(asset_id: str, attempt: int) -> str:
    return ""


def _reported_changes(
    asset: AssetRow, status: provider_adapter_pb2.TaskStatus, *, submitted: bool
) -> dict[str, object]:
    """The columns any answer of the provider writes, whatever the task's state."""
    reported: dict[str, object] = {
        "raw_status": status.raw_state[:200],
        "error_count": 0,
        "external_task_id": status.task_id or asset.external_task_id,
        "task_handle_json": status.task_handle_json or asset.task_handle_json,
    }
    if status.HasField("poll_policy"):
        reported["poll_policy_json"] = poll_policy_json(status.poll_policy)
    if submitted:
        reported["submitted_at"] = utcnow()
    if asset.queue_position:
        reported["queue_position"] = 0  # out of the provider's queue
    return reported


def _differs(asset: AssetRow, changes: dict[str, object]) -> bool:
    """Whether writing ``changes`` would change the stored asset."""
    return any(getattr(asset, key) != value for key, value in changes.items())
