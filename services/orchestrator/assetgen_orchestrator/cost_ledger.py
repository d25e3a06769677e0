"""The cost ledger: one entry per priced asset attempt, budgets checked against it, usage summed from it.

An entry is written when a generation is accepted (``open``: its estimate, after the budgets of
its project and box were checked against what is already held), reserved when it is submitted,
then either charged (``settle``) or released. Each move is an UPDATE conditional on the state it
leaves, so a job step redelivered after a crash, or run twice, moves the entry once: the entry
is written once, its charge counted once (``assetgen_spend_total``).

What holds against a budget: reserved and charged entries, and estimated ones whose asset exists
(an estimate whose asset was never inserted — the process died in between, or an idempotent
repeat lost its race — holds nothing). On PostgreSQL the project and box rows are locked while a
budget is checked, so two generations cannot both take the last of it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from decimal import Decimal
from typing import Any

from sqlalchemy import String, and_, cast, delete, exists, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from assetgen_orchestrator.costs import AssetCost
from assetgen_orchestrator.metrics import SPEND
from assetgen_orchestrator.models import (
    assets_table,
    boxes_table,
    cost_ledger_table,
    projects_table,
    utcnow,
)
from assetgen_runtime.errors import BudgetExceeded, InvalidArgument, NotFound
from assetgen_runtime.money import NANOS_PER_UNIT, format_nanos, parse_amount, to_nanos

__all__ = ["GROUPS", "CostLedger", "EntryState", "UsageGroup", "UsageQuery"]

_LEDGER = cost_ledger_table
_BOXES = boxes_table
_PROJECTS = projects_table


class EntryState(enum.StrEnum):
    """Where a ledger entry is: it only moves forward, estimated → reserved → charged or released."""

    ESTIMATED = "estimated"
    RESERVED = "reserved"
    CHARGED = "charged"
    RELEASED = "released"


_OPEN = (EntryState.ESTIMATED.value, EntryState.RESERVED.value)

GROUPS = ("project", "box", "model", "key", "day")
"""What usage may be grouped by."""


@dataclasses.dataclass(frozen=True)
class UsageQuery:
    """Which charges to sum and how to group them; '' or None means no filter."""

    group_by: str = "project"
    project_id: str = ""
    box_id: str = ""
    model: str = ""
    currency: str = ""
    since: dt.datetime | None = None
    until: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class UsageGroup:
    """The charges of one group: how many, how much (nanos), in which currency."""

    group: str
    count: int
    nanos: int
    currency: str


class CostLedger:
    """The ledger's statements (the orchestrator's database)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._locks = engine.dialect.name == "postgresql"

    async def open(
        self, *, asset_id: str, attempt: int, box_id: str, model: str, key_id: str, cost: AssetCost
    ) -> None:
        """Records an attempt's estimate, unless it would take its project's or box's spend past a
        budget: then BudgetExceeded, naming what remains and what is needed. Done before the
        attempt's asset (or new attempt) is written, so a refused generation leaves nothing."""
        estimate = to_nanos(Decimal(cost.estimated))
        now = utcnow()
        async with self._engine.begin() as connection:
            box = (
                await connection.execute(
                    select(_BOXES.c.project_id, _BOXES.c.budget).where(_BOXES.c.id == box_id)
                )
            ).first()
            if box is None:
                raise NotFound(f"box {box_id!r} not found")
            project_id = str(box.project_id)
            project = (
                await connection.execute(
                    select(_PROJECTS.c.name, _PROJECTS.c.budget).where(_PROJECTS.c.id == project_id)
                )
            ).first()
            limits = [
                (
                    f"project {project.name}" if project else f"project {project_id}",
                    _LEDGER.c.project_id,
                    project_id,
                    project.budget if project else None,
                ),
                (f"box {box_id}", _LEDGER.c.box_id, box_id, box.budget),
            ]
            if any(budget is not None for *_, budget in limits):
                await self._lock(connection, project_id, box_id)
                for label, column, value, budget in limits:
                    if budget is None:
                        continue
                    held = await self._held(connection, column, value, cost.currency)
                    limit = to_nanos(parse_amount(budget, "budget"))
                    if held + estimate > limit:
                        raise BudgetExceeded(
                            f"budget exceeded: {label} has {format_nanos(max(limit - held, 0))} "
                            f"{cost.currency} remaining of {format_nanos(limit)}, "
                            f"this generation needs {format_nanos(estimate)}"
                        )
            await connection.execute(
                insert(_LEDGER).values(
                    asset_id=asset_id,
                    attempt=attempt,
                    project_id=project_id,
                    box_id=box_id,
                    model=model,
                    key_id=key_id[:100],
                    currency=cost.currency,
                    estimated_nanos=estimate,
                    amount_nanos=estimate,
                    state=EntryState.ESTIMATED.value,
                    created_at=now,
                    updated_at=now,
                )
            )

    async def _lock(self, connection: AsyncConnection, project_id: str, box_id: str) -> None:
        if not self._locks:
            return  # SQLite serialises writers by itself
        # NO KEY UPDATE: it does not block the key-share locks of assets inserted into the box.
        for table, row_id in ((_PROJECTS, project_id), (_BOXES, box_id)):
            await connection.execute(
                select(table.c.id).where(table.c.id == row_id).with_for_update(key_share=True)
            )

    @staticmethod
    async def _held(connection: AsyncConnection, column: Any, value: str, currency: str) -> int:
        asset_exists = exists().where(assets_table.c.id == _LEDGER.c.asset_id)
        query = select(func.coalesce(func.sum(_LEDGER.c.amount_nanos), 0)).where(
            column == value,
            _LEDGER.c.currency == currency,
            or_(
                _LEDGER.c.state.in_([EntryState.RESERVED.value, EntryState.CHARGED.value]),
                and_(_LEDGER.c.state == EntryState.ESTIMATED.value, asset_exists),
            ),
        )
        return int((await connection.execute(query)).scalar_one())

    async def discard(self, asset_id: str, attempt: int) -> None:
        """Removes an estimate whose asset was never written (a repeated generate lost its race)."""
        async with self._autocommit.connect() as connection:
            await connection.execute(
                delete(_LEDGER).where(
                    _LEDGER.c.asset_id == asset_id,
                    _LEDGER.c.attempt == attempt,
                    _LEDGER.c.state == EntryState.ESTIMATED.value,
                )
            )

    async def reserve(self, asset_id: str, attempt: int) -> bool:
        """The attempt is being submitted: its estimate is reserved. Whether this call moved it."""
        return await self._move(asset_id, attempt, (EntryState.ESTIMATED.value,), EntryState.RESERVED)

    async def release(self, asset_id: str, attempt: int) -> bool:
        """Nothing is charged for the attempt (failed, canceled before submission, cleared)."""
        return await self._move(asset_id, attempt, _OPEN, EntryState.RELEASED, amount_nanos=0)

    async def settle(self, asset_id: str, attempt: int, amount: Decimal) -> bool:
        """The attempt is charged ``amount``; counted in ``assetgen_spend_total`` once."""
        nanos = to_nanos(amount)
        async with self._autocommit.connect() as connection:
            row = (
                await connection.execute(
                    _moved(asset_id, attempt, _OPEN, EntryState.CHARGED, amount_nanos=nanos).returning(
                        _LEDGER.c.project_id, _LEDGER.c.model, _LEDGER.c.currency
                    )
                )
            ).first()
        if row is None:
            return False
        SPEND.labels(row.project_id, row.model, row.currency).inc(nanos / NANOS_PER_UNIT)
        return True

    async def _move(
        self, asset_id: str, attempt: int, sources: tuple[str, ...], target: EntryState, **values: Any
    ) -> bool:
        async with self._autocommit.connect() as connection:
            result = await connection.execute(_moved(asset_id, attempt, sources, target, **values))
        return bool(result.rowcount == 1)

    async def entries(self, asset_id: str) -> list[dict[str, Any]]:
        """Every entry of an asset, by attempt (for operators and tests)."""
        async with self._autocommit.connect() as connection:
            rows = await connection.execute(
                select(_LEDGER).where(_LEDGER.c.asset_id == asset_id).order_by(_LEDGER.c.attempt)
            )
            return [dict(row) for row in rows.mappings()]

    async def usage(self, query: UsageQuery) -> list[UsageGroup]:
        """The charged entries matching ``query``, summed per group and currency, by group."""
        if query.group_by not in GROUPS:
            raise InvalidArgument(f"group_by must be one of {', '.join(GROUPS)}, got {query.group_by!r}")
        group = self._group_column(query.group_by)
        statement = (
            select(group.label("group"), _LEDGER.c.currency, func.count(), func.sum(_LEDGER.c.amount_nanos))
            .where(_LEDGER.c.state == EntryState.CHARGED.value)
            .group_by(group, _LEDGER.c.currency)
            .order_by(group, _LEDGER.c.currency)
        )
        for column, value in (
            (_LEDGER.c.project_id, query.project_id),
            (_LEDGER.c.box_id, query.box_id),
            (_LEDGER.c.model, query.model),
            (_LEDGER.c.currency, query.currency),
        ):
            if value:
                statement = statement.where(column == value)
        if query.since is not None:
            statement = statement.where(_LEDGER.c.settled_at >= query.since)
        if query.until is not None:
            statement = statement.where(_LEDGER.c.settled_at < query.until)
        async with self._autocommit.connect() as connection:
            rows = (await connection.execute(statement)).all()
        return [
            UsageGroup(str(group), int(count), int(total or 0), str(currency))
            for group, currency, count, total in rows
        ]

    def _group_column(self, group_by: str) -> Any:
        if group_by == "day":
            if self._locks:  # PostgreSQL
                return func.to_char(func.timezone("UTC", _LEDGER.c.settled_at), "YYYY-MM-DD")
            return func.substr(cast(_LEDGER.c.settled_at, String), 1, 10)
        return {
            "project": _LEDGER.c.project_id,
            "box": _LEDGER.c.box_id,
            "model": _LEDGER.c.model,
            "key": _LEDGER.c.key_id,
        }[group_by]


def _moved(asset_id: str, attempt: int, sources: tuple[str, ...], target: EntryState, **values: Any) -> Any:
    """The UPDATE moving an entry from one of ``sources`` to ``target``: a no-op once it moved."""
    now = utcnow()
    settled = {"settled_at": now} if target in (EntryState.CHARGED, EntryState.RELEASED) else {}
    return (
        update(_LEDGER)
        .where(_LEDGER.c.asset_id == asset_id, _LEDGER.c.attempt == attempt, _LEDGER.c.state.in_(sources))
        .values(state=target.value, updated_at=now, **settled, **values)
    )
