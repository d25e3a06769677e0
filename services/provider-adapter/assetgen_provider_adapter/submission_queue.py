"""The queue of submissions waiting for a free slot at their provider: fair, and shared by every replica.

A submission that finds no free slot at its provider (its pool's keys full, the provider at its overall
limit, or its profile's ``max_concurrency`` or ``submit_rate`` reached) waits in ``submission_queue``
(the catalog database every replica shares). The order is round-robin across projects and first in,
first out within one: a waiter's turn is its rank among its project's submissions of the last ``window``
seconds, started or waiting, by when their assets were accepted (asset ids sort by that, whichever
replica's call arrived first), and waiters go by turn, then age. So the first waiter of every project
comes before any project's second, a project that was just served waits behind one that was not, and a
batch of a thousand cannot starve another project's single job. A waiter may start when its place is
below the number of free slots; the others are held back with their position and ask again.

A waiter that stops asking (its asset was canceled or deleted, its job moved on) drops out after
``stale_after`` seconds without a question, so nobody waits behind it for ever. Waiters ask again
by their place (:func:`retry_seconds`): the next round often, so a freed slot is soon taken, later
rounds less, so a thousand waiters do not ask a thousand times every few seconds.
"""

from __future__ import annotations

from datetime import timedelta
from typing import cast

from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from assetgen_provider_adapter.db import utcnow

__all__ = ["HEAD_RETRY_SECONDS", "LONGEST_RETRY_SECONDS", "SubmissionQueue", "retry_seconds"]

HEAD_RETRY_SECONDS = 0.5
"""How soon the waiters of the next round (the first ``capacity`` places) ask again."""
LONGEST_RETRY_SECONDS = 30.0
"""The longest a waiter goes without asking: well inside ``stale_after``, so it keeps its place."""


def retry_seconds(place: int, capacity: int) -> float:
    """How soon a waiter at ``place`` (1: next to start) asks again when ``capacity`` tasks may run
    at once: half a second per round of slots ahead of it (places 1 to capacity: one round), capped.

    A waiter's place only shrinks while it waits, so asking later the farther back it is costs it
    nothing: it moves up a round at most once per task ending, and asks again before it is next.
    """
    rounds = -(-max(place, 1) // max(capacity, 1))
    return min(HEAD_RETRY_SECONDS * rounds, LONGEST_RETRY_SECONDS)


_QUEUE = Table(
    "submission_queue",
    MetaData(),
    Column("asset_id", String(64), primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("provider_id", String(64), nullable=False),
    Column("project", String(64), nullable=False),
    Column("enqueued_at", DateTime(timezone=True), nullable=False),
    Column("asked_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=True),
)


class SubmissionQueue:
    """Waiters for a provider's free slots (see the module docstring)."""

    def __init__(self, engine: AsyncEngine, *, stale_after: float = 60.0, window: float = 600.0) -> None:
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._stale_after = stale_after
        self._window = window

    async def place(self, provider_id: str, asset_id: str, attempt: int, project: str) -> tuple[int, int]:
        """Joins the queue (or says it is still waiting): its 0-based place, and how many wait."""
        placed = await self._place(provider_id, asset_id, attempt, project, join=True)
        assert placed is not None  # joined
        return placed

    async def waiting_place(self, provider_id: str, asset_id: str, attempt: int) -> tuple[int, int] | None:
        """Like :meth:`place` for a submission already waiting (never started since it joined, so
        never sent); None when it is not waiting (it never joined, started, or was withdrawn)."""
        return await self._place(provider_id, asset_id, attempt, "", join=False)

    async def _place(
        self, provider_id: str, asset_id: str, attempt: int, project: str, *, join: bool
    ) -> tuple[int, int] | None:
        now = utcnow()
        async with self._autocommit.connect() as connection:
            mine = (_QUEUE.c.asset_id == asset_id, _QUEUE.c.attempt == attempt)
            asked = await connection.execute(
                update(_QUEUE).where(*mine).values(asked_at=now, started_at=None)
                if join
                else update(_QUEUE).where(*mine, _QUEUE.c.started_at.is_(None)).values(asked_at=now)
            )
            if asked.rowcount == 0 and not join:
                return None
            if asked.rowcount == 0:
                try:
                    await connection.execute(
                        insert(_QUEUE).values(
                            asset_id=asset_id,
                            attempt=attempt,
                            provider_id=provider_id,
                            project=project,
                            enqueued_at=now,
                            asked_at=now,
                        )
                    )
                except IntegrityError:
                    pass  # joined by a concurrent call for the same attempt
            waiting = and_(
                _QUEUE.c.started_at.is_(None),
                _QUEUE.c.asked_at > now - timedelta(seconds=self._stale_after),
            )
            recent = _QUEUE.c.started_at > now - timedelta(seconds=self._window)
            turn = (
                func.row_number()
                .over(partition_by=_QUEUE.c.project, order_by=_QUEUE.c.asset_id)
                .label("turn")
            )
            counted = (
                select(_QUEUE.c.asset_id, _QUEUE.c.attempt, _QUEUE.c.started_at, turn)
                .where(_QUEUE.c.provider_id == provider_id, or_(waiting, recent))
                .subquery()
            )
            # Its place is counted by the database: a thousand waiters asking must not each fetch
            # the whole queue.
            ranked = (
                select(
                    counted.c.asset_id,
                    counted.c.attempt,
                    func.row_number()
                    .over(order_by=(counted.c.turn, counted.c.asset_id, counted.c.attempt))
                    .label("place"),
                    func.count().over().label("waiting"),
                )
                .where(counted.c.started_at.is_(None))
                .subquery()
            )
            row = (
                await connection.execute(
                    select(ranked.c.place, ranked.c.waiting).where(
                        ranked.c.asset_id == asset_id, ranked.c.attempt == attempt
                    )
                )
            ).first()
            if row is None:  # not counted (a concurrent leave or withdraw): behind everyone
                waiting_now = await connection.execute(select(func.count()).select_from(ranked))
                total = int(cast(int, waiting_now.scalar_one()))
                return total, total + 1
        return int(row.place) - 1, int(row.waiting)

    async def leave(self, provider_id: str, asset_id: str, attempt: int) -> None:
        """The submission started: it waits no more, and counts for its project's next turns a while."""
        now = utcnow()
        async with self._autocommit.connect() as connection:
            await connection.execute(
                update(_QUEUE)
                .where(_QUEUE.c.asset_id == asset_id, _QUEUE.c.attempt == attempt)
                .values(started_at=now)
            )
            await connection.execute(
                delete(_QUEUE).where(
                    _QUEUE.c.provider_id == provider_id,
                    _QUEUE.c.started_at < now - timedelta(seconds=self._window),
                )
            )

    async def withdraw(self, asset_id: str) -> None:
        """The asset was canceled or deleted while it waited: it leaves the queue now."""
        async with self._autocommit.connect() as connection:
            await connection.execute(
                delete(_QUEUE).where(_QUEUE.c.asset_id == asset_id, _QUEUE.c.started_at.is_(None))
            )

    async def length(self, provider_id: str) -> int:
        """How many submissions wait for the provider now."""
        now = utcnow()
        async with self._autocommit.connect() as connection:
            count = await connection.execute(
                select(func.count()).where(
                    _QUEUE.c.provider_id == provider_id,
                    _QUEUE.c.started_at.is_(None),
                    _QUEUE.c.asked_at > now - timedelta(seconds=self._stale_after),
                )
            )
            return int(cast(int, count.scalar_one()))
