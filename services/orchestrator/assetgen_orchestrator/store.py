"""Data access for boxes and assets; every asset update is a compare-and-set on its version.

The store speaks SQLAlchemy Core, not ORM sessions: the job path runs statements for every step
and poll of every generation, and a session's unit of work costs several times the statement it
wraps (see bench/README.md). Rows come back as plain dataclasses (``BoxRow``, ``AssetRow``,
``TransitionRow``). Single statements run in autocommit — one round trip, no BEGIN/COMMIT — and a
change that moves an asset's status or step writes its history row in the same statement on
PostgreSQL, in one transaction elsewhere. Lookups of single assets made together (the job messages
of one fetch) are answered by one query. The statements themselves are in :mod:`.statements`.

On PostgreSQL the writes that move an asset are also committed in groups: the ones made within
``ASSETGEN_DB_WRITE_LINGER_MS`` of each other (the steps of one pull, the polls of one
``PollTasks`` answer) go to the database as one statement over arrays of rows, each row still its
own compare-and-set, which costs the service and the database less per row than a statement each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Mapping, Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from assetgen_orchestrator.models import (
    DEFAULT_PROJECT_ID,
    AssetRow,
    BoxRow,
    Status,
    TransitionRow,
    assets_table,
    boxes_table,
    transitions_table,
    utcnow,
)
from assetgen_orchestrator.statements import (
    FIND_ASSETS,
    AssetWrite,
    compare_and_set,
    group_with_history,
    set_parameter,
    transition_values,
    with_history,
)
from assetgen_runtime.batching import GROUP_COMMIT_LINGER, Batcher, GroupCommit
from assetgen_runtime.database import array_parameters
from assetgen_runtime.errors import InvalidArgument, NotFound

__all__ = ["AssetStore", "Page"]

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
_LOOKUP_BATCH = 500
# A box seen to exist is taken on trust this long (see ``check_box``), by up to this many boxes.
_KNOWN_BOX_SECONDS = 10.0
_KNOWN_BOXES_MAX = 10_000

_ASSETS = assets_table
_TRANSITIONS = transitions_table
_BOXES = boxes_table

Row = TypeVar("Row", AssetRow, BoxRow)


@dataclasses.dataclass
class Page(Generic[Row]):
    """One page of a keyset-paginated listing."""

    items: list[Row]
    next_cursor: str


def _page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


class AssetStore:
    """Reads and writes the orchestrator's tables in short, single-purpose statements."""

    def __init__(self, engine: AsyncEngine, *, write_linger: float = GROUP_COMMIT_LINGER) -> None:
        self._engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._history_in_one_statement = engine.dialect.name == "postgresql"
        self._lookups: Batcher[str, AssetRow | None] = Batcher(self.find_assets, max_batch=_LOOKUP_BATCH)
        self._writes: GroupCommit[AssetWrite, bool] | None = None
        if self._history_in_one_statement and write_linger > 0:
            self._writes = GroupCommit(
                together=self._write_together,
                alone=self._write_alone,
                key=lambda write: write.asset_id,
                shape=lambda write: write.shape,
                linger=write_linger,
            )
        self._known_boxes: dict[str, float] = {}

    async def _rows(
        self, query: Select[Any], parameters: Mapping[str, Any] | None = None
    ) -> Sequence[Mapping[str, Any]]:
        async with self._autocommit.connect() as connection:
            return (await connection.execute(query, parameters)).mappings().all()

    async def _execute(self, statement: Any, parameters: Mapping[str, Any] | None = None) -> Any:
        async with self._autocommit.connect() as connection:
            return await connection.execute(statement, parameters)

    # -- boxes ----------------------------------------------------------------------------------

    async def create_box(
        self, box_id: str, name: str, project_id: str = DEFAULT_PROJECT_ID, *, budget: str | None = None
    ) -> BoxRow:
        """Inserts a box into a project."""
        now = utcnow()
        box = BoxRow(
            id=box_id, name=name, created_at=now, updated_at=now, project_id=project_id, budget=budget
        )
        await self._execute(insert(_BOXES).values(dataclasses.asdict(box)))
        return box

    async def get_box(self, box_id: str) -> BoxRow:
        """The box, or NotFound."""
        rows = await self._rows(select(_BOXES).where(_BOXES.c.id == box_id))
        if not rows:
            raise NotFound(f"box {box_id!r} not found")
        return BoxRow(**rows[0])

    async def check_box(self, box_id: str) -> None:
        """Raises NotFound unless the box exists; a box seen in the last few seconds is not looked up.

        Trust is safe because assets reference their box by a foreign key: an asset inserted into a
        box deleted meanwhile fails (``insert_asset`` raises NotFound then). What the shortcut saves
        is a query per generation into a busy box.
        """
        now = time.monotonic()
        if self._known_boxes.get(box_id, 0.0) > now:
            return
        await self.get_box(box_id)
        if len(self._known_boxes) >= _KNOWN_BOXES_MAX:
            self._known_boxes.clear()
        self._known_boxes[box_id] = now + _KNOWN_BOX_SECONDS

    async def list_boxes(self, page_size: int, cursor: str, project_id: str = "") -> Page[BoxRow]:
        """Boxes newest first, of one project if given; ids sort by creation time, so the cursor is
        the last id seen."""
        size = _page_size(page_size)
        query = select(_BOXES).order_by(_BOXES.c.id.desc()).limit(size + 1)
        if cursor:
            query = query.where(_BOXES.c.id < cursor)
        if project_id:
            query = query.where(_BOXES.c.project_id == project_id)
        return _page([BoxRow(**row) for row in await self._rows(query)], size)

    async def rename_box(self, box_id: str, name: str) -> BoxRow:
        """Renames a box (NotFound if missing)."""
        return await self._update_box(box_id, name=name)

    async def update_box(self, box_id: str, name: str, budget: str | None) -> BoxRow:
        """Sets a box's name and budget (NotFound if missing)."""
        return await self._update_box(box_id, name=name, budget=budget)

    async def _update_box(self, box_id: str, **values: Any) -> BoxRow:
        result = await self._execute(
            update(_BOXES)
            .where(_BOXES.c.id == box_id)
            .values(**values, updated_at=utcnow())
            .returning(*_BOXES.columns)
        )
        row = result.mappings().first()
        if row is None:
            raise NotFound(f"box {box_id!r} not found")
        return BoxRow(**row)

    async def delete_box(self, box_id: str) -> None:
        """Deletes a box with its assets and their history."""
        self._known_boxes.pop(box_id, None)
        asset_ids = select(_ASSETS.c.id).where(_ASSETS.c.box_id == box_id)
        async with self._engine.begin() as connection:
            await connection.execute(delete(_TRANSITIONS).where(_TRANSITIONS.c.asset_id.in_(asset_ids)))
            await connection.execute(delete(_ASSETS).where(_ASSETS.c.box_id == box_id))
            await connection.execute(delete(_BOXES).where(_BOXES.c.id == box_id))

    # -- assets ---------------------------------------------------------------------------------

    async def box_assets(self, box_id: str) -> list[AssetRow]:
        """Every asset of a box (for deleting it)."""
        rows = await self._rows(select(_ASSETS).where(_ASSETS.c.box_id == box_id))
        return [AssetRow(**row) for row in rows]

    async def delete_asset(self, asset_id: str) -> None:
        """Deletes an asset and its history."""
        async with self._engine.begin() as connection:
            await connection.execute(delete(_TRANSITIONS).where(_TRANSITIONS.c.asset_id == asset_id))
            await connection.execute(delete(_ASSETS).where(_ASSETS.c.id == asset_id))

    async def find_asset(self, asset_id: str) -> AssetRow | None:
        """The asset, or None; a copy of its own for every caller."""
        return await self._lookups.load(asset_id)

    async def find_assets(self, asset_ids: list[str]) -> list[AssetRow | None]:
        """The assets (None for a missing one), in the order asked, with one query."""
        rows = await self._rows(FIND_ASSETS, {"ids": list(set(asset_ids))})
        by_id = {row["id"]: row for row in rows}
        return [AssetRow(**by_id[asset_id]) if asset_id in by_id else None for asset_id in asset_ids]

    async def get_asset(self, asset_id: str) -> AssetRow:
        """The asset, or NotFound."""
        asset = await self.find_asset(asset_id)
        if asset is None:
            raise NotFound(f"asset {asset_id!r} not found")
        return asset

    async def list_assets(
        self,
        box_id: str,
        page_size: int,
        cursor: str,
        *,
        status: str = "",
        source_type: str = "",
        model: str = "",
    ) -> Page[AssetRow]:
        """A box's assets newest first, optionally filtered."""
        size = _page_size(page_size)
        query = (
            select(_ASSETS).where(_ASSETS.c.box_id == box_id).order_by(_ASSETS.c.id.desc()).limit(size + 1)
        )
        if cursor:
            query = query.where(_ASSETS.c.id < cursor)
        if status:
            query = query.where(_ASSETS.c.status == status)
        if source_type:
            query = query.where(_ASSETS.c.source_type == source_type)
        if model:
            query = query.where(_ASSETS.c.model == model)
        return _page([AssetRow(**row) for row in await self._rows(query)], size)

    async def find_by_idempotency_key(self, box_id: str, key: str) -> AssetRow | None:
        """The asset a generate with this Idempotency-Key created in this box, if any."""
        rows = await self._rows(
            select(_ASSETS).where(_ASSETS.c.box_id == box_id, _ASSETS.c.idempotency_key == key)
        )
        return AssetRow(**rows[0]) if rows else None

    async def insert_asset(self, asset: AssetRow, message: str) -> AssetRow:
        """Inserts a new asset with its first history entry.

        A concurrent generate with the same Idempotency-Key loses the race on the unique constraint
        and gets the winner's asset; an asset whose box is gone fails on the foreign key: NotFound.
        """
        now = utcnow()
        asset.created_at = asset.updated_at = now
        row = asset.values()
        try:
            await self._write(
                AssetWrite(
                    "insert",
                    asset.id,
                    tuple(row),
                    {set_parameter(column): value for column, value in row.items()},
                    transition_values(row, "", message, now),
                )
            )
        except IntegrityError:
            if asset.idempotency_key:
                existing = await self.find_by_idempotency_key(asset.box_id, asset.idempotency_key)
                if existing is not None:
                    return existing
            self._known_boxes.pop(asset.box_id, None)
            await self.get_box(asset.box_id)
            raise
        return asset

    async def update_asset(self, asset: AssetRow, *, message: str = "", **changes: Any) -> bool:
        """Applies ``changes`` if nobody changed the asset since it was read; False if someone did.

        On success ``asset`` (the caller's own row) is updated in place and, when the status or step
        moved, a history entry is written in the same transaction.
        """
        now = utcnow()
        changes = {**changes, "version": asset.version + 1, "updated_at": now}
        previous_status = asset.status
        moved = (
            changes.get("status", asset.status) != asset.status
            or changes.get("step", asset.step) != asset.step
        )
        columns = tuple(sorted(changes))
        parameters = {
            "row_id": asset.id,
            "row_version": asset.version,
            **{set_parameter(column): value for column, value in changes.items()},
        }
        if moved:
            after = {**asset.values(), **changes}
            transition = transition_values(after, previous_status, message, now)
            updated = await self._write(AssetWrite("update", asset.id, columns, parameters, transition))
        else:
            updated = (await self._execute(compare_and_set(columns), parameters)).rowcount == 1
        if updated:
            for key, value in changes.items():
                setattr(asset, key, value)
        return updated

    async def _write(self, write: AssetWrite) -> bool:
        """Whether ``write`` touched its row; committed with the writes made meanwhile, if grouping."""
        if self._writes is None:
            return await self._write_alone(write)
        return await self._writes.write(write)

    async def _write_alone(self, write: AssetWrite) -> bool:
        """Runs an asset INSERT or UPDATE and, if it touched the row, records its transition with it."""
        if self._history_in_one_statement:
            result = await self._execute(with_history(write.statement), write.bound)
            return len(result.all()) == 1
        async with self._engine.begin() as connection:
            if (await connection.execute(write.statement, write.parameters)).rowcount != 1:
                return False
            await connection.execute(insert(_TRANSITIONS).values(write.transition))
        return True

    async def _write_together(self, writes: list[AssetWrite]) -> list[bool]:
        """Writes of one kind and column set in one statement: whether each touched its row."""
        first, rows = writes[0], [write.bound for write in writes]
        parameters = array_parameters(rows, rows[0])
        result = await self._execute(group_with_history(first.kind, first.columns), parameters)
        written = {row[0] for row in result.all()}
        return [write.asset_id in written for write in writes]

    async def quiet_in_flight(self, before: dt.datetime, limit: int, *, after: str = "") -> list[AssetRow]:
        """Up to ``limit`` non-terminal assets unchanged since ``before``, by id, from the id ``after``
        on (a page; the next one starts after the last asset of this one)."""
        query = (
            select(_ASSETS)
            .where(_ASSETS.c.status.in_([Status.PENDING.value, Status.PROCESSING.value]))
            .where(_ASSETS.c.updated_at < before, _ASSETS.c.id > after)
            .order_by(_ASSETS.c.id)
            .limit(limit)
        )
        return [AssetRow(**row) for row in await self._rows(query)]

    # -- figures and history --------------------------------------------------------------------

    async def status_counts(self) -> dict[str, int]:
        """Number of assets in each status."""
        query = select(_ASSETS.c.status, func.count()).group_by(_ASSETS.c.status)
        result = await self._execute(query)
        return {str(status): int(count) for status, count in result.all()}

    async def oldest_in_flight(self) -> dict[str, float]:
        """Age in seconds of the oldest non-terminal asset of each model."""
        terminal = [Status.COMPLETED.value, Status.FAILED.value, Status.CANCELED.value]
        query = (
            select(_ASSETS.c.model, func.min(_ASSETS.c.created_at))
            .where(_ASSETS.c.status.not_in(terminal))
            .group_by(_ASSETS.c.model)
        )
        now = utcnow()
        rows = (await self._execute(query)).all()
        return {
            str(model): (
                now - (oldest if oldest.tzinfo else oldest.replace(tzinfo=now.tzinfo))
            ).total_seconds()
            for model, oldest in rows
            if oldest is not None
        }

    async def history(self, asset_id: str) -> list[TransitionRow]:
        """Every transition of an asset, oldest first."""
        query = select(_TRANSITIONS).where(_TRANSITIONS.c.asset_id == asset_id).order_by(_TRANSITIONS.c.id)
        return [TransitionRow(**row) for row in await self._rows(query)]

    async def history_page(
        self, asset_id: str, page_size: int, cursor: str
    ) -> tuple[list[TransitionRow], str]:
        """A page of an asset's transitions, oldest first, and the cursor of the next ('' at the end)."""
        size = _page_size(page_size)
        query = (
            select(_TRANSITIONS)
            .where(_TRANSITIONS.c.asset_id == asset_id)
            .order_by(_TRANSITIONS.c.id)
            .limit(size + 1)
        )
        if cursor:
            if not cursor.isdigit():
                raise InvalidArgument("cursor is not one this listing gave")
            query = query.where(_TRANSITIONS.c.id > int(cursor))
        rows = [TransitionRow(**row) for row in await self._rows(query)]
        if len(rows) > size:
            return rows[:size], str(rows[size - 1].id)
        return rows, ""


def _page(rows: list[Row], size: int) -> Page[Row]:
    if len(rows) > size:
        return Page(items=rows[:size], next_cursor=rows[size - 1].id)
    return Page(items=rows, next_cursor="")
