"""The cost ledger on real SQLite and PostgreSQL, driven by the real state machine: an attempt is
estimated, reserved at submit, then charged or released exactly once, however often its steps are
redelivered, even when the process dies between the ledger's write and the asset's; budgets count
what is held and refuse what would pass them."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from assetgen.v1 import common_pb2, provider_adapter_pb2
from assetgen_orchestrator.cost_ledger import CostLedger, UsageGroup, UsageQuery
from assetgen_orchestrator.costs import AssetCost
from assetgen_orchestrator.jobs import PULL_PAUSE, Done, Job
from assetgen_orchestrator.lifecycle import Lifecycle, LifecycleConfig
from assetgen_orchestrator.main import MIGRATIONS
from assetgen_orchestrator.models import AssetRow, Status, Step, utcnow
from assetgen_orchestrator.store import AssetStore
from assetgen_runtime.database import create_engine, migrate
from assetgen_runtime.errors import REASON_METADATA_KEY, BudgetExceeded, InvalidArgument
from assetgen_runtime.ids import new_id

CONFIG = LifecycleConfig(
    step_retries=3,
    retry_base_seconds=1.0,
    rpc_timeout=5.0,
    submit_timeout=5.0,
    ingest_timeout=5.0,
    default_deadline=3600.0,
    max_pull_pause=PULL_PAUSE,
)
COST = AssetCost(currency="USD", estimated="0.10", unit_price="0.10", per="request")


class Crash(BaseException):
    """The process dies here (nothing catches a BaseException on the way out)."""


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_orchestrator")
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


class _Events:
    async def publish(self, asset: AssetRow, *, file_url: str = "") -> None:
        pass


class _Adapter:
    """Submits as task_1, then answers every poll with ``final``."""

    def __init__(self, final: provider_adapter_pb2.TaskStatus, submit_error: Exception | None = None) -> None:
        self.final = final
        self.submit_error = submit_error
        self.submits = 0

    async def SubmitTask(self, request: Any, timeout: float) -> provider_adapter_pb2.TaskStatus:
        self.submits += 1
        if self.submit_error is not None:
            raise self.submit_error
        return provider_adapter_pb2.TaskStatus(
            state=provider_adapter_pb2.TASK_STATE_PROCESSING, task_id="task_1", raw_state="queued"
        )

    async def PollTasks(self, request: Any, timeout: float) -> provider_adapter_pb2.PollTasksResponse:
        return provider_adapter_pb2.PollTasksResponse(
            results=[provider_adapter_pb2.PollTaskResult(status=self.final) for _ in request.tasks]
        )


class _CrashingStore(AssetStore):
    """Dies on the first write that would end the asset, after whatever came before it (the ledger)."""

    crashed = False

    async def update_asset(self, asset: AssetRow, *, message: str = "", **changes: Any) -> bool:
        if not self.crashed and Status(changes.get("status", asset.status)).terminal:
            self.crashed = True
            raise Crash()
        return await super().update_asset(asset, message=message, **changes)


def _completed(usage: str = "") -> provider_adapter_pb2.TaskStatus:
    stored = common_pb2.StoredObject(
        key="boxes/b/a/x.png", content_type="image/png", size_bytes=3, sha256="ab", url="http://s3/x"
    )
    return provider_adapter_pb2.TaskStatus(
        state=provider_adapter_pb2.TASK_STATE_COMPLETED,
        task_id="task_1",
        raw_state="success",
        outputs=[provider_adapter_pb2.ResultOutput(stored=stored)],
        usage=provider_adapter_pb2.Usage(amount=usage) if usage else None,
    )


def _failed(*, charges_failures: bool = False) -> provider_adapter_pb2.TaskStatus:
    return provider_adapter_pb2.TaskStatus(
        state=provider_adapter_pb2.TASK_STATE_FAILED,
        task_id="task_1",
        raw_state="fail",
        error_message="content policy",
        charges_failures=charges_failures,
    )


async def _priced_asset(store: AssetStore, ledger: CostLedger, box_id: str = "") -> AssetRow:
    if not box_id:
        box_id = (await store.create_box(new_id("box"), "costs")).id
    draft = AssetRow(
        id=new_id("ast"),
        box_id=box_id,
        status=Status.PENDING,
        step=Step.QUEUED,
        source_type="GENERATED",
        model="img",
        cost_json=COST.text(),
    )
    await ledger.open(asset_id=draft.id, attempt=1, box_id=box_id, model="img", key_id="key_1", cost=COST)
    return await store.insert_asset(draft, "accepted")


def _spent(project: str = "default") -> float:
    labels = {"project": project, "model": "img", "currency": "USD"}
    return REGISTRY.get_sample_value("assetgen_spend_total", labels) or 0.0


async def _run_until_done(
    engine: AsyncEngine, store: AssetStore, ledger: CostLedger, adapter: Any, asset: AssetRow
) -> None:
    """Runs the asset's job as JetStream would: again after each step, and again after a crash, by a
    new process (a fresh lifecycle)."""
    for _ in range(10):
        lifecycle = Lifecycle(store, adapter, None, _Events(), CONFIG, ledger=ledger)  # type: ignore[arg-type]
        try:
            outcome = await lifecycle.handle(Job(asset.id, 1, 0))
        except Crash:
            continue  # redelivered after the ack wait
        if isinstance(outcome, Done):
            # A duplicate delivery of the finished job changes nothing.
            assert isinstance(await lifecycle.handle(Job(asset.id, 1, 0)), Done)
            return
    raise AssertionError("the job never finished")


async def test_a_completion_redelivered_after_a_crash_is_charged_once(engine: AsyncEngine) -> None:
    ledger, store = CostLedger(engine), _CrashingStore(engine)
    asset = await _priced_asset(store, ledger)
    [entry] = await ledger.entries(asset.id)
    assert (entry["state"], entry["estimated_nanos"], entry["key_id"]) == ("estimated", 100_000_000, "key_1")
    before = _spent()

    await _run_until_done(engine, store, ledger, _Adapter(_completed(usage="0.07")), asset)

    assert store.crashed  # the first completion died after the ledger's write, before the asset's
    done = await store.get_asset(asset.id)
    assert done.status == Status.COMPLETED
    assert AssetCost.parse(done.cost_json) == AssetCost("USD", "0.10", "0.10", "request", charged="0.07")
    [entry] = await ledger.entries(asset.id)
    assert (entry["state"], entry["amount_nanos"]) == ("charged", 70_000_000)
    assert _spent() - before == pytest.approx(0.07)


class _CrashingAfterSubmit(AssetStore):
    """Dies on the write that records the submitted task, after the ledger's reserve and the submit."""

    crashed = False

    async def update_asset(self, asset: AssetRow, *, message: str = "", **changes: Any) -> bool:
        if not self.crashed and changes.get("status") == Status.PROCESSING:
            self.crashed = True
            raise Crash()
        return await super().update_asset(asset, message=message, **changes)


class _CountingLedger(CostLedger):
    """Counts the moves each step made (a move that found its entry already moved is no write)."""

    moves: list[str]

    async def reserve(self, asset_id: str, attempt: int) -> bool:
        moved = await super().reserve(asset_id, attempt)
        self.moves += ["reserve"] if moved else []
        return moved

    async def settle(self, asset_id: str, attempt: int, amount: Decimal) -> bool:
        moved = await super().settle(asset_id, attempt, amount)
        self.moves += ["settle"] if moved else []
        return moved


async def test_every_ledger_move_is_written_once_when_the_submit_is_redelivered(engine: AsyncEngine) -> None:
    ledger, store = _CountingLedger(engine), _CrashingAfterSubmit(engine)
    ledger.moves = []
    asset = await _priced_asset(store, ledger)
    before = _spent()
    adapter = _Adapter(_completed(usage="0.07"))

    await _run_until_done(engine, store, ledger, adapter, asset)

    assert store.crashed and adapter.submits == 2  # the submit step ran again after the crash
    assert ledger.moves == ["reserve", "settle"]  # the second reserve found it reserved: no write
    [entry] = await ledger.entries(asset.id)
    assert (entry["state"], entry["amount_nanos"]) == ("charged", 70_000_000)
    assert _spent() - before == pytest.approx(0.07)


async def test_a_provider_failure_costs_nothing_and_a_charged_failure_costs_the_estimate(
    engine: AsyncEngine,
) -> None:
    ledger, store = CostLedger(engine), _CrashingStore(engine)
    free = await _priced_asset(store, ledger)
    await _run_until_done(engine, store, ledger, _Adapter(_failed()), free)
    assert store.crashed
    assert (await store.get_asset(free.id)).status == Status.FAILED
    assert AssetCost.parse((await store.get_asset(free.id)).cost_json).charged == "0.00"  # type: ignore[union-attr]
    [entry] = await ledger.entries(free.id)
    assert (entry["state"], entry["amount_nanos"]) == ("released", 0)

    charged = await _priced_asset(AssetStore(engine), ledger)
    await _run_until_done(
        engine, AssetStore(engine), ledger, _Adapter(_failed(charges_failures=True)), charged
    )
    [entry] = await ledger.entries(charged.id)
    assert (entry["state"], entry["amount_nanos"]) == ("charged", 100_000_000)


async def test_an_unknown_outcome_keeps_the_reservation(engine: AsyncEngine) -> None:
    ledger, store = CostLedger(engine), AssetStore(engine)
    asset = await _priced_asset(store, ledger)
    unknown = grpc.aio.AioRpcError(
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.aio.Metadata(),
        grpc.aio.Metadata((REASON_METADATA_KEY, "OUTCOME_UNKNOWN")),
        details="outcome unknown at kie",
    )
    adapter = _Adapter(_completed(), submit_error=unknown)
    await _run_until_done(engine, store, ledger, adapter, asset)
    assert adapter.submits == 1
    failed = await store.get_asset(asset.id)
    assert failed.status == Status.FAILED and "outcome unknown" in failed.error_message
    [entry] = await ledger.entries(asset.id)
    assert (entry["state"], entry["amount_nanos"]) == ("reserved", 100_000_000)
    assert await ledger.release(asset.id, 1)  # the operator clears it
    assert not await ledger.release(asset.id, 1)


async def test_budgets_count_what_is_held_and_refuse_what_would_pass_them(engine: AsyncEngine) -> None:
    ledger, store = CostLedger(engine), AssetStore(engine)
    box = await store.create_box(new_id("box"), "budgeted", budget="0.25")
    first = await _priced_asset(store, ledger, box.id)
    # An estimate whose asset never got written (the process died in between) holds nothing.
    await ledger.open(asset_id=new_id("ast"), attempt=1, box_id=box.id, model="img", key_id="", cost=COST)
    await _priced_asset(store, ledger, box.id)
    with pytest.raises(BudgetExceeded) as refused:
        await _priced_asset(store, ledger, box.id)
    assert refused.value.message == (
        f"budget exceeded: box {box.id} has 0.05 USD remaining of 0.25, this generation needs 0.10"
    )
    assert await ledger.release(first.id, 1)  # the first one failed: its share is free again
    await _priced_asset(store, ledger, box.id)
    assert await ledger.settle(first.id, 1, Decimal("0.05")) is False  # released stays released


async def test_usage_sums_charges_by_group_on_either_database(engine: AsyncEngine) -> None:
    ledger, store = CostLedger(engine), AssetStore(engine)
    box = await store.create_box(new_id("box"), "usage")
    charged = [await _priced_asset(store, ledger, box.id) for _ in range(3)]
    for asset, amount in zip(charged, ("0.10", "0.07", "0.000000001"), strict=True):
        assert await ledger.settle(asset.id, 1, Decimal(amount))
    released = await _priced_asset(store, ledger, box.id)
    assert await ledger.release(released.id, 1)
    await _priced_asset(store, ledger, box.id)  # still estimated: not spent

    today = utcnow().date().isoformat()
    by_day = await ledger.usage(UsageQuery(group_by="day", box_id=box.id))
    assert by_day == [UsageGroup(today, 3, 170_000_001, "USD")]
    by_key = await ledger.usage(
        UsageQuery(group_by="key", box_id=box.id, since=utcnow() - dt.timedelta(hours=1))
    )
    assert by_key == [UsageGroup("key_1", 3, 170_000_001, "USD")]
    assert await ledger.usage(UsageQuery(box_id=box.id, until=utcnow() - dt.timedelta(hours=1))) == []
    with pytest.raises(InvalidArgument):
        await ledger.usage(UsageQuery(group_by="colour"))
