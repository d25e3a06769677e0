"""The reconciler: the lease holder republishes a job, as a new generation, for every quiet in-flight
asset that has none in the jobs stream; a missing stream is created again first."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

from assetgen_orchestrator.jobs import Job
from assetgen_orchestrator.models import AssetRow, Status, Step
from assetgen_orchestrator.reconciler import Reconciler, StreamMissing


class _Store:
    def __init__(self, assets: list[AssetRow]) -> None:
        self.rows = {asset.id: asset for asset in assets}
        self.asked_before: list[dt.datetime] = []

    async def quiet_in_flight(self, before: dt.datetime, limit: int, *, after: str = "") -> list[AssetRow]:
        self.asked_before.append(before)
        return [copy.copy(row) for key, row in sorted(self.rows.items()) if key > after][:limit]

    async def update_asset(self, asset: AssetRow, *, message: str = "", **changes: Any) -> bool:
        if self.rows[asset.id].version != asset.version:
            return False
        changes["version"] = asset.version + 1
        for key, value in changes.items():
            setattr(asset, key, value)
        self.rows[asset.id] = copy.copy(asset)
        return True


class _Jobs:
    def __init__(self) -> None:
        self.published: list[Job] = []

    async def publish(self, job: Job) -> None:
        self.published.append(job)


class _Lease:
    def __init__(self, held: bool) -> None:
        self.held = held

    async def acquire(self) -> bool:
        return self.held

    async def release(self) -> None:
        self.held = False


def _asset(number: int, **values: Any) -> AssetRow:
    return AssetRow(
        id=f"ast_{number}",
        box_id="box_1",
        status=Status.PROCESSING,
        step=Step.POLLING,
        source_type="GENERATED",
        version=4,
        **values,
    )


def _reconciler(
    store: _Store, jobs: _Jobs, lease: _Lease, live: set[str] | None, ensured: list[bool], batch: int = 100
) -> Reconciler:
    async def live_jobs() -> set[str]:
        if live is None:
            raise StreamMissing("stream not found")
        return live

    async def ensure_streams() -> None:
        ensured.append(True)

    return Reconciler(
        store,  # type: ignore[arg-type]
        jobs,  # type: ignore[arg-type]
        lease,  # type: ignore[arg-type]
        live_jobs=live_jobs,
        ensure_streams=ensure_streams,
        interval=30.0,
        quiet_after=120.0,
        batch=batch,
    )


async def test_only_assets_without_a_job_get_one_as_a_new_generation() -> None:
    store = _Store([_asset(1), _asset(2, attempt=3, job_generation=1), _asset(3)])
    jobs, ensured = _Jobs(), []
    reconciler = _reconciler(store, jobs, _Lease(held=True), {"ast_1"}, ensured)

    assert await reconciler.reconcile() == 2

    assert jobs.published == [Job("ast_2", 3, 2), Job("ast_3", 1, 1)]
    assert store.rows["ast_2"].job_generation == 2 and store.rows["ast_1"].job_generation == 0
    assert ensured == []
    # Quiet means unchanged for the quiet time: the store was asked for assets older than that.
    age = dt.datetime.now(dt.UTC) - store.asked_before[0]
    assert dt.timedelta(seconds=119) < age < dt.timedelta(seconds=130)


async def test_a_lost_stream_is_created_again_and_every_quiet_asset_republished() -> None:
    store = _Store([_asset(1), _asset(2)])
    jobs, ensured = _Jobs(), []
    reconciler = _reconciler(store, jobs, _Lease(held=True), None, ensured)

    assert await reconciler.reconcile() == 2

    assert ensured == [True] and [job.asset_id for job in jobs.published] == ["ast_1", "ast_2"]


async def test_a_replica_without_the_lease_does_nothing() -> None:
    store = _Store([_asset(1)])
    jobs = _Jobs()
    reconciler = _reconciler(store, jobs, _Lease(held=False), set(), [])

    assert await reconciler.reconcile() is None
    assert jobs.published == [] and store.asked_before == []


class _MovingStore(_Store):
    """A store in which every asset moves on between the reconciler's read and its write."""

    async def update_asset(self, asset: AssetRow, *, message: str = "", **changes: Any) -> bool:
        self.rows[asset.id].version += 1
        return await super().update_asset(asset, message=message, **changes)


async def test_an_asset_that_moves_meanwhile_is_alive_and_left_alone() -> None:
    jobs = _Jobs()
    reconciler = _reconciler(_MovingStore([_asset(1)]), jobs, _Lease(held=True), set(), [])

    assert await reconciler.reconcile() == 0
    assert jobs.published == []


async def test_every_quiet_asset_is_looked_at_page_by_page_against_one_reading_of_the_stream() -> None:
    store = _Store([_asset(n) for n in range(10, 35)])
    jobs = _Jobs()
    live = {f"ast_{n}" for n in range(10, 33)}  # the oldest pages are all alive; the last two are not
    readings: list[int] = []

    reconciler = _reconciler(store, jobs, _Lease(held=True), live, [], batch=4)
    original = reconciler._live_jobs

    async def counted() -> set[str]:
        readings.append(1)
        return await original()

    reconciler._live_jobs = counted

    assert await reconciler.reconcile() == 2
    assert [job.asset_id for job in jobs.published] == ["ast_33", "ast_34"] and readings == [1]
