"""The submission ledger: what makes SubmitTask idempotent per (asset_id, attempt).

The intent is written (SENDING) *before* the provider is called and the outcome (SENT, with the task
status) right after. A repeated call finding SENT gets the stored status without a provider call; one
finding SENDING means an earlier call died mid-flight, so whether the provider accepted the task is
unknown and the adapter refuses to risk a duplicate (paid) generation.
"""

from __future__ import annotations

import logging

from assetgen_runtime.errors import FailedPrecondition
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from assetgen_provider_adapter.db import SubmissionRow, utcnow

__all__ = ["SENDING", "SENT", "SubmissionLedger"]

logger = logging.getLogger(__name__)

SENDING = "SENDING"
SENT = "SENT"


class SubmissionLedger:
    """Records submissions in the catalog database."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def begin(self, asset_id: str, attempt: int, model_id: str) -> str | None:
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

    async def record(self, asset_id: str, attempt: int, task_id: str, status_json: str) -> None:
        """Marks the submission SENT with the provider's answer."""
        async with self._sessions() as session:
            await session.execute(
                update(SubmissionRow)
                .where(SubmissionRow.asset_id == asset_id, SubmissionRow.attempt == attempt)
                .values(state=SENT, task_id=task_id, status_json=status_json, updated_at=utcnow())
            )
            await session.commit()

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
