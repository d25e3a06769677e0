"""The submission ledger: what makes SubmitTask idempotent per (asset_id, attempt).

The intent is written (SENDING) *before* the provider is called and the outcome (SENT, with the task
status) right after. A repeated call finding SENT gets the stored status without a provider call; one
finding SENDING means an earlier call died mid-flight, so whether the provider accepted the task is
unknown and the adapter refuses to risk a duplicate (paid) generation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from assetgen_provider_adapter.db import SubmissionRow, utcnow
from assetgen_runtime.errors import FailedPrecondition

__all__ = ["SENDING", "SENT", "Limits", "SubmissionLedger"]

logger = logging.getLogger(__name__)

SENDING = "SENDING"
SENT = "SENT"


@dataclass(frozen=True)
class Limits:
    """A provider's limits as the ledger enforces them; zero means no limit."""

    max_concurrency: int = 0
    submit_count: int = 0
    submit_period: float = 0.0
    retry_seconds: float = 2.0

    @property
    def any(self) -> bool:
        """Whether there is anything to enforce."""
        return bool(self.max_concurrency or self.submit_count)


class SubmissionLedger:
    """Records submissions in the catalog database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def begin(self, asset_id: str, attempt: int, model_id: str, provider_id: str = "") -> str | None:
        """Claims (asset_id, attempt) as SENDING and returns None, or returns a SENT call's status JSON.

        Raises FailedPrecondition when an earlier call claimed it and never recorded an outcome.
        """
        # Two rounds: a claim can vanish between our failed insert and our read (abandon()).
        for _ in range(2):
            now = utcnow()
            async with self._sessions() as session:
                session.add(
                    SubmissionRow(
                        asset_id=asset_id,
                        attempt=attempt,
                        model_id=model_id,
                        provider_id=provider_id,
                        active=True,
                        state=SENDING,
                        task_id="",
                        status_json="",
                        created_at=now,
                        updated_at=now,
                    )
                )
                try:
                    await session.commit()
                    return None
                except IntegrityError:
                    await session.rollback()
                row = (
                    await session.execute(
                        select(SubmissionRow).where(
                            SubmissionRow.asset_id == asset_id, SubmissionRow.attempt == attempt
                        )
                    )
                ).scalar_one_or_none()
            if row is None:
                continue
            if row.state == SENT:
                return row.status_json
            raise FailedPrecondition(
                f"submission of asset {asset_id} attempt {attempt} was started at "
                f"{row.created_at.isoformat()} "
                "but its outcome was never recorded (the call was interrupted); the provider may or may not "
                "have the task, so it will not be submitted again; use a new attempt"
            )
        raise FailedPrecondition(f"submission of asset {asset_id} attempt {attempt} is contended; retry")

    async def record(
        self, asset_id: str, attempt: int, task_id: str, status_json: str, *, running: bool = True
    ) -> None:
        """Marks the submission SENT with the provider's answer; ``running`` while not terminal."""
        async with self._sessions() as session:
            await session.execute(
                update(SubmissionRow)
                .where(SubmissionRow.asset_id == asset_id, SubmissionRow.attempt == attempt)
                .values(
                    state=SENT, task_id=task_id, status_json=status_json, active=running, updated_at=utcnow()
                )
            )
            await session.commit()

    async def finish(self, asset_id: str, task_id: str) -> None:
        """Marks a task terminal at its provider, freeing its concurrency slot."""
        async with self._sessions() as session:
            await session.execute(
                update(SubmissionRow)
                .where(
                    SubmissionRow.asset_id == asset_id,
                    SubmissionRow.task_id == task_id,
                    SubmissionRow.active.is_(True),
                )
                .values(active=False, updated_at=utcnow())
            )
            await session.commit()

    async def hold_back(self, provider_id: str, limits: Limits, *, running_for: float) -> float:
        """Seconds to wait before this provider may get another task, 0 when it may now.

        Counts every replica's claims and sends, the caller's own claim included (claim first, then
        count: of two replicas racing for the last slot at least one sees the other, so the limit
        holds; both may back off and retry). A task counts as running until a poll saw it terminal
        or ``running_for`` seconds (the poll deadline) passed since it was sent.
        """
        now = utcnow()
        async with self._sessions() as session:
            if limits.max_concurrency:
                running = await session.scalar(
                    select(func.count())
                    .select_from(SubmissionRow)
                    .where(
                        SubmissionRow.provider_id == provider_id,
                        SubmissionRow.active.is_(True),
                        SubmissionRow.created_at > now - timedelta(seconds=running_for),
                    )
                )
                if (running or 0) > limits.max_concurrency:
                    return limits.retry_seconds
            if limits.submit_count:
                window_start = now - timedelta(seconds=limits.submit_period)
                rows = await session.execute(
                    select(SubmissionRow.created_at)
                    .where(SubmissionRow.provider_id == provider_id, SubmissionRow.created_at > window_start)
                    .order_by(SubmissionRow.created_at)
                )
                sent = [row[0] for row in rows]
                if len(sent) > limits.submit_count:
                    # The window frees a place when its oldest send ages out.
                    return max(0.05, (sent[0] - window_start).total_seconds())
        return 0.0

    async def abandon(self, asset_id: str, attempt: int) -> None:
        """Drops a SENDING claim whose request never reached the provider, so a later call may send it."""
        async with self._sessions() as session:
            await session.execute(
                delete(SubmissionRow).where(
                    SubmissionRow.asset_id == asset_id,
                    SubmissionRow.attempt == attempt,
                    SubmissionRow.state == SENDING,
                )
            )
            await session.commit()
