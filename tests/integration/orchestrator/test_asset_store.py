"""The asset store on real SQLite and PostgreSQL: migrations, compare-and-set, pagination, history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from assetgen_orchestrator.main import MIGRATIONS
from assetgen_orchestrator.models import AssetRow, Status, Step
from assetgen_orchestrator.store import AssetStore
from assetgen_runtime.database import create_engine, migrate
from assetgen_runtime.errors import InvalidArgument, NotFound
from assetgen_runtime.ids import new_id


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[AssetStore]:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_orchestrator")
    # Migrating twice is a no-op, as every start does it.
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_orchestrator")
    engine = create_engine(database_url)
    yield AssetStore(engine)
    await engine.dispose()


def _asset(box_id: str, **values: Any) -> AssetRow:
    return AssetRow(
        id=new_id("ast"),
        box_id=box_id,
        status=Status.PENDING,
        step=Step.QUEUED,
        source_type="GENERATED",
        **values,
    )


async def test_compare_and_set_lets_exactly_one_writer_win(store: AssetStore) -> None:
    # On PostgreSQL the five writes are made together: one group commit holding one asset five times.
    box = await store.create_box(new_id("box"), "cas")
    asset = await store.insert_asset(_asset(box.id), "accepted")
    copies = [await store.get_asset(asset.id) for _ in range(5)]
    results = await asyncio.gather(
        *(
            store.update_asset(copy, status=Status.COMPLETED, step=Step.DONE, message="done")
            for copy in copies
        )
    )
    assert sorted(results) == [False, False, False, False, True]
    stored = await store.get_asset(asset.id)
    assert stored.status == Status.COMPLETED and stored.version == 2
    history = await store.history(asset.id)
    assert [(h.from_status, h.to_status) for h in history] == [("", "PENDING"), ("PENDING", "COMPLETED")]


async def test_a_stale_copy_cannot_move_an_asset_backwards(store: AssetStore) -> None:
    box = await store.create_box(new_id("box"), "stale")
    asset = await store.insert_asset(_asset(box.id), "accepted")
    stale = await store.get_asset(asset.id)
    assert await store.update_asset(asset, status=Status.FAILED, step=Step.DONE, error_message="boom")
    assert not await store.update_asset(stale, status=Status.PROCESSING, step=Step.POLLING)
    assert (await store.get_asset(asset.id)).status == Status.FAILED


async def test_idempotency_key_returns_the_first_asset(store: AssetStore) -> None:
    box = await store.create_box(new_id("box"), "idem")
    first = await store.insert_asset(_asset(box.id, idempotency_key="k1"), "accepted")
    second = await store.insert_asset(_asset(box.id, idempotency_key="k1"), "accepted")
    assert second.id == first.id
    other_box = await store.create_box(new_id("box"), "other")
    third = await store.insert_asset(_asset(other_box.id, idempotency_key="k1"), "accepted")
    assert third.id != first.id


async def test_assets_page_newest_first_with_filters(store: AssetStore) -> None:
    box = await store.create_box(new_id("box"), "pages")
    ids = []
    for index in range(7):
        asset = await store.insert_asset(_asset(box.id, model="m-even" if index % 2 == 0 else "m-odd"), "a")
        ids.append(asset.id)
    first = await store.list_assets(box.id, 3, "")
    second = await store.list_assets(box.id, 3, first.next_cursor)
    third = await store.list_assets(box.id, 3, second.next_cursor)
    seen = [a.id for a in first.items + second.items + third.items]
    assert seen == list(reversed(ids))
    assert third.next_cursor == ""
    even = await store.list_assets(box.id, 50, "", model="m-even")
    assert len(even.items) == 4
    with pytest.raises(InvalidArgument):
        await store.list_assets(box.id, -1, "")


async def test_missing_rows_are_not_found(store: AssetStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        await store.get_box("box_missing")
    with pytest.raises(NotFound):
        await store.get_asset("ast_missing")


async def test_a_box_deleted_after_it_was_checked_takes_no_asset(
    store: AssetStore, database_url: str
) -> None:
    box = await store.create_box(new_id("box"), "short-lived")
    await store.check_box(box.id)  # now trusted for a few seconds, without a query
    other_engine = create_engine(database_url)
    try:
        await AssetStore(other_engine).delete_box(box.id)  # by another replica
    finally:
        await other_engine.dispose()
    await store.check_box(box.id)  # still trusted here

    with pytest.raises(NotFound, match="not found"):
        await store.insert_asset(_asset(box.id), "accepted")
    with pytest.raises(NotFound):
        await store.check_box(box.id)  # the failed insert ended the trust


async def test_concurrent_writes_of_every_shape_each_get_their_own_outcome(
    store: AssetStore, database_url: str
) -> None:
    """On PostgreSQL these are committed as groups; on both, each caller sees only its own write."""
    box = await store.create_box(new_id("box"), "group")
    gone = new_id("box")  # never created: its asset is refused, the others are not
    inserted = await asyncio.gather(
        *(store.insert_asset(_asset(box.id, prompt=f"p{index}"), "accepted") for index in range(6)),
        store.insert_asset(_asset(gone), "accepted"),
        return_exceptions=True,
    )
    assert isinstance(inserted[-1], NotFound)
    assets = [asset for asset in inserted[:-1] if isinstance(asset, AssetRow)]
    assert len(assets) == 6

    submitted, completed, failed = await asyncio.gather(
        asyncio.gather(
            *(
                store.update_asset(
                    asset, status=Status.PROCESSING, step=Step.POLLING, external_task_id=f"t{i}"
                )
                for i, asset in enumerate(assets[:3])
            )
        ),
        asyncio.gather(
            *(
                store.update_asset(asset, status=Status.COMPLETED, step=Step.DONE, object_key=f"k{i}")
                for i, asset in enumerate(assets[3:5])
            )
        ),
        store.update_asset(assets[5], status=Status.FAILED, step=Step.DONE, error_message="boom"),
    )

    assert submitted == [True, True, True] and completed == [True, True] and failed
    stored = [await store.get_asset(asset.id) for asset in assets]
    assert [asset.status for asset in stored] == ["PROCESSING"] * 3 + ["COMPLETED"] * 2 + ["FAILED"]
    assert [asset.external_task_id for asset in stored[:3]] == ["t0", "t1", "t2"]
    assert [asset.object_key for asset in stored[3:5]] == ["k0", "k1"]
    assert stored[5].error_message == "boom" and all(asset.version == 2 for asset in stored)
    assert [asset.prompt for asset in stored] == [f"p{index}" for index in range(6)]
    for asset in stored:
        history = await store.history(asset.id)
        assert [(h.from_status, h.to_status) for h in history] == [("", "PENDING"), ("PENDING", asset.status)]


async def test_writes_made_together_share_one_statement_on_postgresql(postgres_url: str) -> None:
    await migrate(postgres_url, MIGRATIONS, version_table="alembic_version_orchestrator")
    engine = create_engine(postgres_url)
    try:
        store = AssetStore(engine, write_linger=0.05)
        box = await store.create_box(new_id("box"), "statements")
        statements: list[str] = []
        execute = store._execute

        async def counting(statement: object, parameters: object = None) -> object:
            statements.append(str(statement).split()[0])
            return await execute(statement, parameters)  # type: ignore[arg-type]

        store._execute = counting  # type: ignore[method-assign]
        assets = await asyncio.gather(*(store.insert_asset(_asset(box.id), "accepted") for _ in range(20)))
        moved = await asyncio.gather(
            *(store.update_asset(asset, status=Status.PROCESSING, step=Step.POLLING) for asset in assets)
        )
        assert all(moved)
        assert len(statements) == 2  # one for the twenty inserts, one for the twenty updates
        assert {len(await store.history(asset.id)) for asset in assets} == {2}
    finally:
        await engine.dispose()
