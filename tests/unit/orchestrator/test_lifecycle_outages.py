"""Paid work is followed to its deadline: polls and copies that fail retry with capped backoff until
the generation's deadline (not a number of tries), a failed copy is retried as a copy, provider
hints and parent waits are bounded by the deadline, and an outdated job stops."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from assetgen.v1 import common_pb2, provider_adapter_pb2, storage_pb2
from assetgen_orchestrator import lifecycle as lifecycle_module
from assetgen_orchestrator.convert import poll_policy_json
from assetgen_orchestrator.jobs import PULL_PAUSE, Done, Job, JobRunner, Later, Outcome
from assetgen_orchestrator.lifecycle import Lifecycle, LifecycleConfig
from assetgen_orchestrator.models import AssetRow, Status, Step

POLICY = provider_adapter_pb2.PollPolicy(
    initial_delay_ms=10_000, backoff=1.0, max_delay_ms=10_000, deadline_ms=3_600_000
)
CONFIG = LifecycleConfig(
    step_retries=5,
    retry_base_seconds=2.0,
    rpc_timeout=5.0,
    submit_timeout=10.0,
    ingest_timeout=10.0,
    default_deadline=3600.0,
    max_pull_pause=PULL_PAUSE,
    retry_max_seconds=60.0,
)
START = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


class _Store:
    """The asset calls the lifecycle makes, over a dict, recording the writes."""

    def __init__(self, assets: list[AssetRow]) -> None:
        self.rows = {asset.id: asset for asset in assets}
        self.writes: list[dict[str, Any]] = []

    async def find_asset(self, asset_id: str) -> AssetRow | None:
        row = self.rows.get(asset_id)
        return copy.copy(row) if row is not None else None

    async def update_asset(self, asset: AssetRow, *, message: str = "", **changes: Any) -> bool:
        if self.rows[asset.id].version != asset.version:
            return False
        changes["version"] = asset.version + 1
        for key, value in changes.items():
            setattr(asset, key, value)
        self.rows[asset.id] = copy.copy(asset)
        self.writes.append(changes)
        return True


class _Events:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, asset: AssetRow, *, file_url: str = "") -> None:
        self.published.append(asset.id)


class _Clock:
    """The lifecycle's wall clock, moved on by the tests."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    clock = _Clock()
    monkeypatch.setattr(lifecycle_module, "utcnow", clock)
    return clock


def _unavailable(details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details
    )


def _status(state: int, **fields: Any) -> provider_adapter_pb2.TaskStatus:
    return provider_adapter_pb2.TaskStatus(state=state, poll_policy=POLICY, **fields)  # type: ignore[arg-type]


def _finished() -> provider_adapter_pb2.TaskStatus:
    return _status(
        provider_adapter_pb2.TASK_STATE_COMPLETED,
        raw_state="success",
        outputs=[provider_adapter_pb2.ResultOutput(url="https://provider.test/result.png")],
    )


class _Adapter:
    """PollTasks failing (UNAVAILABLE) while ``down`` says so, else answering ``answer``; no SubmitTask."""

    def __init__(self, answer: provider_adapter_pb2.TaskStatus, down: Any) -> None:
        self.answer = answer
        self.down = down
        self.polls = 0
        self.failed = 0

    async def PollTasks(
        self, request: provider_adapter_pb2.PollTasksRequest, timeout: float
    ) -> provider_adapter_pb2.PollTasksResponse:
        self.polls += 1
        if self.down():
            self.failed += 1
            raise _unavailable("provider-adapter unreachable")
        return provider_adapter_pb2.PollTasksResponse(
            results=[provider_adapter_pb2.PollTaskResult(status=self.answer) for _ in request.tasks]
        )


class _Storage:
    """Ingest failing (UNAVAILABLE: S3 down) ``failures`` times, then storing the result."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.copies: list[str] = []
        self.pruned: list[tuple[str, str]] = []

    async def Ingest(self, request: Any, timeout: float) -> common_pb2.StoredObject:
        self.copies.append(request.url)
        if len(self.copies) <= self.failures:
            raise _unavailable("S3 unreachable")
        return common_pb2.StoredObject(key=f"{request.box_id}/{request.asset_id}.png", size_bytes=3, url="u")

    async def Delete(self, request: Any, timeout: float) -> None:
        raise AssertionError("nothing is deleted")

    async def Prune(self, request: Any, timeout: float) -> storage_pb2.PruneResponse:
        self.pruned.append((request.asset_id, request.keep_key))
        return storage_pb2.PruneResponse()


def _polling(clock: _Clock, *, submitted_ago: float = 0.0) -> AssetRow:
    return AssetRow(
        id="ast_1",
        box_id="box_1",
        status=Status.PROCESSING,
        step=Step.POLLING,
        source_type="GENERATED",
        model="img",
        external_task_id="task_1",
        poll_policy_json=poll_policy_json(POLICY),
        submitted_at=clock.now - dt.timedelta(seconds=submitted_ago),
        version=3,
    )


async def _drive(
    lifecycle: Lifecycle, clock: _Clock, job: Job, *, steps: int = 500
) -> tuple[Outcome, list[float]]:
    """Runs the job as JetStream would, each ``Later`` after its delay on the clock, until ``Done``."""
    delays: list[float] = []
    for _ in range(steps):
        outcome = await lifecycle.handle(job)
        if isinstance(outcome, Done):
            return outcome, delays
        assert isinstance(outcome, Later)
        delays.append(outcome.delay)
        clock.advance(outcome.delay)
    raise AssertionError("the job never finished")


async def test_a_ten_minute_provider_outage_while_polling_is_waited_out(clock: _Clock) -> None:
    outage_ends = START + dt.timedelta(minutes=10)
    asset = _polling(clock)
    store, events, storage = _Store([asset]), _Events(), _Storage()
    adapter = _Adapter(_finished(), down=lambda: clock.now < outage_ends)
    lifecycle = Lifecycle(store, adapter, storage, events, CONFIG)  # type: ignore[arg-type]

    _, delays = await _drive(lifecycle, clock, Job(asset.id, 1))

    row = store.rows[asset.id]
    assert row.status == Status.COMPLETED and row.object_key == "box_1/ast_1.png"
    # Far more failed polls than the submit budget's five tries, each wait capped at a minute.
    assert adapter.failed > CONFIG.step_retries and max(delays) <= CONFIG.retry_max_seconds
    assert max(delays) > 30.0  # it backed off to the cap rather than hammering the adapter
    assert storage.copies == ["https://provider.test/result.png"]
    assert row.error_count == 0  # a good answer clears the tries


async def test_an_outage_past_the_deadline_fails_the_asset_at_the_deadline(clock: _Clock) -> None:
    asset = _polling(clock, submitted_ago=3600.0 - 300.0)  # five minutes left
    store = _Store([asset])
    adapter = _Adapter(_finished(), down=lambda: True)
    lifecycle = Lifecycle(store, adapter, _Storage(), _Events(), CONFIG)  # type: ignore[arg-type]

    await _drive(lifecycle, clock, Job(asset.id, 1))

    row = store.rows[asset.id]
    assert row.status == Status.FAILED
    assert "waiting for the provider" in row.error_message or "gave up at the deadline" in row.error_message
    # It went on until the deadline, not a second later.
    assert clock.now - asset.submitted_at == dt.timedelta(seconds=3600)  # type: ignore[operator]
    assert adapter.failed > CONFIG.step_retries


async def test_a_copy_that_fails_while_s3_is_down_is_retried_as_a_copy(clock: _Clock) -> None:
    asset = _polling(clock)
    store, events, storage = _Store([asset]), _Events(), _Storage(failures=8)
    adapter = _Adapter(_finished(), down=lambda: False)
    lifecycle = Lifecycle(store, adapter, storage, events, CONFIG)  # type: ignore[arg-type]

    first = await lifecycle.handle(Job(asset.id, 1))

    # The provider's result reference is kept: the asset waits in INGESTING, not POLLING.
    row = store.rows[asset.id]
    assert isinstance(first, Later)
    assert row.step == Step.INGESTING and row.result_url == "https://provider.test/result.png"
    assert row.error_count == 1
    clock.advance(first.delay)
    await _drive(lifecycle, clock, Job(asset.id, 1))

    assert store.rows[asset.id].status == Status.COMPLETED
    assert adapter.polls == 1  # never polled (let alone submitted) again: only copied again
    assert storage.copies == ["https://provider.test/result.png"] * 9
    # A failed copy may have been stored all the same (its answer lost): the others go, once done.
    assert storage.pruned == [("ast_1", "box_1/ast_1.png")]


class _Delivery:
    """The job as JetStream delivers it for the ``delivered``-th time."""

    def __init__(self, delivered: int) -> None:
        self.data = b'{"asset_id": "ast_1", "attempt": 1}'
        self.subject = "assetgen.jobs.step.ast_1"
        self.metadata = SimpleNamespace(sequence=SimpleNamespace(stream=1), num_delivered=delivered)
        self.acked = False

    async def ack(self) -> None:
        self.acked = True


@pytest.mark.parametrize(("delivered", "pruned"), [(1, []), (4, [("ast_1", "box_1/ast_1.png")])])
async def test_a_completion_after_a_step_that_ran_elsewhere_prunes_unrecorded_copies(
    clock: _Clock, delivered: int, pruned: list[tuple[str, str]]
) -> None:
    """A job back after its process died mid-copy (stored, not recorded) leaves one object, not two."""
    asset = _polling(clock)
    store, storage = _Store([asset]), _Storage()
    lifecycle = Lifecycle(store, _Adapter(_finished(), down=lambda: False), storage, _Events(), CONFIG)  # type: ignore[arg-type]
    runner = JobRunner(None, lifecycle.handle, _no_poison, concurrency=1, ack_wait=30.0, max_ack_pending=1)  # type: ignore[arg-type]
    message = _Delivery(delivered)

    await asyncio.create_task(runner._run(message))  # type: ignore[arg-type]

    assert message.acked and store.rows[asset.id].status == Status.COMPLETED
    assert storage.pruned == pruned  # only a step that may repeat an earlier one pays for the prune


async def _no_poison(data: bytes, reason: str) -> None:
    raise AssertionError(reason)


async def test_a_provider_hint_of_hours_is_capped_at_the_steady_interval(clock: _Clock) -> None:
    asset = _polling(clock)
    hint = _status(provider_adapter_pb2.TASK_STATE_PROCESSING, raw_state="queued", poll_after_ms=36_000_000)
    lifecycle = Lifecycle(_Store([asset]), _Adapter(hint, down=lambda: False), None, _Events(), CONFIG)  # type: ignore[arg-type]

    outcome = await lifecycle.handle(Job(asset.id, 1))

    assert isinstance(outcome, Later) and outcome.delay <= 10.0


async def test_no_poll_is_scheduled_past_the_deadline(clock: _Clock) -> None:
    asset = _polling(clock, submitted_ago=3600.0 - 4.0)  # four seconds left
    hint = _status(provider_adapter_pb2.TASK_STATE_PROCESSING, raw_state="queued", poll_after_ms=36_000_000)
    store = _Store([asset])
    lifecycle = Lifecycle(store, _Adapter(hint, down=lambda: False), None, _Events(), CONFIG)  # type: ignore[arg-type]

    _, delays = await _drive(lifecycle, clock, Job(asset.id, 1))

    assert delays and delays[0] <= 4.0 and sum(delays) <= 4.0 + 1e-6
    assert store.rows[asset.id].status == Status.FAILED
    assert store.rows[asset.id].error_message == "timed out after 1h waiting for the provider"


def _child(clock: _Clock, *, waiting_for: float) -> tuple[AssetRow, AssetRow]:
    parent = AssetRow(
        id="ast_parent", box_id="box_1", status=Status.PROCESSING, step=Step.POLLING, source_type="GENERATED"
    )
    child = AssetRow(
        id="ast_child",
        box_id="box_1",
        status=Status.PENDING,
        step=Step.WAITING_PARENT,
        source_type="IMG2VID",
        parent_asset_id=parent.id,
        poll_policy_json=poll_policy_json(POLICY),
        attempt_started_at=clock.now - dt.timedelta(seconds=waiting_for),
    )
    return parent, child


async def test_a_child_waits_for_its_parent_until_its_deadline_and_then_fails(clock: _Clock) -> None:
    parent, child = _child(clock, waiting_for=3600.0 - 3.0)
    store, events = _Store([parent, child]), _Events()
    lifecycle = Lifecycle(store, None, None, events, CONFIG)  # type: ignore[arg-type]

    _, delays = await _drive(lifecycle, clock, Job(child.id, 1))

    row = store.rows[child.id]
    assert row.status == Status.FAILED and row.step == Step.DONE
    assert row.error_message == "parent asset ast_parent did not finish within 1h; gave up waiting for it"
    assert sum(delays) == pytest.approx(3.0)  # checked on until the deadline, not a moment longer
    assert events.published == [child.id]
    assert store.rows[parent.id].status == Status.PROCESSING


async def test_a_job_older_than_the_assets_generation_stops_without_a_step(clock: _Clock) -> None:
    asset = _polling(clock)
    asset.job_generation = 2
    store = _Store([asset])
    adapter = _Adapter(_finished(), down=lambda: False)
    lifecycle = Lifecycle(store, adapter, _Storage(), _Events(), CONFIG)  # type: ignore[arg-type]

    assert isinstance(await lifecycle.handle(Job(asset.id, 1, generation=1)), Done)

    assert adapter.polls == 0 and store.writes == []
