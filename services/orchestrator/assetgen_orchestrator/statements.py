"""The SQL statements the asset store runs on the job path, built once per shape with bound parameters.

Every step and poll of every generation runs one of these, so each is built once (per set of
changed columns) and cached: running one costs no statement construction, only a memoized
cache-key lookup. An asset write is an INSERT or a compare-and-set UPDATE on (id, version); a
write that moves the asset's status or step also earns a history row, which PostgreSQL inserts in
the same statement (a data-modifying CTE) — for one row (:func:`with_history`) or for a group of
rows sent as one array per column (:func:`group_with_history`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, Literal

from sqlalchemy import Insert, Update, bindparam, insert, select, update

from assetgen_orchestrator.models import assets_table, transitions_table
from assetgen_runtime.database import array_rows

__all__ = [
    "FIND_ASSETS",
    "TRANSITION_FIELDS",
    "AssetWrite",
    "WriteKind",
    "compare_and_set",
    "group_with_history",
    "insert_asset",
    "set_parameter",
    "transition_values",
    "with_history",
]

_ASSETS = assets_table
_TRANSITIONS = transitions_table

FIND_ASSETS = select(_ASSETS).where(_ASSETS.c.id.in_(bindparam("ids", expanding=True)))
"""The assets whose ids are in the list bound as ``ids``."""
TRANSITION_FIELDS = ("asset_id", "attempt", "from_status", "to_status", "step", "message", "at")
"""The columns of a history row that a write sets."""
_HISTORY_FIELDS = TRANSITION_FIELDS[1:]  # asset_id comes from the asset row written

WriteKind = Literal["insert", "update"]


def set_parameter(column: str) -> str:
    """The name of the bound parameter that carries a written column's new value."""
    return f"set_{column}"


def _history_parameter(field: str) -> str:
    return f"history_{field}"


@functools.lru_cache(maxsize=128)
def compare_and_set(columns: tuple[str, ...]) -> Update:
    """``UPDATE assets SET <columns> WHERE id = :row_id AND version = :row_version``, once per column set."""
    return (
        update(_ASSETS)
        .where(_ASSETS.c.id == bindparam("row_id"), _ASSETS.c.version == bindparam("row_version"))
        .values(
            {column: bindparam(set_parameter(column), type_=_ASSETS.c[column].type) for column in columns}
        )
    )


@functools.lru_cache(maxsize=1)
def insert_asset() -> Insert:
    """``INSERT INTO assets`` with every column bound."""
    return insert(_ASSETS).values(
        {column.key: bindparam(set_parameter(column.key), type_=column.type) for column in _ASSETS.columns}
    )


@functools.lru_cache(maxsize=128)
def with_history(statement: Insert | Update) -> Insert:
    """``statement`` and the history row it earns as one statement (PostgreSQL's data-modifying CTE).

    The history row is inserted only if the asset row was written, atomically, in one round trip.
    """
    changed = statement.returning(_ASSETS.c.id).cte("changed")
    values = (bindparam(_history_parameter(f), type_=_TRANSITIONS.c[f].type) for f in _HISTORY_FIELDS)
    return (
        insert(_TRANSITIONS)
        .from_select(["asset_id", *_HISTORY_FIELDS], select(changed.c.id, *values))
        .returning(_TRANSITIONS.c.id)
    )


@functools.lru_cache(maxsize=128)
def group_with_history(kind: WriteKind, columns: tuple[str, ...]) -> Insert:
    """Many rows' ``with_history(...)`` as one statement: the rows arrive as one array per column.

    Every row is inserted, or compare-and-set on its id and version, on its own; the history rows
    are inserted for exactly the asset rows written, and the statement returns their asset ids.
    A group must not name one asset twice (an UPDATE … FROM applies only one row to it).
    """
    keys = {"row_id": _ASSETS.c.id.type, "row_version": _ASSETS.c.version.type} if kind == "update" else {}
    rows = array_rows(
        {
            **keys,
            **{set_parameter(column): _ASSETS.c[column].type for column in columns},
            **{_history_parameter(field): _TRANSITIONS.c[field].type for field in _HISTORY_FIELDS},
        }
    )
    if kind == "update":
        written: Insert | Update = (
            update(_ASSETS)
            .where(_ASSETS.c.id == rows.c.row_id, _ASSETS.c.version == rows.c.row_version)
            .values({column: rows.c[set_parameter(column)] for column in columns})
        )
        row_id = rows.c.row_id
    else:
        written = insert(_ASSETS).from_select(
            list(columns), select(*(rows.c[set_parameter(c)] for c in columns)), include_defaults=False
        )
        row_id = rows.c[set_parameter("id")]
    changed = written.returning(_ASSETS.c.id).cte("changed")
    history = select(changed.c.id, *(rows.c[_history_parameter(field)] for field in _HISTORY_FIELDS))
    return (
        insert(_TRANSITIONS)
        .from_select(["asset_id", *_HISTORY_FIELDS], history.join_from(rows, changed, changed.c.id == row_id))
        .returning(_TRANSITIONS.c.asset_id)
    )


def transition_values(
    asset: Mapping[str, Any], previous_status: str, message: str, at: Any
) -> dict[str, Any]:
    """The history row of a write that leaves the asset as ``asset`` (its columns by name)."""
    return {
        "asset_id": asset["id"],
        "attempt": asset["attempt"],
        "from_status": previous_status,
        "to_status": asset["status"],
        "step": asset["step"],
        "message": message,
        "at": at,
    }


@dataclasses.dataclass(frozen=True)
class AssetWrite:
    """One asset INSERT or compare-and-set UPDATE with the history row it earns."""

    kind: WriteKind
    asset_id: str
    columns: tuple[str, ...]
    parameters: dict[str, Any]
    transition: dict[str, Any]

    @property
    def statement(self) -> Insert | Update:
        """The asset row's statement alone (its history row written apart)."""
        return insert_asset() if self.kind == "insert" else compare_and_set(self.columns)

    @property
    def shape(self) -> tuple[WriteKind, tuple[str, ...]]:
        """Writes of one shape can share a :func:`group_with_history` statement."""
        return (self.kind, self.columns)

    @property
    def bound(self) -> dict[str, Any]:
        """The parameters of ``with_history(statement)``: the row's and its history row's."""
        history = {_history_parameter(f): self.transition[f] for f in _HISTORY_FIELDS}
        return {**self.parameters, **history}
