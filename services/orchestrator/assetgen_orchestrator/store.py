"""Data access for boxes and assets; every asset update is a compare-and-set on its version.

The store speaks SQLAlchemy Core, not ORM sessions: the job path runs statements for every step
and poll of every generation, and a session's unit of work costs several times the statement it
wraps. Rows come back as detached instances of the mapped classes (:func:`_detached`), so callers
read and pass them around like ORM objects. Single statements run in autocommit — one round trip,
no BEGIN/COMMIT — and a change that moves an asset's status or step writes its history row in the
same statement on PostgreSQL (a data-modifying CTE), in one transaction elsewhere. Lookups of
single assets made together (the job messages of one fetch) are answered by one query. The hot
statements are built once (per set of changed columns) with bound parameters, so running one costs
no statement construction and only a memoized cache-key lookup.

On PostgreSQL the writes that move an asset are also committed in groups: the ones made within
10 ms of each other (``ASSETGEN_DB_WRITE_LINGER_MS``; the steps of one pull, the polls of one
``PollTasks`` answer) go to the database as one statement over arrays of rows, each row still its
own compare-and-set. In groups of four a row costs about a quarter of a statement of its own, the
service's CPU and the database's together.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import Insert, Select, Table, Update, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import attributes, configure_mappers

from assetgen_orchestrator.models import Asset, AssetTransition, Box, Status, utcnow
from assetgen_runtime.batching import GROUP_COMMIT_LINGER, Batcher, GroupCommit
from assetgen_runtime.database import array_parameters, array_rows
from assetgen_runtime.errors import InvalidArgument, NotFound

__all__ = ["AssetStore", "Page"]

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
_LOOKUP_BATCH = 500
# A box seen to exist is taken on trust this long (see ``check_box``), by up to this many boxes.
_KNOWN_BOX_SECONDS = 10.0
_KNOWN_BOXES_MAX = 10_000

_ASSETS = cast(Table, Asset.__table__)
_TRANSITIONS = cast(Table, AssetTransition.__table__)
_BOXES = cast(Table, Box.__table__)

Model = TypeVar("Model", Asset, AssetTransition, Box)

_FIND_MANY = select(_ASSETS).where(_ASSETS.c.id.in_(bindparam("ids", expanding=True)))
_TRANSITION_FIELDS = ("asset_id", "attempt", "from_status", "to_status", "step", "message", "at")


def _set(column: str) -> str:
    return f"set_{column}"


def _history(field: str) -> str:
    return f"history_{field}"


@functools.lru_cache(maxsize=128)
def _compare_and_set(columns: tuple[str, ...]) -> Update:
    """``UPDATE assets SET <columns> WHERE id = :row_id AND version = :row_version``, once per column set."""
    return (
        update(_ASSETS)
        .where(_ASSETS.c.id == bindparam("row_id"), _ASSETS.c.version == bindparam("row_version"))
        .values({column: bindparam(_set(column), type_=_ASSETS.c[column].type) for column in columns})
    )


@functools.lru_cache(maxsize=1)
def _insert_asset() -> Insert:
    return insert(_ASSETS).values(
        {column.key: bindparam(_set(column.key), type_=column.type) for column in _ASSETS.columns}
    )


@functools.lru_cache(maxsize=128)
def _with_history(statement: Insert | Update) -> Insert:
    """``statement`` and the history row it earns as one statement (PostgreSQL's data-modifying CTE).

    The history row is inserted only if the asset row was written, atomically, in one round trip.
    """
    changed = statement.returning(_ASSETS.c.id).cte("changed")
    fields = _TRANSITION_FIELDS[1:]
    values = (bindparam(_history(field), type_=_TRANSITIONS.c[field].type) for field in fields)
    return (
        insert(_TRANSITIONS)
        .from_select(["asset_id", *fields], select(changed.c.id, *values))
        .returning(_TRANSITIONS.c.id)
    )


WriteKind = Literal["insert", "update"]


@functools.lru_cache(maxsize=128)
def _group_with_history(kind: WriteKind, columns: tuple[str, ...]) -> Insert:
    """Many rows' ``_with_history(...)`` as one statement: the rows arrive as one array per column.

    Every row is inserted, or compare-and-set on its id and version, on its own; the history rows
    are inserted for exactly the asset rows written, and the statement returns their asset ids.
    A group must not name one asset twice (an UPDATE … FROM applies only one row to it).
    """
    history_fields = _TRANSITION_FIELDS[1:]
    keys = {"row_id": _ASSETS.c.id.type, "row_version": _ASSETS.c.version.type} if kind == "update" else {}
    rows = array_rows(
        {
            **keys,
            **{_set(column): _ASSETS.c[column].type for column in columns},
            **{_history(field): _TRANSITIONS.c[field].type for field in history_fields},
        }
    )
    if kind == "update":
        written: Insert | Update = (
            update(_ASSETS)
            .where(_ASSETS.c.id == rows.c.row_id, _ASSETS.c.version == rows.c.row_version)
            .values({column: rows.c[_set(column)] for column in columns})
        )
        row_id = rows.c.row_id
    else:
        written = insert(_ASSETS).from_select(
            list(columns), select(*(rows.c[_set(c)] for c in columns)), include_defaults=False
        )
        row_id = rows.c[_set("id")]
    changed = written.returning(_ASSETS.c.id).cte("changed")
    history = select(changed.c.id, *(rows.c[_history(field)] for field in history_fields))
    return (
        insert(_TRANSITIONS)
        .from_select(["asset_id", *history_fields], history.join_from(rows, changed, changed.c.id == row_id))
        .returning(_TRANSITIONS.c.asset_id)
    )


@dataclasses.dataclass(frozen=True)
class _Write:
    """One asset INSERT or compare-and-set UPDATE with the history row it earns."""

    kind: WriteKind
    asset_id: str
    columns: tuple[str, ...]
    parameters: dict[str, Any]
    transition: dict[str, Any]

    @property
    def statement(self) -> Insert | Update:
        return _insert_asset() if self.kind == "insert" else _compare_and_set(self.columns)

    @property
    def bound(self) -> dict[str, Any]:
        """The parameters of ``_with_history(statement)``: the row's and its history row's."""
        return {**self.parameters, **{_history(f): self.transition[f] for f in _TRANSITION_FIELDS[1:]}}


@dataclasses.dataclass
class Page:
    """One page of a keyset-paginated listing."""

    items: list[Any]
    next_cursor: str


def _page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _detached(model: type[Model], row: Mapping[str, Any]) -> Model:
    """A detached instance holding ``row``, built the way the ORM's loader builds one.

    The mapped constructor runs attribute events for every column (~40 µs for an asset); filling
    the instance dictionary directly costs ~2 µs.
    """
    instance = attributes.manager_of_class(model).new_instance()
    instance.__dict__.update(row)
    return instance  # type: ignore[no-any-return]


def _columns(instance: Asset | Box) -> dict[str, Any]:
    return {column.key: getattr(instance, column.key) for column in instance.__table__.columns}


class AssetStore:
    """Reads and writes the orchestrator's tables in short, single-purpose statements."""

    def __init__(self, engine: AsyncEngine, *, write_linger: float = GROUP_COMMIT_LINGER) -> None:
        configure_mappers()  # _detached needs the mapped attributes set up
        self._engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._history_in_one_statement = engine.dialect.name == "postgresql"
        self._lookups: Batcher[str, Asset | None] = Batcher(self.find_assets, max_batch=_LOOKUP_BATCH)
        self._writes: GroupCommit[_Write, bool] | None = None
        if self._history_in_one_statement and write_linger > 0:
            self._writes = GroupCommit(
                together=self._write_together,
                alone=self._write_alone,
                key=lambda write: write.asset_id,
                shape=lambda write: (write.kind, write.columns),
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

    async def create_box(self, box_id: str, name: str) -> Box:
        """Inserts a box."""
        now = utcnow()
        box = _detached(Box, {"id": box_id, "name": name, "created_at": now, "updated_at": now})
        await self._execute(insert(_BOXES).values(_columns(box)))
        return box

    async def get_box(self, box_id: str) -> Box:
        """The box, or NotFound."""
        rows = await self._rows(select(_BOXES).where(_BOXES.c.id == box_id))
        if not rows:
            raise NotFound(f"box {box_id!r} not found")
        return _detached(Box, rows[0])

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

    async def list_boxes(self, page_size: int, cursor: str) -> Page:
        """Boxes newest first; ids sort by creation time, so the cursor is the last id seen."""
        size = _page_size(page_size)
        query = select(_BOXES).order_by(_BOXES.c.id.desc()).limit(size + 1)
        if cursor:
            query = query.where(_BOXES.c.id < cursor)
        return _page([_detached(Box, row) for row in await self._rows(query)], size)

    async def rename_box(self, box_id: str, name: str) -> Box:
        """Renames a box (NotFound if missing)."""
        result = await self._execute(
            update(_BOXES)
            .where(_BOXES.c.id == box_id)
            .values(name=name, updated_at=utcnow())
            .returning(*_BOXES.columns)
        )
        row = result.mappings().first()
        if row is None:
            raise NotFound(f"box {box_id!r} not found")
        return _detached(Box, row)

    async def delete_box(self, box_id: str) -> None:
        """Deletes a box with its assets and their history."""
        self._known_boxes.pop(box_id, None)
        asset_ids = select(_ASSETS.c.id).where(_ASSETS.c.box_id == box_id)
        async with self._engine.begin() as connection:
            await connection.execute(delete(_TRANSITIONS).where(_TRANSITIONS.c.asset_id.in_(asset_ids)))
            await connection.execute(delete(_ASSETS).where(_ASSETS.c.box_id == box_id))
            await connection.execute(delete(_BOXES).where(_BOXES.c.id == box_id))

    # -- assets ---------------------------------------------------------------------------------

    async def box_assets(self, box_id: str) -> list[Asset]:
        """Every asset of a box (for deleting it)."""
        rows = await self._rows(select(_ASSETS).where(_ASSETS.c.box_id == box_id))
        return [_detached(Asset, row) for row in rows]

    async def delete_asset(self, asset_id: str) -> None:
        """Deletes an asset and its history."""
        async with self._engine.begin() as connection:
            await connection.execute(delete(_TRANSITIONS).where(_TRANSITIONS.c.asset_id == asset_id))
            await connection.execute(delete(_ASSETS).where(_ASSETS.c.id == asset_id))

    async def find_asset(self, asset_id: str) -> Asset | None:
        """The asset, or None; a copy of its own for every caller."""
        return await self._lookups.load(asset_id)

    async def find_assets(self, asset_ids: list[str]) -> list[Asset | None]:
        """The assets (None for a missing one), in the order asked, with one query."""
        rows = await self._rows(_FIND_MANY, {"ids": list(set(asset_ids))})
        by_id = {row["id"]: row for row in rows}
        return [_detached(Asset, by_id[asset_id]) if asset_id in by_id else None for asset_id in asset_ids]

    async def get_asset(self, asset_id: str) -> Asset:
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
    ) -> Page:
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
        return _page([_detached(Asset, row) for row in await self._rows(query)], size)

    async def find_by_idempotency_key(self, box_id: str, key: str) -> Asset | None:
        """The asset a generate with this Idempotency-Key created in this box, if any."""
        rows = await self._rows(
            select(_ASSETS).where(_ASSETS.c.box_id == box_id, _ASSETS.c.idempotency_key == key)
        )
        return _detached(Asset, rows[0]) if rows else None

    async def insert_asset(self, asset: Asset, message: str) -> Asset:
        """Inserts a new asset with its first history entry.

        A concurrent generate with the same Idempotency-Key loses the race on the unique constraint
        and gets the winner's asset; an asset whose box is gone fails on the foreign key: NotFound.
        """
        now = utcnow()
        asset.created_at = asset.updated_at = now
        row = _columns(asset)
        try:
            await self._write(
                _Write(
                    "insert",
                    asset.id,
                    tuple(row),
                    {_set(column): value for column, value in row.items()},
                    _transition_values(row, "", message, now),
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

    async def update_asset(self, asset: Asset, *, message: str = "", **changes: Any) -> bool:
        """Applies ``changes`` if nobody changed the asset since it was read; False if someone did.

        On success ``asset`` (a detached copy) is updated in place and, when the status or step moved,
        a history entry is written in the same transaction.
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
            **{_set(column): value for column, value in changes.items()},
        }
        if moved:
            after = {**_columns(asset), **changes}
            transition = _transition_values(after, previous_status, message, now)
            updated = await self._write(_Write("update", asset.id, columns, parameters, transition))
        else:
            updated = (await self._execute(_compare_and_set(columns), parameters)).rowcount == 1
        if updated:
            for key, value in changes.items():
                setattr(asset, key, value)
        return updated

    async def _write(self, write: _Write) -> bool:
        """Whether ``write`` touched its row; committed with the writes made meanwhile, if grouping."""
        if self._writes is None:
            return await self._write_alone(write)
        return await self._writes.write(write)

    async def _write_alone(self, write: _Write) -> bool:
        """Runs an asset INSERT or UPDATE and, if it touched the row, records its transition with it."""
        if self._history_in_one_statement:
            result = await self._execute(_with_history(write.statement), write.bound)
            return len(result.all()) == 1
        async with self._engine.begin() as connection:
            if (await connection.execute(write.statement, write.parameters)).rowcount != 1:
                return False
            await connection.execute(insert(_TRANSITIONS).values(write.transition))
        return True

    async def _write_together(self, writes: list[_Write]) -> list[bool]:
        """Writes of one kind and column set in one statement: whether each touched its row."""
        first, rows = writes[0], [write.bound for write in writes]
        parameters = array_parameters(rows, rows[0])
        result = await self._execute(_group_with_history(first.kind, first.columns), parameters)
        written = {row[0] for row in result.all()}
        return [write.asset_id in written for write in writes]

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

    async def history(self, asset_id: str) -> Sequence[AssetTransition]:
        """Every transition of an asset, oldest first."""
        query = select(_TRANSITIONS).where(_TRANSITIONS.c.asset_id == asset_id).order_by(_TRANSITIONS.c.id)
        return [_detached(AssetTransition, row) for row in await self._rows(query)]


def _transition_values(
    asset: Mapping[str, Any], previous_status: str, message: str, at: Any
) -> dict[str, Any]:
    return {
        "asset_id": asset["id"],
        "attempt": asset["attempt"],
        "from_status": previous_status,
        "to_status": asset["status"],
        "step": asset["step"],
        "message": message,
        "at": at,
    }


def _page(rows: list[Any], size: int) -> Page:
    if len(rows) > size:
        return Page(items=rows[:size], next_cursor=rows[size - 1].id)
    return Page(items=rows, next_cursor="")
