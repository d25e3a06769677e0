"""A provider's key pool: several API keys, each with its own concurrency, sharing the provider's work.

A provider with keys in its pool submits each task with one of them: among the enabled keys below
their ``max_concurrency`` (0: no limit of their own), the one with the fewest tasks in flight for
its ``weight``. The choice is claimed before it is counted — the submission's ledger entry names the
key, then the key's active entries are counted, and a key found over its limit is given up for the
next — so two replicas racing for a key's last slot cannot both take it. With every key full the
submission is held back (PENDING, asked again later), never sent to a provider that would answer 429.

The key that submitted a task is kept in its handle (``assetgen_key``), so every later call about
the task — poll, cancel, result download — uses that key (providers only show a task to its owner).
A disabled or deleted key takes no new work but keeps serving its tasks in flight (``draining``). A
provider whose pool is empty uses its own key, as before pools.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import timedelta
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
    "QUEUED",
    "ChosenKey",
    "KeyPool",
    "KeyView",
    "NoUsableKey",
    "PoolFull",
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
    "Submissions waiting for a free key of the provider's pool, as last counted.",
    ["provider"],
)

_SUBMISSIONS = cast(Table, SubmissionRow.__table__)
_KEYS = cast(Table, ProviderKeyRow.__table__)
_MAX_NAME = 200


class PoolFull(Exception):
    """Every enabled key of the provider's pool runs as many tasks as it may (or cools after a 429)."""


class NoUsableKey(FailedPrecondition):
    """Every key of the provider's pool is disabled (refused by the provider, or by an admin)."""


@dataclasses.dataclass(frozen=True)
class ChosenKey:
    """The pool key a submission goes out with (its id is recorded; its secret never leaves)."""

    id: str
    secret: str = dataclasses.field(repr=False)


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
        self._secrets: dict[str, str] = {}
        self._cooling: dict[str, float] = {}  # key id -> monotonic time its 429 cooling ends

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
        no pool (its own key is used); :class:`PoolFull` when every key is at its limit or cooling
        after a 429; :class:`NoUsableKey` when every key is disabled.

        ``running_for``: a task not seen ending within it (its poll deadline) stops counting.
        """
        async with self._sessions() as session:
            pool = list(
                await session.scalars(
                    select(ProviderKeyRow)
                    .where(ProviderKeyRow.provider_id == provider.id, ProviderKeyRow.deleted.is_(False))
                    .order_by(ProviderKeyRow.updated_at.desc())
                )
            )
        if not pool:
            return None
        enabled = [row for row in pool if row.enabled]
        if not enabled:
            last_error = next((row.last_error for row in pool if row.last_error), "every key is disabled")
            raise NoUsableKey(f"no usable API key for provider {provider.name}: {last_error}")
        now = time.monotonic()
        rows = [row for row in enabled if self._cooling.get(row.id, 0.0) <= now]
        counts = await self._in_flight([row.id for row in rows], running_for=running_for)
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
            return ChosenKey(row.id, await self._secret_of(row))
        await self._name_key(asset_id, attempt, "")
        raise PoolFull(f"every API key of provider {provider.name} is at its limit or cooling")

    async def free_slots(self, provider: ProviderRow, *, running_for: float) -> int | None:
        """How many more tasks the provider's usable keys may run now; None when nothing limits them
        (no pool, or a usable key without a limit of its own)."""
        async with self._sessions() as session:
            rows = list(
                await session.scalars(
                    select(ProviderKeyRow).where(
                        ProviderKeyRow.provider_id == provider.id,
                        ProviderKeyRow.enabled.is_(True),
                        ProviderKeyRow.deleted.is_(False),
                    )
                )
            )
        now = time.monotonic()
        usable = [row for row in rows if self._cooling.get(row.id, 0.0) <= now]
        if not rows or any(not row.max_concurrency for row in usable):
            return None
        counts = await self._in_flight([row.id for row in usable], running_for=running_for)
        for row in usable:
            KEY_IN_FLIGHT.labels(provider.name, row.name).set(counts.get(row.id, 0))
        return sum(max(row.max_concurrency - counts.get(row.id, 0), 0) for row in usable)

    def cool(self, key_id: str, seconds: float) -> None:
        """The provider rate-limited this key (429): it takes no new work here for ``seconds``."""
        self._cooling[key_id] = time.monotonic() + seconds

    async def disable(self, key_id: str, error: str) -> None:
        """The provider refused this key (authentication, billing): it takes no new work until an
        admin enables it again; ``error`` is what the provider said (shown as ``last_error``)."""
        async with self._autocommit.connect() as connection:
            await connection.execute(
                update(_KEYS)
                .where(_KEYS.c.id == key_id)
                .values(enabled=False, last_error=error[:500], updated_at=utcnow())
            )
        logger.warning(
            "API key disabled: the provider refused it", extra={"key_id": key_id, "error": error[:500]}
        )

    async def secret(self, key_id: str) -> str:
        """The secret of a key (for the calls about a task it submitted), deleted or not."""
        cached = self._secrets.get(key_id)
        if cached is not None:
            return cached
        async with self._sessions() as session:
            row = await session.get(ProviderKeyRow, key_id)
        if row is None:
            raise NotFound(f"the API key {key_id!r} that submitted this task no longer exists")
        return await self._secret_of(row)

    async def _secret_of(self, row: ProviderKeyRow) -> str:
        if row.api_key_ref and self._references is not None:
            return self._references.read(row.api_key_ref)  # read each time: the file may rotate
        cached = self._secrets.get(row.id)
        if cached is None:
            cached = self._secrets[row.id] = self._box.decrypt(row.api_key_encrypted or "")
        return cached

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
