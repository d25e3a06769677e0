"""The submission ledger: what makes SubmitTask idempotent per (asset_id, attempt).

The claim is written first (WAITING: ours, not on the wire yet), turned SENDING right before the
request goes out, and the outcome (SENT, with the task status) written right after, or UNKNOWN when
the request went out and what came back does not say whether the provider took it (kept for an
operator, never released). A repeated call finding SENT gets the stored
status without a provider call; one finding UNKNOWN fails with :class:`SubmitOutcomeUnknown`, since
the adapter refuses to risk a duplicate (paid) generation. One finding SENDING looks at the age of the
last send: younger than the longest a submit can take, the first call may still be sending, so the
caller is told to retry later (:class:`SubmissionInProgress`); older, that call died mid-flight and
the outcome is unknown as well. Before the first request (while limits are checked and the request
is built) and between a definite refusal (a 429, a refused connect) and the retry the entry is
WAITING, off the wire: a call dying then left nothing at the provider, so once the wait is over-long
another call takes the claim over and sends.

Every write is a single statement run in autocommit: one database round trip, durable when it
returns, so the claim, and its SENDING, are on disk before the provider request leaves. SQLAlchemy
Core statements are built once and only their parameters change, so their compiled form is cached.
On PostgreSQL the claims, and the outcomes, of submissions made within the write linger of each
other (the steps of one pull) are committed together, as one statement over arrays of rows
(``ASSETGEN_DB_WRITE_LINGER_MS``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from assetgen_provider_adapter.db import SubmissionRow, utcnow
from assetgen_provider_adapter.errors import SubmissionInProgress, SubmitOutcomeUnknown
from assetgen_provider_adapter.key_pool import Slots
from assetgen_runtime.batching import GROUP_COMMIT_LINGER, GroupCommit
from assetgen_runtime.database import array_parameters, array_rows

__all__ = ["SENDING", "SENT", "UNKNOWN", "WAITING", "Limits", "SubmissionLedger", "SubmissionWire"]

logger = logging.getLogger(__name__)

SENDING = "SENDING"
SENT = "SENT"
UNKNOWN = "UNKNOWN"
WAITING = "WAITING"

_TABLE = cast(Table, SubmissionRow.__table__)
_COLUMNS = _TABLE.c
_CLAIM_FIELDS = (
    "asset_id",
    "attempt",
    "model_id",
    "provider_id",
    "active",
    "state",
    "task_id",
    "status_json",
    "created_at",
    "updated_at",
)
_RECORD_FIELDS = {
    "key_asset": _COLUMNS.asset_id.type,
    "key_attempt": _COLUMNS.attempt.type,
    "task_id": _COLUMNS.task_id.type,
    "status_json": _COLUMNS.status_json.type,
    "active": _COLUMNS.active.type,
    "updated_at": _COLUMNS.updated_at.type,
}

_FIND = select(_COLUMNS.state, _COLUMNS.status_json, _COLUMNS.created_at, _COLUMNS.updated_at).where(
    _COLUMNS.asset_id == bindparam("key_asset"), _COLUMNS.attempt == bindparam("key_attempt")
)
_KEY = (_COLUMNS.asset_id == bindparam("key_asset"), _COLUMNS.attempt == bindparam("key_attempt"))
# Off the wire after a definite refusal; on it (only if nobody took the claim over) to send or retry.
_WAIT = (
    update(_TABLE)
    .where(*_KEY, _COLUMNS.state == SENDING)
    .values(state=WAITING, updated_at=bindparam("updated_at"))
)
_RESEND = (
    update(_TABLE)
    .where(*_KEY, _COLUMNS.state == WAITING, _COLUMNS.updated_at == bindparam("since"))
    .values(state=SENDING, updated_at=bindparam("updated_at"))
)
# A claim whose call stopped off the wire, taken over by another call (off the wire until it sends).
_TAKE_OVER = (
    update(_TABLE)
    .where(*_KEY, _COLUMNS.state == WAITING, _COLUMNS.updated_at == bindparam("since"))
    .values(updated_at=bindparam("updated_at"))
)
_RECORD = (
    update(_TABLE)
    .where(_COLUMNS.asset_id == bindparam("key_asset"), _COLUMNS.attempt == bindparam("key_attempt"))
    .values(
        state=SENT,
        task_id=bindparam("task_id"),
        status_json=bindparam("status_json"),
        active=bindparam("active"),
        updated_at=bindparam("updated_at"),
    )
)
_LOSE = (
    update(_TABLE)
    .where(
        _COLUMNS.asset_id == bindparam("key_asset"),
        _COLUMNS.attempt == bindparam("key_attempt"),
        _COLUMNS.state == SENDING,
    )
    .values(state=UNKNOWN, updated_at=bindparam("updated_at"))
)
_FINISH = (
    update(_TABLE)
    .where(
        tuple_(_COLUMNS.asset_id, _COLUMNS.task_id).in_(bindparam("keys", expanding=True)),
        _COLUMNS.active.is_(True),
    )
    .values(active=False, updated_at=bindparam("updated_at"))
)
_ABANDON = delete(_TABLE).where(
    _COLUMNS.asset_id == bindparam("key_asset"),
    _COLUMNS.attempt == bindparam("key_attempt"),
    _COLUMNS.state.in_((SENDING, WAITING)),
)
_RUNNING = (
    select(func.count())
    .select_from(_TABLE)
    .where(
        _COLUMNS.provider_id == bindparam("provider"),
        _COLUMNS.active.is_(True),
        _COLUMNS.created_at > bindparam("since"),
    )
)
_CLAIMS = array_rows({field: _COLUMNS[field].type for field in _CLAIM_FIELDS})
_CLAIM_MANY = (
    postgresql.insert(_TABLE)
    .from_select(list(_CLAIM_FIELDS), select(*_CLAIMS.c))
    .on_conflict_do_nothing(index_elements=[_COLUMNS.asset_id, _COLUMNS.attempt])
    .returning(_COLUMNS.asset_id, _COLUMNS.attempt)
)
_OUTCOMES = array_rows(_RECORD_FIELDS)
_RECORD_MANY = (
    update(_TABLE)
    .where(_COLUMNS.asset_id == _OUTCOMES.c.key_asset, _COLUMNS.attempt == _OUTCOMES.c.key_attempt)
    .values(
        state=SENT,
        task_id=_OUTCOMES.c.task_id,
        status_json=_OUTCOMES.c.status_json,
        active=_OUTCOMES.c.active,
        updated_at=_OUTCOMES.c.updated_at,
    )
)
_RESEND_FIELDS = {
    "key_asset": _COLUMNS.asset_id.type,
    "key_attempt": _COLUMNS.attempt.type,
    "since": _COLUMNS.updated_at.type,
    "updated_at": _COLUMNS.updated_at.type,
}
_RESENDS = array_rows(_RESEND_FIELDS, name="resends")
_RESEND_MANY = (
    update(_TABLE)
    .where(
        _COLUMNS.asset_id == _RESENDS.c.key_asset,
        _COLUMNS.attempt == _RESENDS.c.key_attempt,
        _COLUMNS.state == WAITING,
        _COLUMNS.updated_at == _RESENDS.c.since,
    )
    .values(state=SENDING, updated_at=_RESENDS.c.updated_at)
    .returning(_COLUMNS.asset_id, _COLUMNS.attempt)
)
_SENT_SINCE = select(func.count(), func.min(_COLUMNS.created_at)).where(
    _COLUMNS.provider_id == bindparam("provider"), _COLUMNS.created_at > bindparam("since")
)


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
    """Records submissions in the catalog database (PostgreSQL or SQLite); ``clock`` gives now in UTC."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], datetime] = utcnow,
        write_linger: float = GROUP_COMMIT_LINGER,
    ) -> None:
        self._engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._clock = clock
        # When this process's calls claimed their submissions: what their first send turns SENDING.
        self._claimed: dict[tuple[str, int], datetime] = {}
        # ON CONFLICT DO NOTHING is spelled alike on both, but each dialect has its own construct.
        insert = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
        self._claim = (
            insert(_TABLE)
            .on_conflict_do_nothing(index_elements=[_COLUMNS.asset_id, _COLUMNS.attempt])
            .returning(_COLUMNS.asset_id)
        )
        self._claims: GroupCommit[dict[str, Any], bool] | None = None
        self._outcomes: GroupCommit[dict[str, Any], None] | None = None
        self._resends: GroupCommit[dict[str, Any], bool] | None = None
        if engine.dialect.name == "postgresql" and write_linger > 0:
            self._claims = GroupCommit(
                together=self._claim_together,
                alone=self._claim_alone,
                key=lambda claim: (claim["asset_id"], claim["attempt"]),
                linger=write_linger,
            )
            self._outcomes = GroupCommit(
                together=self._record_together,
                alone=self._record_alone,
                key=lambda outcome: (outcome["key_asset"], outcome["key_attempt"]),
                linger=write_linger,
            )
            # Submissions claimed together go on the wire together: their SENDING writes are one too.
            self._resends = GroupCommit(
                together=self._resend_together,
                alone=self._resend_alone,
                key=lambda resend: (resend["key_asset"], resend["key_attempt"]),
                linger=write_linger,
            )

    async def _execute(self, statement: Any, parameters: dict[str, Any]) -> list[Any]:
        """Runs one statement on its own (autocommit); the rows it returns, if any."""
        async with self._engine.connect() as connection:
            result = await connection.execute(statement, parameters)
            return list(result.all()) if result.returns_rows else []

    async def _changed(self, statement: Any, parameters: dict[str, Any]) -> bool:
        """Runs one update on its own (autocommit); whether it changed a row."""
        async with self._engine.connect() as connection:
            result = await connection.execute(statement, parameters)
            return bool(result.rowcount)

    async def _claim_alone(self, claim: dict[str, Any]) -> bool:
        return bool(await self._execute(self._claim, claim))

    async def _claim_together(self, claims: list[dict[str, Any]]) -> list[bool]:
        rows = await self._execute(_CLAIM_MANY, array_parameters(claims, _CLAIM_FIELDS))
        claimed = {(asset_id, attempt) for asset_id, attempt in rows}
        return [(claim["asset_id"], claim["attempt"]) in claimed for claim in claims]

    async def _record_alone(self, outcome: dict[str, Any]) -> None:
        await self._execute(_RECORD, outcome)

    async def _record_together(self, outcomes: list[dict[str, Any]]) -> list[None]:
        await self._execute(_RECORD_MANY, array_parameters(outcomes, _RECORD_FIELDS))
        return [None] * len(outcomes)

    async def _resend_alone(self, resend: dict[str, Any]) -> bool:
        return await self._changed(_RESEND, resend)

    async def _resend_together(self, resends: list[dict[str, Any]]) -> list[bool]:
        rows = await self._execute(_RESEND_MANY, array_parameters(resends, _RESEND_FIELDS))
        sent = {(asset_id, attempt) for asset_id, attempt in rows}
        return [(resend["key_asset"], resend["key_attempt"]) in sent for resend in resends]

    async def begin(
        self,
        asset_id: str,
        attempt: int,
        model_id: str,
        provider_id: str = "",
        *,
        in_progress_for: float = 0.0,
    ) -> str | None:
        """Claims (asset_id, attempt) (WAITING: not on the wire yet) and returns None, or returns a SENT
        call's status JSON. The call's :class:`SubmissionWire` puts the claim on the wire when it sends.

        Another call's claim younger than ``in_progress_for`` seconds raises
        :class:`SubmissionInProgress` (retry later); an older one SENDING :class:`SubmitOutcomeUnknown`,
        an older one WAITING (its call stopped before sending, or after a refusal) is taken over.
        """
        # Two rounds: a claim can vanish between our refused insert and our read (abandon()).
        for _ in range(2):
            now = self._clock()
            claim = {
                "asset_id": asset_id,
                "attempt": attempt,
                "model_id": model_id,
                "provider_id": provider_id,
                "active": True,
                "state": WAITING,
                "task_id": "",
                "status_json": "",
                "created_at": now,
                "updated_at": now,
            }
            claimed = await (self._claims.write(claim) if self._claims else self._claim_alone(claim))
            if claimed:
                self._claimed[(asset_id, attempt)] = now
                return None
            rows = await self._execute(_FIND, {"key_asset": asset_id, "key_attempt": attempt})
            if not rows:
                continue
            state, status_json, created_at, updated_at = rows[0]
            if state == SENT:
                return str(status_json)
            if state == UNKNOWN:
                raise SubmitOutcomeUnknown(
                    f"submission of asset {asset_id} attempt {attempt} was sent at {created_at.isoformat()} "
                    "but the provider's answer was lost; the provider may or may not have the task, so it "
                    "will not be submitted again; use a new attempt"
                )
            if state == WAITING and now - updated_at >= timedelta(seconds=in_progress_for):
                # Its call stopped before sending or while waiting to retry a refusal: nothing is at
                # the provider.
                taken = {"key_asset": asset_id, "key_attempt": attempt, "since": updated_at}
                if await self._changed(_TAKE_OVER, {**taken, "updated_at": now}):
                    logger.info(
                        "took over a submission whose call stopped off the wire",
                        extra={"asset_id": asset_id, "attempt": attempt},
                    )
                    self._claimed[(asset_id, attempt)] = now
                    return None
                continue
            if now - updated_at < timedelta(seconds=in_progress_for):
                raise SubmissionInProgress(
                    f"submission of asset {asset_id} attempt {attempt} is in progress; retry (another call "
                    f"claimed it at {created_at.isoformat()} and may still be waiting for the provider)"
                )
            raise SubmitOutcomeUnknown(
                f"submission of asset {asset_id} attempt {attempt} was started at {created_at.isoformat()} "
                "but its outcome was never recorded (the call was interrupted); the provider may or may not "
                "have the task, so it will not be submitted again; use a new attempt"
            )
        raise SubmissionInProgress(f"submission of asset {asset_id} attempt {attempt} is contended; retry")

    def claimed_at(self, asset_id: str, attempt: int) -> datetime | None:
        """When this process claimed (asset_id, attempt) and has not sent it since; None otherwise.
        Asked once, by the call's :class:`SubmissionWire`."""
        return self._claimed.pop((asset_id, attempt), None)

    async def record(
        self, asset_id: str, attempt: int, task_id: str, status_json: str, *, running: bool = True
    ) -> None:
        """Marks the submission SENT with the provider's answer; ``running`` while not terminal."""
        self._claimed.pop((asset_id, attempt), None)
        outcome = {
            "key_asset": asset_id,
            "key_attempt": attempt,
            "task_id": task_id,
            "status_json": status_json,
            "active": running,
            "updated_at": self._clock(),
        }
        await (self._outcomes.write(outcome) if self._outcomes else self._record_alone(outcome))

    async def record_unknown(self, asset_id: str, attempt: int) -> None:
        """Marks a claim whose request was sent but whose answer never came: repeats fail at once.

        The task may exist at the provider, so it keeps counting against the provider's limits.
        """
        self._claimed.pop((asset_id, attempt), None)
        await self._execute(
            _LOSE, {"key_asset": asset_id, "key_attempt": attempt, "updated_at": self._clock()}
        )

    async def refused(self, asset_id: str, attempt: int) -> datetime:
        """Marks a claim off the wire (WAITING) after a definite refusal; returns when, for :meth:`resend`."""
        now = self._clock()
        await self._changed(_WAIT, {"key_asset": asset_id, "key_attempt": attempt, "updated_at": now})
        return now

    async def resend(self, asset_id: str, attempt: int, since: datetime) -> None:
        """Puts a WAITING claim back on the wire (SENDING) before it is retried.

        Raises :class:`SubmissionInProgress` when another call took the claim over meanwhile.
        """
        parameters = {
            "key_asset": asset_id,
            "key_attempt": attempt,
            "since": since,
            "updated_at": self._clock(),
        }
        resent = await (self._resends.write(parameters) if self._resends else self._resend_alone(parameters))
        if not resent:
            raise SubmissionInProgress(
                f"submission of asset {asset_id} attempt {attempt} was taken over by another call; retry"
            )

    async def finish(self, tasks: Collection[tuple[str, str]]) -> None:
        """Marks tasks, as (asset_id, task_id), terminal at their provider, freeing their concurrency slots.

        One statement for them all: the tasks a PollTasks call saw finish are marked together.
        """
        if tasks:
            await self._execute(_FINISH, {"keys": list(tasks), "updated_at": self._clock()})

    async def hold_back(self, provider_id: str, limits: Limits, *, running_for: float) -> float:
        """Seconds to wait before this provider may get another task, 0 when it may now.

        Counts every replica's claims and sends, the caller's own claim included (claim first, then
        count: of two replicas racing for the last slot at least one sees the other, so the limit
        holds; both may back off and retry). A task counts as running until a poll saw it terminal
        or ``running_for`` seconds (the poll deadline) passed since it was sent.
        """
        now = self._clock()
        if limits.max_concurrency:
            rows = await self._execute(
                _RUNNING, {"provider": provider_id, "since": now - timedelta(seconds=running_for)}
            )
            if rows[0][0] > limits.max_concurrency:
                return limits.retry_seconds
        if limits.submit_count:
            window_start = now - timedelta(seconds=limits.submit_period)
            rows = await self._execute(_SENT_SINCE, {"provider": provider_id, "since": window_start})
            sent, oldest = rows[0]
            if sent > limits.submit_count:
                # The window frees a place when its oldest send ages out.
                return max(0.05, (oldest - window_start).total_seconds())
        return 0.0

    async def free_slots(
        self, provider_id: str, limits: Limits, *, running_for: float, claimed: bool = True
    ) -> Slots | None:
        """How many more tasks the provider's profile limits let start now, and how many at most (its
        ``max_concurrency``, or its ``submit_rate``'s count per window, the smaller where both are
        set); None when the profile limits nothing. ``claimed``: the caller's own claim is counted
        in the ledger and is not held against it. What the fair queue hands out; :meth:`hold_back`
        still decides, atomically, whether the one whose turn it is may go.
        """
        counts: list[tuple[int, int]] = []
        now = self._clock()
        if limits.max_concurrency:
            rows = await self._execute(
                _RUNNING, {"provider": provider_id, "since": now - timedelta(seconds=running_for)}
            )
            counts.append((limits.max_concurrency - (int(rows[0][0]) - claimed), limits.max_concurrency))
        if limits.submit_count:
            since = now - timedelta(seconds=limits.submit_period)
            rows = await self._execute(_SENT_SINCE, {"provider": provider_id, "since": since})
            counts.append((limits.submit_count - (int(rows[0][0]) - claimed), limits.submit_count))
        if not counts:
            return None
        return Slots(max(min(free for free, _ in counts), 0), min(capacity for _, capacity in counts))

    async def abandon(self, asset_id: str, attempt: int) -> None:
        """Drops a claim whose request never reached the provider (or was definitely refused), so a later
        call may send it."""
        self._claimed.pop((asset_id, attempt), None)
        await self._execute(_ABANDON, {"key_asset": asset_id, "key_attempt": attempt})


class SubmissionWire:
    """One submission's ``sending.WireLog`` over the ledger: SENDING while on the wire, WAITING before
    the first attempt (from the claim, made by :meth:`SubmissionLedger.begin` in this process) and
    between a refusal and the retry.
    """

    def __init__(self, ledger: SubmissionLedger, asset_id: str, attempt: int) -> None:
        self._ledger = ledger
        self._asset_id = asset_id
        self._attempt = attempt
        self._waiting_since: datetime | None = ledger.claimed_at(asset_id, attempt)

    async def sending(self) -> None:
        if self._waiting_since is not None:
            await self._ledger.resend(self._asset_id, self._attempt, self._waiting_since)
            self._waiting_since = None

    async def refused(self) -> None:
        self._waiting_since = await self._ledger.refused(self._asset_id, self._attempt)
