"""A provider's key pool: several API keys, each with its own concurrency, sharing the provider's work.

A provider with keys in its pool submits each task with one of them: among the enabled keys below
their ``max_concurrency`` (0: no limit of their own), the one with the fewest tasks in flight for
its ``weight``. The choice is claimed before it is counted — the submission's ledger entry names the
key, then the key's active entries are counted, and a key found over its limit is given up for the
next — so two replicas racing for a key's last slot cannot both take it. With every key full the
submission is held back (PENDING, asked again later), never sent to a provider that would answer 429.

The key that submitted a task is kept in its handle (``assetgen_key``), so every later call about
the task — poll, cancel, result download — uses that key (providers only show a task to its owner).
A disabled or deleted key takes no new work but keeps serving its tasks in flight (``draining``).

The key a provider was created with is its pool's first key (:func:`own_key_id`, named ``default``):
limited, disabled, deleted and cooled like any other, but its secret stays on the provider row, so
updating the provider's key rotates it (:func:`sync_own_key`). A provider with no key at all (an
unauthenticated API) has an empty pool and submits without one.

A provider may also limit its tasks in flight over all its keys (``providers.max_concurrency``); that
limit is counted over every replica's submissions like a key's, and its waiters queue the same way.
A 429 cools a key until ``cooled_until``, stored on its row so every replica leaves it alone.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timedelta
from typing import cast

from prometheus_client import Gauge
from sqlalchemy import Table, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from assetgen_provider_adapter.credentials import KeyReferences, SecretBox
from assetgen_provider_adapter.db import ProviderKeyRow, ProviderRow, SubmissionRow, utcnow
from assetgen_runtime.errors import FailedPrecondition, InvalidArgument, NotFound
from assetgen_runtime.ids import new_id

__all__ = [
    "HANDLE_KEY",
    "KEY_IN_FLIGHT",
    "OWN_KEY_NAME",
    "QUEUED",
    "ChosenKey",
    "KeyPool",
    "KeyView",
    "NoUsableKey",
    "PoolFull",
    "Slots",
    "own_key_id",
    "sync_own_key",
    "tightest",
]

logger = logging.getLogger(__name__)

HANDLE_KEY = "assetgen_key"
"""The task handle's entry naming the pool key that submitted the task."""

KEY_IN_FLIGHT = Gauge(
    "assetgen_provider_key_in_flight",
    "Tasks each pool key runs, as last counted for a submission, by provider and key name.",
    ["provider", "key"],
)
QUEUED = Gauge(
    "assetgen_provider_queued",
    "Submissions waiting for a free slot at the provider (its keys', its own or its profile's limits), "
    "as last counted.",
    ["provider"],
)

OWN_KEY_NAME = "default"
"""The name the provider's own key (the one it was created with) has in its pool."""

_SUBMISSIONS = cast(Table, SubmissionRow.__table__)
_KEYS = cast(Table, ProviderKeyRow.__table__)
_MAX_NAME = 200


class PoolFull(Exception):
    """Every enabled key of the provider's pool runs as many tasks as it may (or cools after a 429)."""


@dataclasses.dataclass(frozen=True)
class Slots:
    """A limited provider's tasks: how many more may start now, and how many may run at once."""

    free: int
    capacity: int


def tightest(*limits: Slots | None) -> Slots | None:
    """What several limits on one provider leave together: the fewest free slots and the smallest
    capacity among those that limit anything; None when none does."""
    given = [slots for slots in limits if slots is not None]
    if not given:
        return None
    return Slots(min(slots.free for slots in given), min(slots.capacity for slots in given))


class NoUsableKey(FailedPrecondition):
    """Every key of the provider's pool is disabled (refused by the provider, or by an admin)."""


def own_key_id(provider_id: str) -> str:
    """The stable id of the pool key that is the provider's own key."""
    return f"pkey_{provider_id}"


async def sync_own_key(session: AsyncSession, provider: ProviderRow, *, rotated: bool) -> None:
    """Keeps the provider's own pool key in step with its stored key, in the caller's transaction.

    A provider that has a key has its own key in the pool; one whose key was removed has it deleted
    (it drains). ``rotated`` (a new key was given): a key deleted or refused by the provider is
    usable again (the refusal was of the old key); one an admin disabled stays disabled.
    """
    has_key = bool(provider.api_key_encrypted or provider.api_key_ref)
    row = await session.get(ProviderKeyRow, own_key_id(provider.id))
    now = utcnow()
    if row is None:
        if has_key:
            session.add(
                ProviderKeyRow(
                    id=own_key_id(provider.id),
                    provider_id=provider.id,
                    name=OWN_KEY_NAME,
                    api_key_encrypted=None,
                    api_key_ref="",
                    max_concurrency=0,
                    weight=1,
                    enabled=True,
                    deleted=False,
                    last_error="",
                    created_at=provider.created_at,
                    updated_at=now,
                    provider_own=True,
                    cooled_until=None,
                )
            )
        return
    if not has_key:
        row.deleted, row.enabled, row.updated_at = True, False, now
    elif rotated:
        if row.deleted or row.last_error:
            row.deleted, row.enabled, row.last_error = False, True, ""
        row.cooled_until, row.updated_at = None, now


@dataclasses.dataclass(frozen=True)
class ChosenKey:
    """The pool key a submission goes out with (its id is recorded; its secret never leaves).

    ``secret`` is None for the provider's own key: the provider's credential (of any shape) is used.
    """

    id: str
    name: str
    secret: str | None = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class KeyView:
    """A pool key as admins see it: never its secret."""

    row: ProviderKeyRow
    in_flight: int

    @property
    def state(self) -> str:
        """``active``; ``draining`` (disabled or deleted, tasks still in flight); ``disabled``."""
        if self.row.enabled and not self.row.deleted:
            return "active"
        return "draining" if self.in_flight else "disabled"

    @property
    def cooling(self) -> bool:
        """Whether a 429 cools it now."""
        return self.row.cooled_until is not None and self.row.cooled_until > utcnow()


class KeyPool:
    """The pool keys of every provider, in the catalog database."""

    def __init__(
        self,
        engine: AsyncEngine,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        references: KeyReferences | None = None,
    ) -> None:
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._sessions = sessions
        self._box = box
        self._references = references
        self._secrets: dict[str, str | None] = {}

    # -- administration ---------------------------------------------------------------------

    async def create(
        self,
        provider_ref: str,
        name: str,
        *,
        api_key: str = "",
        api_key_ref: str = "",
        max_concurrency: int = 0,
        weight: int = 1,
    ) -> KeyView:
        """Adds a key to a provider's pool; exactly one of ``api_key`` and ``api_key_ref``."""
        name = name.strip()
        if not name or len(name) > _MAX_NAME:
            raise InvalidArgument(f"key name is required, at most {_MAX_NAME} characters")
        if bool(api_key) == bool(api_key_ref):
            raise InvalidArgument("give exactly one of api_key and api_key_ref")
        _check_limits(max_concurrency, weight)
        now = utcnow()
        async with self._sessions() as session:
            provider = await _provider(session, provider_ref)
            row = ProviderKeyRow(
                id=new_id("pkey"),
                provider_id=provider.id,
                name=name,
                api_key_encrypted=self._box.encrypt(api_key) if api_key else None,
                api_key_ref=KeyReferences.check(api_key_ref) if api_key_ref else "",
                max_concurrency=max_concurrency,
                weight=weight or 1,
                enabled=True,
                deleted=False,
                last_error="",
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            await session.commit()
        return KeyView(row, 0)

    async def list_keys(self, provider_ref: str) -> list[KeyView]:
        """The provider's keys (deleted ones while they drain), oldest first, with their tasks in flight."""
        async with self._sessions() as session:
            provider = await _provider(session, provider_ref)
            rows = list(
                await session.scalars(
                    select(ProviderKeyRow)
                    .where(ProviderKeyRow.provider_id == provider.id)
                    .order_by(ProviderKeyRow.created_at, ProviderKeyRow.id)
                )
            )
        counts = await self._in_flight([row.id for row in rows])
        views = [KeyView(row, counts.get(row.id, 0)) for row in rows]
        return [view for view in views if not view.row.deleted or view.in_flight]

    async def update(
        self,
        provider_ref: str,
        key_id: str,
        *,
        enabled: bool | None = None,
        max_concurrency: int | None = None,
        weight: int | None = None,
    ) -> KeyView:
        """Changes the given settings of a key."""
        _check_limits(max_concurrency or 0, weight if weight is not None else 1)
        async with self._sessions() as session:
            row = await self._key(session, provider_ref, key_id)
            if enabled is not None:
                row.enabled = enabled
                if enabled:
                    row.last_error = ""
            if max_concurrency is not None:
                row.max_concurrency = max_concurrency
            if weight is not None:
                row.weight = weight or 1
            row.updated_at = utcnow()
            await session.commit()
            await session.refresh(row)
        return KeyView(row, (await self._in_flight([row.id])).get(row.id, 0))

    async def delete(self, provider_ref: str, key_id: str) -> None:
        """Takes a key out of the pool; it still serves the tasks it submitted until they end."""
        async with self._sessions() as session:
            row = await self._key(session, provider_ref, key_id)
            row.deleted, row.enabled, row.updated_at = True, False, utcnow()
            await session.commit()

    async def _key(self, session: AsyncSession, provider_ref: str, key_id: str) -> ProviderKeyRow:
        provider = await _provider(session, provider_ref)
        row = await session.get(ProviderKeyRow, key_id)
        if row is None or row.provider_id != provider.id or row.deleted:
            raise NotFound(f"key {key_id!r} of provider {provider.name!r} not found")
        return row

    # -- submitting and polling -------------------------------------------------------------

    async def claim(
        self, provider: ProviderRow, asset_id: str, attempt: int, *, running_for: float
    ) -> ChosenKey | None:
        """The key this submission (claimed in the ledger) goes out with; None when the provider has
        no key at all; :class:`PoolFull` when every key is at its limit or cooling after a 429, or the
        provider at its overall limit; :class:`NoUsableKey` when every key is disabled or deleted.

        ``running_for``: a task not seen ending within it (its poll deadline) stops counting.
        """
        async with self._sessions() as session:
            pool = list(
                await session.scalars(
                    select(ProviderKeyRow)
                    .where(ProviderKeyRow.provider_id == provider.id)
                    .order_by(ProviderKeyRow.updated_at.desc())
                )
            )
        if not pool:
            limit = provider.max_concurrency
            if limit and await self._provider_in_flight(provider.id, running_for=running_for) > limit:
                raise PoolFull(f"provider {provider.name} is at its overall limit")
            return None
        enabled = [row for row in pool if row.enabled and not row.deleted]
        if not enabled:
            last_error = next(
                (row.last_error for row in pool if row.last_error), "every key is disabled or deleted"
            )
            raise NoUsableKey(f"no usable API key for provider {provider.name}: {last_error}")
        rows = _not_cooling(enabled)
        # One unlimited key (a provider's own key, as before pools) needs no count to be chosen.
        counted = len(rows) > 1 or any(row.max_concurrency for row in rows)
        counts = await self._in_flight([row.id for row in rows], running_for=running_for) if counted else {}
        candidates = sorted(
            (row for row in rows if not row.max_concurrency or counts.get(row.id, 0) < row.max_concurrency),
            key=lambda row: ((counts.get(row.id, 0) + 1) / max(row.weight, 1), row.id),
        )
        for row in candidates:
            await self._name_key(asset_id, attempt, row.id)
            if row.max_concurrency:
                # Counted after the claim: of two racing for the last slot at least one sees the other.
                taken = (await self._in_flight([row.id], running_for=running_for)).get(row.id, 0)
                if taken > row.max_concurrency:
                    continue
            if provider.max_concurrency:
                # The same for the provider's overall limit (this claim counts: it is active).
                running = await self._provider_in_flight(provider.id, running_for=running_for)
                if running > provider.max_concurrency:
                    break
            return ChosenKey(row.id, row.name, await self._secret_of(row))
        await self._name_key(asset_id, attempt, "")
        raise PoolFull(f"every API key of provider {provider.name} is at its limit or cooling")

    async def free_slots(
        self, provider: ProviderRow, *, running_for: float, claimed: bool = True
    ) -> Slots | None:
        """How many more tasks the provider may run now (and at once), over its usable keys' limits
        and its own overall limit; None when nothing limits it. ``claimed``: the caller's submission
        is claimed (active), and is not counted against the overall limit."""
        # Core rows, not ORM objects: a thousand queued submissions ask this every few seconds.
        async with self._autocommit.connect() as connection:
            rows = (
                await connection.execute(
                    select(_KEYS.c.id, _KEYS.c.name, _KEYS.c.max_concurrency, _KEYS.c.cooled_until).where(
                        _KEYS.c.provider_id == provider.id,
                        _KEYS.c.enabled.is_(True),
                        _KEYS.c.deleted.is_(False),
                    )
                )
            ).all()
        now = utcnow()
        usable = [row for row in rows if row.cooled_until is None or row.cooled_until <= now]
        slots: Slots | None = None
        if rows and all(row.max_concurrency for row in usable):
            counts = await self._in_flight([row.id for row in usable], running_for=running_for)
            for row in usable:
                KEY_IN_FLIGHT.labels(provider.name, row.name).set(counts.get(row.id, 0))
            slots = Slots(
                free=sum(max(row.max_concurrency - counts.get(row.id, 0), 0) for row in usable),
                capacity=sum(row.max_concurrency for row in usable),
            )
        if provider.max_concurrency:
            others = await self._provider_in_flight(provider.id, running_for=running_for) - claimed
            overall = Slots(max(provider.max_concurrency - others, 0), provider.max_concurrency)
            slots = tightest(slots, overall)
        return slots

    async def cool(self, key_id: str, seconds: float) -> None:
        """The provider rate-limited this key (429): no replica gives it new work for ``seconds``."""
        async with self._autocommit.connect() as connection:
            await connection.execute(
                update(_KEYS)
                .where(_KEYS.c.id == key_id)
                .values(cooled_until=utcnow() + timedelta(seconds=seconds))
            )

    async def disable(self, key_id: str, error: str) -> bool:
        """The provider refused this key (authentication, billing): it takes no new work until an
        admin enables it again; ``error`` is what the provider said (shown as ``last_error``).

        True when this call disabled it (False: it was already disabled, by a racing refusal or an
        admin), so the refusal is announced once.
        """
        async with self._autocommit.connect() as connection:
            changed = await connection.execute(
                update(_KEYS)
                .where(_KEYS.c.id == key_id, _KEYS.c.enabled.is_(True))
                .values(enabled=False, last_error=error[:500], updated_at=utcnow())
            )
        if not changed.rowcount:
            return False
        logger.warning(
            "API key disabled: the provider refused it", extra={"key_id": key_id, "error": error[:500]}
        )
        return True

    async def secret(self, key_id: str) -> str | None:
        """The secret of a key (for the calls about a task it submitted), deleted or not; None for the
        provider's own key (its current credential is used)."""
        if key_id in self._secrets:
            return self._secrets[key_id]
        async with self._sessions() as session:
            row = await session.get(ProviderKeyRow, key_id)
        if row is None:
            raise NotFound(f"the API key {key_id!r} that submitted this task no longer exists")
        return await self._secret_of(row)

    async def _secret_of(self, row: ProviderKeyRow) -> str | None:
        if row.provider_own:
            self._secrets[row.id] = None
            return None
        if row.api_key_ref and self._references is not None:
            return self._references.read(row.api_key_ref)  # read each time: the file may rotate
        if row.id not in self._secrets:
            self._secrets[row.id] = self._box.decrypt(row.api_key_encrypted or "")
        return self._secrets[row.id]

    async def _name_key(self, asset_id: str, attempt: int, key_id: str) -> None:
        async with self._autocommit.connect() as connection:
            await connection.execute(
                update(_SUBMISSIONS)
                .where(_SUBMISSIONS.c.asset_id == asset_id, _SUBMISSIONS.c.attempt == attempt)
                .values(key_id=key_id)
            )

    async def _in_flight(self, key_ids: list[str], *, running_for: float = 0.0) -> dict[str, int]:
        if not key_ids:
            return {}
        query = (
            select(_SUBMISSIONS.c.key_id, func.count())
            .where(_SUBMISSIONS.c.key_id.in_(key_ids), _SUBMISSIONS.c.active.is_(True))
            .group_by(_SUBMISSIONS.c.key_id)
        )
        if running_for > 0:
            query = query.where(_SUBMISSIONS.c.updated_at > utcnow() - timedelta(seconds=running_for))
        async with self._autocommit.connect() as connection:
            rows = (await connection.execute(query)).all()
        return {str(key_id): int(count) for key_id, count in rows}

    async def _provider_in_flight(self, provider_id: str, *, running_for: float) -> int:
        """The provider's submissions claimed or running, over every key and replica."""
        query = select(func.count()).where(
            _SUBMISSIONS.c.provider_id == provider_id, _SUBMISSIONS.c.active.is_(True)
        )
        if running_for > 0:
            query = query.where(_SUBMISSIONS.c.updated_at > utcnow() - timedelta(seconds=running_for))
        async with self._autocommit.connect() as connection:
            return int((await connection.execute(query)).scalar_one())


def _not_cooling(rows: list[ProviderKeyRow]) -> list[ProviderKeyRow]:
    now: datetime = utcnow()
    return [row for row in rows if row.cooled_until is None or row.cooled_until <= now]


async def _provider(session: AsyncSession, ref: str) -> ProviderRow:
    provider = (
        await session.scalars(select(ProviderRow).where((ProviderRow.id == ref) | (ProviderRow.name == ref)))
    ).first()
    if provider is None:
        raise NotFound(f"provider {ref!r} not found")
    return provider


def _check_limits(max_concurrency: int, weight: int) -> None:
    if max_concurrency < 0:
        raise InvalidArgument("max_concurrency must be 0 (no limit) or more")
    if weight < 0 or weight > 1000:
        raise InvalidArgument("weight must be between 1 and 1000")
