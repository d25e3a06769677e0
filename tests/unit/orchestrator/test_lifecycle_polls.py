"""Polling in the state machine: batched per model, silent when nothing changed, errors per task."""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import grpc
from google.rpc import status_pb2

from assetgen.v1 import provider_adapter_pb2
from assetgen_orchestrator.convert import poll_policy_json
from assetgen_orchestrator.jobs import Job, Later
from assetgen_orchestrator.lifecycle import Lifecycle, LifecycleConfig
from assetgen_orchestrator.models import Asset, Status, Step, utcnow

POLICY = provider_adapter_pb2.PollPolicy(initial_delay_ms=10_000, backoff=1.0, max_delay_ms=10_000)
CONFIG = LifecycleConfig(
    step_retries=3,
    retry_base_seconds=2.0,
    rpc_timeout=5.0,
    submit_timeout=10.0,
    ingest_timeout=10.0,
    default_deadline=3600.0,
)


class _Store:
    """The two calls the lifecycle's poll path makes, over a dict, counting the writes."""

    def __init__(self, assets: list[Asset]) -> None:
        self.rows = {asset.id: asset for asset in assets}
        self.writes: list[dict[str, Any]] = []
        self.queries: list[list[str]] = []

    async def find_asset(self, asset_id: str) -> Asset | None:
        row = self.rows.get(asset_id)
        return copy.copy(row) if row is not None else None

    async def find_assets(self, asset_ids: list[str]) -> list[Asset | None]:
        self.queries.append(asset_ids)
        return [await self.find_asset(asset_id) for asset_id in asset_ids]

    async def update_asset(self, asset: Asset, *, message: str = "", **changes: Any) -> bool:
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

    async def publish(self, asset: Asset, *, file_url: str = "") -> None:
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


def _polling_asset(number: int, model: str = "img") -> Asset:
    return Asset.new(
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


async def test_due_polls_of_one_model_share_one_call_and_unchanged_ones_write_nothing() -> None:
    assets = [_polling_asset(n) for n in range(20)]
    store, events = _Store(assets), _Events()
    adapter = _Adapter({asset.external_task_id: _running() for asset in assets})
    lifecycle = _lifecycle(store, adapter, events)

    outcomes = await asyncio.gather(*(lifecycle.handle(Job(asset.id, 1)) for asset in assets))

    assert len(store.queries) == 1 and sorted(store.queries[0]) == sorted(a.id for a in assets)
    assert len(adapter.calls) == 1 and sorted(adapter.calls[0]) == sorted(a.external_task_id for a in assets)
    assert store.writes == [] and events.published == []
    # Due a little early, so that the batching waits never make a poll later than its interval.
    assert all(isinstance(o, Later) and 8.8 <= o.delay <= 9.9 for o in outcomes)


async def test_polls_that_trickle_in_within_the_linger_share_one_query_and_one_call() -> None:
    assets = [_polling_asset(n) for n in range(5)]
    store, events = _Store(assets), _Events()
    adapter = _Adapter({asset.external_task_id: _running() for asset in assets})
    lifecycle = _lifecycle(store, adapter, events)

    async def arriving(asset: Asset, after: float) -> object:
        await asyncio.sleep(after)  # the jobs of consecutive JetStream fetches, a few ms apart
        return await lifecycle.handle(Job(asset.id, 1))

    await asyncio.gather(*(arriving(asset, 0.005 * n) for n, asset in enumerate(assets)))

    assert len(store.queries) == 1 and len(adapter.calls) == 1


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

    async def arriving(asset: Asset, after: float) -> object:
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
    asset = Asset.new(
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
