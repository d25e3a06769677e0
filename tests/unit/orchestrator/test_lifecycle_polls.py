"""Polling in the state machine: batched per model, silent when nothing changed, errors per task,
and a finished task's result copied into storage."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import grpc
import pytest
from google.rpc import status_pb2

from assetgen.v1 import common_pb2, provider_adapter_pb2
from assetgen_orchestrator import ingest as ingest_module
from assetgen_orchestrator import lifecycle as lifecycle_module
from assetgen_orchestrator.convert import poll_policy_json
from assetgen_orchestrator.jobs import PULL_PAUSE, Done, Job, Later
from assetgen_orchestrator.lifecycle import Lifecycle, LifecycleConfig
from assetgen_orchestrator.models import AssetRow, BoxRow, Status, Step, utcnow
from assetgen_runtime.batching import Batcher

POLICY = provider_adapter_pb2.PollPolicy(initial_delay_ms=10_000, backoff=1.0, max_delay_ms=10_000)
CONFIG = LifecycleConfig(
    step_retries=3,
    retry_base_seconds=2.0,
    rpc_timeout=5.0,
    submit_timeout=10.0,
    ingest_timeout=10.0,
    default_deadline=3600.0,
    max_pull_pause=PULL_PAUSE,
)


class _Store:
    """The two calls the lifecycle's poll path makes, over a dict, counting the writes."""

    def __init__(self, assets: list[AssetRow]) -> None:
        self.rows = {asset.id: asset for asset in assets}
        self.writes: list[dict[str, Any]] = []
        self.queries: list[list[str]] = []
        # Like AssetStore: lookups made together are answered by one query.
        self._lookups: Batcher[str, AssetRow | None] = Batcher(self.find_assets)

    async def find_asset(self, asset_id: str) -> AssetRow | None:
        return await self._lookups.load(asset_id)

    async def find_assets(self, asset_ids: list[str]) -> list[AssetRow | None]:
        self.queries.append(asset_ids)
        return [copy.copy(self.rows[i]) if i in self.rows else None for i in asset_ids]

    async def get_box(self, box_id: str) -> BoxRow:
        return BoxRow(id=box_id, name="box")

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


class _Adapter:
    """PollTasks answering each task with what ``answers`` holds for its task id."""

    def __init__(self, answers: dict[str, provider_adapter_pb2.PollTaskResult]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []

    async def PollTasks(
        self, request: provider_adapter_pb2.PollTasksRequest, timeout: float
    ) -> provider_adapter_pb2.PollTasksResponse:
        self.calls.append([task.task_id for task in request.tasks])
        return provider_adapter_pb2.PollTasksResponse(
            results=[self.answers[t.task_id] for t in request.tasks]
        )


def _running(progress: float = 0.0, raw: str = "generating") -> provider_adapter_pb2.PollTaskResult:
    return provider_adapter_pb2.PollTaskResult(
        status=provider_adapter_pb2.TaskStatus(
            state=provider_adapter_pb2.TASK_STATE_PROCESSING,
            raw_state=raw,
            progress=progress,
            poll_policy=POLICY,
        )
    )


def _polling_asset(number: int, model: str = "img") -> AssetRow:
    return AssetRow(
        id=f"ast_{number}",
        box_id="box_1",
        status=Status.PROCESSING,
        step=Step.POLLING,
        source_type="GENERATED",
        model=model,
        external_task_id=f"task_{number}",
        raw_status="generating",
        poll_policy_json=poll_policy_json(POLICY),
        config_json=json.dumps({}),
        submitted_at=utcnow(),
        version=3,
    )


def _lifecycle(store: _Store, adapter: _Adapter, events: _Events) -> Lifecycle:
    return Lifecycle(store, adapter, None, events, CONFIG)  # type: ignore[arg-type]


async def test_due_polls_of_one_model_share_one_call_and_unchanged_ones_write_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A clock that stands still: the time the batch takes (its linger) is not taken off the delays.
    monkeypatch.setattr(lifecycle_module, "monotonic", lambda: 1000.0)
    assets = [_polling_asset(n) for n in range(20)]
    store, events = _Store(assets), _Events()
    adapter = _Adapter({asset.external_task_id: _running() for asset in assets})
    lifecycle = _lifecycle(store, adapter, events)

    outcomes = await asyncio.gather(*(lifecycle.handle(Job(asset.id, 1)) for asset in assets))

    assert len(store.queries) == 1 and sorted(store.queries[0]) == sorted(a.id for a in assets)
    assert len(adapter.calls) == 1 and sorted(adapter.calls[0]) == sorted(a.external_task_id for a in assets)
    assert store.writes == [] and events.published == []
    # Due a little early (jitter up to 10 %, the copy's 3 %, the pull pause, the batch's 0.1 s
    # linger), never later than its interval.
    earliest, latest = 0.97 * 9.0 - PULL_PAUSE - 0.1, 0.97 * 10.0 - PULL_PAUSE - 0.1
    assert all(isinstance(o, Later) and earliest - 1e-9 <= o.delay <= latest + 1e-9 for o in outcomes)


async def test_polls_that_trickle_in_within_the_linger_share_one_call() -> None:
    assets = [_polling_asset(n) for n in range(5)]
    store, events = _Store(assets), _Events()
    adapter = _Adapter({asset.external_task_id: _running() for asset in assets})
    lifecycle = _lifecycle(store, adapter, events)

    async def arriving(asset: AssetRow, after: float) -> object:
        await asyncio.sleep(after)  # the jobs of consecutive JetStream fetches, a few ms apart
        return await lifecycle.handle(Job(asset.id, 1))

    await asyncio.gather(*(arriving(asset, 0.005 * n) for n, asset in enumerate(assets)))

    assert len(adapter.calls) == 1 and len(adapter.calls[0]) == 5


async def _calls_for_polls_arriving_apart(interval_ms: int, apart: float) -> int:
    policy = provider_adapter_pb2.PollPolicy(
        initial_delay_ms=interval_ms, backoff=1.0, max_delay_ms=interval_ms
    )
    assets = [_polling_asset(n) for n in range(4)]
    for asset in assets:
        asset.poll_policy_json = poll_policy_json(policy)
    answer = _running()
    answer.status.poll_policy.CopyFrom(policy)
    adapter = _Adapter({asset.external_task_id: answer for asset in assets})
    lifecycle = _lifecycle(_Store(assets), adapter, _Events())

    async def arriving(asset: AssetRow, after: float) -> object:
        await asyncio.sleep(after)
        return await lifecycle.handle(Job(asset.id, 1))

    outcomes = await asyncio.gather(*(arriving(asset, apart * n) for n, asset in enumerate(assets)))
    # However long a poll waited for its batch, its message fell due that much earlier.
    assert all(isinstance(o, Later) and o.delay <= interval_ms / 1000 - 0.1 for o in outcomes)
    return len(adapter.calls)


async def test_polls_on_a_long_interval_wait_longer_for_each_other() -> None:
    assert await _calls_for_polls_arriving_apart(60_000, apart=0.1) == 1
    assert await _calls_for_polls_arriving_apart(2_000, apart=0.1) > 1


async def test_the_early_due_time_never_undercuts_the_minimum_interval() -> None:
    policy = provider_adapter_pb2.PollPolicy(
        initial_delay_ms=1000, backoff=1.0, max_delay_ms=1000, min_interval_ms=1000
    )
    asset = _polling_asset(1)
    asset.poll_policy_json = poll_policy_json(policy)
    answer = _running()
    answer.status.poll_policy.CopyFrom(policy)
    lifecycle = _lifecycle(_Store([asset]), _Adapter({"task_1": answer}), _Events())

    outcome = await lifecycle.handle(Job(asset.id, 1))

    assert isinstance(outcome, Later) and outcome.delay == 1.0


async def test_the_time_kept_for_copying_a_result_is_at_most_a_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle_module, "monotonic", lambda: 1000.0)
    monkeypatch.setattr(lifecycle_module.random, "uniform", lambda low, high: high)  # no jitter
    policy = provider_adapter_pb2.PollPolicy(initial_delay_ms=100_000, backoff=1.0, max_delay_ms=100_000)
    asset = _polling_asset(1)
    asset.poll_policy_json = poll_policy_json(policy)
    answer = _running()
    answer.status.poll_policy.CopyFrom(policy)
    lifecycle = _lifecycle(_Store([asset]), _Adapter({"task_1": answer}), _Events())

    outcome = await lifecycle.handle(Job(asset.id, 1))

    # 100 s, less the pull pause, the longest linger (0.5 s) and one second (not 3 s) for the copy.
    assert isinstance(outcome, Later)
    assert outcome.delay == pytest.approx(100.0 - PULL_PAUSE - 0.5 - 1.0)


async def test_the_next_poll_falls_due_one_interval_after_this_one_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(lifecycle_module, "monotonic", lambda: clock[0])
    monkeypatch.setattr(lifecycle_module.random, "uniform", lambda low, high: high)  # no jitter

    class _SlowAdapter(_Adapter):
        async def PollTasks(
            self, request: provider_adapter_pb2.PollTasksRequest, timeout: float
        ) -> provider_adapter_pb2.PollTasksResponse:
            clock[0] += 2.0  # a slow provider, or a busy adapter, took two seconds to answer
            return await super().PollTasks(request, timeout)

    asset = _polling_asset(1)
    lifecycle = _lifecycle(_Store([asset]), _SlowAdapter({"task_1": _running()}), _Events())

    outcome = await lifecycle.handle(Job(asset.id, 1))

    # The 10 s interval, less the 2 s the poll took and the early due time (pull pause, 1 % linger,
    # 3 % kept for copying a result).
    assert isinstance(outcome, Later)
    assert outcome.delay == pytest.approx(10.0 - 2.0 - PULL_PAUSE - 0.1 - 0.3)


async def test_a_poll_that_moves_progress_writes_and_tells_watchers() -> None:
    asset = _polling_asset(1)
    store, events = _Store([asset]), _Events()
    lifecycle = _lifecycle(store, _Adapter({"task_1": _running(progress=0.5)}), events)

    assert isinstance(await lifecycle.handle(Job(asset.id, 1)), Later)

    assert store.rows[asset.id].progress == 0.5 and store.rows[asset.id].version == 4
    assert events.published == [asset.id]


async def test_a_new_raw_status_is_written_without_an_event() -> None:
    asset = _polling_asset(1)
    store, events = _Store([asset]), _Events()
    lifecycle = _lifecycle(store, _Adapter({"task_1": _running(raw="queued")}), events)

    await lifecycle.handle(Job(asset.id, 1))

    assert store.rows[asset.id].raw_status == "queued" and events.published == []


async def test_one_tasks_error_in_a_batch_retries_only_that_asset() -> None:
    assets = [_polling_asset(n) for n in range(3)]
    store, events = _Store(assets), _Events()
    unavailable = provider_adapter_pb2.PollTaskResult(
        error=status_pb2.Status(code=grpc.StatusCode.UNAVAILABLE.value[0], message="provider unreachable")
    )
    adapter = _Adapter({"task_0": _running(), "task_1": unavailable, "task_2": _running()})
    lifecycle = _lifecycle(store, adapter, events)

    outcomes = await asyncio.gather(*(lifecycle.handle(Job(asset.id, 1)) for asset in assets))

    assert len(adapter.calls) == 1
    assert [store.rows[f"ast_{n}"].error_count for n in range(3)] == [0, 1, 0]
    assert all(isinstance(o, Later) for o in outcomes)


async def test_a_final_error_in_a_batch_fails_only_that_asset() -> None:
    assets = [_polling_asset(n) for n in range(2)]
    store, events = _Store(assets), _Events()
    missing = provider_adapter_pb2.PollTaskResult(
        error=status_pb2.Status(code=grpc.StatusCode.NOT_FOUND.value[0], message="model 'img' not found")
    )
    lifecycle = _lifecycle(store, _Adapter({"task_0": missing, "task_1": _running()}), events)

    await asyncio.gather(*(lifecycle.handle(Job(asset.id, 1)) for asset in assets))

    assert store.rows["ast_0"].status == Status.FAILED
    assert store.rows["ast_0"].error_message == "model 'img' not found"
    assert store.rows["ast_1"].status == Status.PROCESSING


async def test_each_model_gets_its_own_batch() -> None:
    assets = [_polling_asset(0, model="img"), _polling_asset(1, model="vid"), _polling_asset(2, model="img")]
    store, events = _Store(assets), _Events()
    adapter = _Adapter({asset.external_task_id: _running() for asset in assets})
    lifecycle = _lifecycle(store, adapter, events)

    await asyncio.gather(*(lifecycle.handle(Job(asset.id, 1)) for asset in assets))

    assert sorted(sorted(call) for call in adapter.calls) == [["task_0", "task_2"], ["task_1"]]


class _SubmittingElsewhere:
    """An adapter whose ledger says another call is still submitting the attempt."""

    async def SubmitTask(self, request: object, timeout: float) -> None:
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.ABORTED,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details="submission of asset ast_1 attempt 1 is in progress; retry",
        )


async def test_a_submission_in_progress_elsewhere_is_awaited_without_spending_a_retry() -> None:
    asset = AssetRow(
        id="ast_1",
        box_id="box_1",
        status=Status.PENDING,
        step=Step.QUEUED,
        source_type="GENERATED",
        model="img",
    )
    store, events = _Store([asset]), _Events()
    lifecycle = Lifecycle(store, _SubmittingElsewhere(), None, events, CONFIG)  # type: ignore[arg-type]

    outcome = await lifecycle.handle(Job(asset.id, 1))

    assert isinstance(outcome, Later) and 1.5 <= outcome.delay <= 2.5
    assert store.writes == [] and store.rows[asset.id].status == Status.PENDING


def _finished(url: str = "https://provider.test/result.png") -> provider_adapter_pb2.PollTaskResult:
    return provider_adapter_pb2.PollTaskResult(
        status=provider_adapter_pb2.TaskStatus(
            state=provider_adapter_pb2.TASK_STATE_COMPLETED,
            raw_state="success",
            outputs=[provider_adapter_pb2.ResultOutput(url=url)],
            poll_policy=POLICY,
        )
    )


class _Storage:
    """Ingest answering once ``release`` is set (at once by default); records calls and cancellations."""

    def __init__(self, *, held: bool = False) -> None:
        self.release = asyncio.Event()
        if not held:
            self.release.set()
        self.copied: list[str] = []
        self.cancelled = 0
        self.deleted: list[str] = []

    async def Delete(self, request: Any, timeout: float) -> None:
        self.deleted.append(request.key)

    async def Ingest(self, request: Any, timeout: float) -> common_pb2.StoredObject:
        self.copied.append(request.url)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return common_pb2.StoredObject(
            key=f"{request.box_id}/{request.asset_id}.png",
            content_type="image/png",
            size_bytes=3,
            url="https://s3.test/result.png",
        )


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_a_quick_copy_completes_the_asset_with_one_write() -> None:
    asset = _polling_asset(1)
    store, events, storage = _Store([asset]), _Events(), _Storage()
    lifecycle = Lifecycle(store, _Adapter({"task_1": _finished()}), storage, events, CONFIG)  # type: ignore[arg-type]

    assert isinstance(await lifecycle.handle(Job(asset.id, 1)), Done)

    assert storage.copied == ["https://provider.test/result.png"]
    assert len(store.writes) == 1 and store.writes[0]["status"] == Status.COMPLETED
    row = store.rows[asset.id]
    assert row.result_url == "https://provider.test/result.png" and row.raw_status == "success"
    assert row.object_key == "box_1/ast_1.png" and row.progress == 1.0
    assert events.published == [asset.id]


async def test_a_long_copy_shows_the_step_ingesting_while_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "QUIET_INGEST", 0.01)
    asset = _polling_asset(1)
    store, events, storage = _Store([asset]), _Events(), _Storage(held=True)
    lifecycle = Lifecycle(store, _Adapter({"task_1": _finished()}), storage, events, CONFIG)  # type: ignore[arg-type]

    handling = asyncio.create_task(lifecycle.handle(Job(asset.id, 1)))
    await _until(lambda: store.rows[asset.id].step == Step.INGESTING)
    assert store.rows[asset.id].status == Status.PROCESSING and events.published == [asset.id]
    assert store.rows[asset.id].result_url == "https://provider.test/result.png"
    storage.release.set()

    assert isinstance(await handling, Done)
    assert store.rows[asset.id].status == Status.COMPLETED and len(store.writes) == 2
    assert events.published == [asset.id, asset.id]


async def test_a_long_copy_of_an_asset_moved_meanwhile_is_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest_module, "QUIET_INGEST", 0.01)
    asset = _polling_asset(1)
    store, storage = _Store([asset]), _Storage(held=True)
    lifecycle = Lifecycle(store, _Adapter({"task_1": _finished()}), storage, _Events(), CONFIG)  # type: ignore[arg-type]

    handling = asyncio.create_task(lifecycle.handle(Job(asset.id, 1)))
    await _until(lambda: storage.copied)
    canceled = copy.copy(store.rows[asset.id])  # cancelled on request while the copy runs
    canceled.status, canceled.step, canceled.version = Status.CANCELED, Step.DONE, asset.version + 1
    store.rows[asset.id] = canceled

    assert isinstance(await handling, Done)
    await _until(lambda: storage.cancelled == 1)
    assert store.rows[asset.id].status == Status.CANCELED and store.writes == []


class _StoreLosingTheIngestingWrite(_Store):
    """A store where someone else moves the asset on just as the copy completes."""

    def __init__(self, assets: list[AssetRow], storage: _Storage) -> None:
        super().__init__(assets)
        self.storage = storage

    async def update_asset(self, asset: AssetRow, *, message: str = "", **changes: Any) -> bool:
        if changes.get("step") == Step.INGESTING:
            self.storage.release.set()
            await _until(lambda: self.storage.copied and self.storage.release.is_set())
            for _ in range(5):
                await asyncio.sleep(0)  # the copy's answer arrives
            return False
        return await super().update_asset(asset, message=message, **changes)


async def test_a_copy_completed_for_an_asset_moved_meanwhile_is_deleted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ingest_module, "QUIET_INGEST", 0.01)
    asset = _polling_asset(1)
    storage = _Storage(held=True)
    store = _StoreLosingTheIngestingWrite([asset], storage)
    lifecycle = Lifecycle(store, _Adapter({"task_1": _finished()}), storage, _Events(), CONFIG)  # type: ignore[arg-type]

    # The step lost the race: it looks again (and finds the asset's new state) before saying what next.
    await lifecycle.handle(Job(asset.id, 1))

    assert storage.deleted == ["box_1/ast_1.png"] and storage.cancelled == 0
