"""On real SQLite and PostgreSQL: one holder of the reconciler's lease at a time, taken over once it
expires; and a terminal transition raced by two workers happens once, with one history row and one
event."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from assetgen.v1 import provider_adapter_pb2
from assetgen_dev.testing import eventually
from assetgen_orchestrator.jobs import PULL_PAUSE, Done, Job
from assetgen_orchestrator.lease import Lease
from assetgen_orchestrator.lifecycle import Lifecycle, LifecycleConfig
from assetgen_orchestrator.main import MIGRATIONS
from assetgen_orchestrator.models import AssetRow, Status, Step, utcnow
from assetgen_orchestrator.store import AssetStore
from assetgen_runtime.database import create_engine, migrate
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


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_orchestrator")
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def test_one_holder_at_a_time_and_a_takeover_after_expiry(engine: AsyncEngine) -> None:
    first = Lease(engine, "reconciler", "replica-a", ttl=0.5)
    second = Lease(engine, "reconciler", "replica-b", ttl=0.5)

    assert await first.acquire()
    assert not await second.acquire()
    assert await first.acquire()  # renewed by its holder

    # The holder stops renewing (it died): the other takes over once the lease has expired.
    await eventually(second.acquire, bool, timeout=10, what="takeover after expiry")
    assert not await first.acquire()

    await second.release()
    assert await first.acquire()  # released on shutdown: taken at once


async def test_many_replicas_racing_for_a_free_lease_yield_one_holder(engine: AsyncEngine) -> None:
    leases = [Lease(engine, "reconciler", f"replica-{n}", ttl=60) for n in range(8)]
    won = await asyncio.gather(*(lease.acquire() for lease in leases), return_exceptions=True)
    assert [result for result in won if result is True] == [True]


class _Events:
    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []

    async def publish(self, asset: AssetRow, *, file_url: str = "") -> None:
        self.published.append((asset.id, asset.status))


class _FailingTaskAdapter:
    """The provider reports the task failed; both workers' polls wait for each other to answer."""

    def __init__(self, callers: int) -> None:
        self.barrier = asyncio.Barrier(callers)

    async def PollTasks(self, request: Any, timeout: float) -> provider_adapter_pb2.PollTasksResponse:
        await self.barrier.wait()  # both workers have read the asset before either writes
        status = provider_adapter_pb2.TaskStatus(
            state=provider_adapter_pb2.TASK_STATE_FAILED, raw_state="fail", error_message="content policy"
        )
        return provider_adapter_pb2.PollTasksResponse(
            results=[provider_adapter_pb2.PollTaskResult(status=status) for _ in request.tasks]
        )


async def test_two_workers_ending_one_asset_at_once_make_one_transition_and_one_event(
    engine: AsyncEngine,
) -> None:
    store = AssetStore(engine)
    box = await store.create_box(new_id("box"), "race")
    draft = AssetRow(
        id=new_id("ast"), box_id=box.id, status=Status.PENDING, step=Step.QUEUED, source_type="GENERATED"
    )
    asset = await store.insert_asset(draft, "accepted")
    assert await store.update_asset(
        asset,
        status=Status.PROCESSING,
        step=Step.POLLING,
        external_task_id="task_1",
        submitted_at=utcnow(),
        message="submitted",
    )
    adapter, events = _FailingTaskAdapter(callers=2), _Events()
    # Two replicas' lifecycles (each its own batcher and running set), one job delivered to both.
    workers = [Lifecycle(store, adapter, None, events, CONFIG) for _ in range(2)]  # type: ignore[arg-type]

    outcomes = await asyncio.gather(*(worker.handle(Job(asset.id, 1)) for worker in workers))

    assert all(isinstance(outcome, Done) for outcome in outcomes)
    final = await store.get_asset(asset.id)
    assert final.status == Status.FAILED and final.error_message == "content policy"
    history = await store.history(asset.id)
    assert [row.to_status for row in history if row.to_status == Status.FAILED] == [Status.FAILED]
    assert events.published == [(asset.id, Status.FAILED)]


async def test_two_terminal_writes_of_one_read_row_yield_one_transition(engine: AsyncEngine) -> None:
    store = AssetStore(engine)
    box = await store.create_box(new_id("box"), "race")
    draft = AssetRow(
        id=new_id("ast"), box_id=box.id, status=Status.PROCESSING, step=Step.POLLING, source_type="GENERATED"
    )
    asset = await store.insert_asset(draft, "accepted")
    cancel, complete = copy.copy(asset), copy.copy(asset)

    written = await asyncio.gather(
        store.update_asset(cancel, status=Status.CANCELED, step=Step.DONE, message="canceled"),
        store.update_asset(complete, status=Status.COMPLETED, step=Step.DONE, message="result stored"),
    )

    assert sorted(written) == [False, True]
    terminal = [row for row in await store.history(asset.id) if Status(row.to_status).terminal]
    assert len(terminal) == 1
