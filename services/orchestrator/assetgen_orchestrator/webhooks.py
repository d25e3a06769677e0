"""Data access for webhook endpoints and their deliveries, and the checks an endpoint must pass.

Endpoints are few and change rarely: plain single statements, and the enabled ones held in memory
for a moment (the fan-out asks for every event; a change made here is seen at once, one made by
another replica within ``cache_seconds``). Deliveries are written once by the fan-out and then only
by the sender, each try a compare-and-set on the number of tries made, so two senders of one
delivery record one outcome.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Select, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from assetgen_orchestrator.models import utcnow
from assetgen_orchestrator.webhook_models import (
    DeliveryStatus,
    WebhookDeliveryRow,
    WebhookEndpointRow,
    webhook_deliveries_table,
    webhook_endpoints_table,
)
from assetgen_orchestrator.webhook_policy import EVENT_TYPES
from assetgen_orchestrator.webhook_signing import new_secret
from assetgen_runtime.errors import InvalidArgument, NotFound
from assetgen_runtime.ids import new_id
from assetgen_runtime.netguard import AddressRefused, FetchRefused, NetworkGuard

__all__ = ["DeliveryPage", "WebhookDestinations", "WebhookStore", "parse_events"]

_ENDPOINTS = webhook_endpoints_table
_DELIVERIES = webhook_deliveries_table
_MAX_URL = 2000
_DEFAULT_PAGE = 50
_MAX_PAGE = 500
# Registering must not hang on a slow resolver; every delivery's connection is checked again.
_RESOLVE_TIMEOUT = 3.0


def parse_events(events: Iterable[str], *, default_all: bool) -> str:
    """The stored form of a list of event types; InvalidArgument for an unknown one."""
    chosen: list[str] = []
    for event in events:
        if event not in EVENT_TYPES:
            raise InvalidArgument(f"unknown event {event!r}; events are {', '.join(EVENT_TYPES)}")
        if event not in chosen:
            chosen.append(event)
    if not chosen and default_all:
        chosen = list(EVENT_TYPES)
    return " ".join(chosen)


class WebhookDestinations:
    """Where deliveries may go: http(s) URLs whose host is not, nor resolves to, a refused address."""

    def __init__(self, guard: NetworkGuard) -> None:
        self._guard = guard

    async def check(self, url: str) -> str:
        """``url`` if acceptable, else InvalidArgument naming the rule (a private address, ...)."""
        url = url.strip()
        if not url or len(url) > _MAX_URL:
            raise InvalidArgument(f"url is required, at most {_MAX_URL} characters")
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise InvalidArgument("url is not a valid URL") from None
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise InvalidArgument("url must be an http(s) URL with a host")
        try:
            async with asyncio.timeout(_RESOLVE_TIMEOUT):
                await self._guard.check_host(host, port)
        except AddressRefused as exc:
            raise InvalidArgument(
                f"url: {host} is {exc.address}, which {exc.reason} and not allowed "
                "(ASSETGEN_WEBHOOK_ALLOWED_NETWORKS)"
            ) from None
        except (FetchRefused, TimeoutError):
            pass  # does not resolve now: every delivery's connection is checked when it is made
        return url


@dataclasses.dataclass
class DeliveryPage:
    """One page of an endpoint's deliveries, newest first."""

    items: list[WebhookDeliveryRow]
    next_cursor: str


class WebhookStore:
    """Webhook endpoints and deliveries in the orchestrator's database."""

    def __init__(self, engine: AsyncEngine, *, cache_seconds: float = 2.0) -> None:
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._cache_seconds = cache_seconds
        self._enabled: tuple[float, list[WebhookEndpointRow]] | None = None

    async def _rows(self, query: Select[Any]) -> Sequence[Mapping[str, Any]]:
        async with self._autocommit.connect() as connection:
            return (await connection.execute(query)).mappings().all()

    async def _execute(self, statement: Any) -> int:
        async with self._autocommit.connect() as connection:
            return int((await connection.execute(statement)).rowcount or 0)

    # -- endpoints ------------------------------------------------------------------------------

    async def create_endpoint(
        self, project_id: str, box_id: str | None, url: str, events: str
    ) -> WebhookEndpointRow:
        """A new enabled endpoint with a new secret."""
        row = WebhookEndpointRow(
            id=new_id("whk"),
            project_id=project_id,
            box_id=box_id,
            url=url,
            events=events,
            secret=new_secret(),
        )
        await self._execute(insert(_ENDPOINTS).values(dataclasses.asdict(row)))
        self._enabled = None
        return row

    async def list_endpoints(self, project_id: str = "") -> list[WebhookEndpointRow]:
        """Endpoints newest first, of one project when given."""
        query = select(_ENDPOINTS).order_by(_ENDPOINTS.c.id.desc())
        if project_id:
            query = query.where(_ENDPOINTS.c.project_id == project_id)
        return [WebhookEndpointRow(**row) for row in await self._rows(query)]

    async def get_endpoint(self, endpoint_id: str, project_id: str = "") -> WebhookEndpointRow:
        """The endpoint, or NotFound (also when it belongs to another project than ``project_id``)."""
        rows = await self._rows(select(_ENDPOINTS).where(_ENDPOINTS.c.id == endpoint_id))
        if not rows or (project_id and rows[0]["project_id"] != project_id):
            raise NotFound(f"webhook {endpoint_id!r} not found")
        return WebhookEndpointRow(**rows[0])

    async def update_endpoint(self, endpoint: WebhookEndpointRow, **values: Any) -> WebhookEndpointRow:
        """Changes the given columns; turning an endpoint on clears why it was turned off."""
        if values.get("enabled"):
            values["disabled_reason"] = ""
        values["updated_at"] = utcnow()
        await self._execute(update(_ENDPOINTS).where(_ENDPOINTS.c.id == endpoint.id).values(**values))
        self._enabled = None
        return dataclasses.replace(endpoint, **values)

    async def disable_endpoint(self, endpoint_id: str, reason: str) -> None:
        """Turns an endpoint off, saying why (its receiver answered 410 Gone)."""
        await self._execute(
            update(_ENDPOINTS)
            .where(_ENDPOINTS.c.id == endpoint_id)
            .values(enabled=False, disabled_reason=reason, updated_at=utcnow())
        )
        self._enabled = None

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """Deletes an endpoint and its deliveries."""
        await self._execute(delete(_DELIVERIES).where(_DELIVERIES.c.webhook_id == endpoint_id))
        await self._execute(delete(_ENDPOINTS).where(_ENDPOINTS.c.id == endpoint_id))
        self._enabled = None

    async def endpoints_for(self, project_id: str, box_id: str, event: str) -> list[WebhookEndpointRow]:
        """The enabled endpoints an event of ``box_id`` in ``project_id`` goes to."""
        now = time.monotonic()
        if self._enabled is None or self._enabled[0] < now:
            query = select(_ENDPOINTS).where(_ENDPOINTS.c.enabled.is_(True)).order_by(_ENDPOINTS.c.id)
            self._enabled = (
                now + self._cache_seconds,
                [WebhookEndpointRow(**row) for row in await self._rows(query)],
            )
        return [
            endpoint
            for endpoint in self._enabled[1]
            if endpoint.project_id == project_id
            and endpoint.box_id in (None, box_id)
            and event in endpoint.event_types
        ]

    async def any_enabled(self) -> bool:
        """Whether some endpoint is enabled (from the cache when fresh)."""
        now = time.monotonic()
        if self._enabled is None or self._enabled[0] < now:
            await self.endpoints_for("", "", "")
        return bool(self._enabled and self._enabled[1])

    # -- deliveries -----------------------------------------------------------------------------

    async def add_delivery(self, delivery: WebhookDeliveryRow) -> str:
        """Records a delivery; returns its id, or the id of the one already recorded for that event."""
        try:
            await self._execute(insert(_DELIVERIES).values(dataclasses.asdict(delivery)))
        except IntegrityError:
            rows = await self._rows(
                select(_DELIVERIES.c.id).where(
                    _DELIVERIES.c.webhook_id == delivery.webhook_id,
                    _DELIVERIES.c.asset_id == delivery.asset_id,
                    _DELIVERIES.c.attempt == delivery.attempt,
                    _DELIVERIES.c.event == delivery.event,
                )
            )
            if not rows:
                raise
            return str(rows[0]["id"])
        return delivery.id

    async def get_delivery(self, delivery_id: str) -> WebhookDeliveryRow | None:
        """The delivery, or None."""
        rows = await self._rows(select(_DELIVERIES).where(_DELIVERIES.c.id == delivery_id))
        return WebhookDeliveryRow(**rows[0]) if rows else None

    async def earlier_pending(self, delivery: WebhookDeliveryRow) -> WebhookDeliveryRow | None:
        """A pending delivery of the same asset to the same endpoint that must go first, if any."""
        rows = await self._rows(
            select(_DELIVERIES)
            .where(
                _DELIVERIES.c.webhook_id == delivery.webhook_id,
                _DELIVERIES.c.asset_id == delivery.asset_id,
                _DELIVERIES.c.status == DeliveryStatus.PENDING,
                _DELIVERIES.c.seq < delivery.seq,
            )
            .order_by(_DELIVERIES.c.seq)
            .limit(1)
        )
        return WebhookDeliveryRow(**rows[0]) if rows else None

    async def record_try(self, delivery: WebhookDeliveryRow, **values: Any) -> bool:
        """Writes the outcome of a try; False if another sender recorded one first."""
        finished = values.get("status", DeliveryStatus.PENDING) != DeliveryStatus.PENDING
        if finished:
            values["finished_at"] = utcnow()
        changed = await self._execute(
            update(_DELIVERIES)
            .where(
                _DELIVERIES.c.id == delivery.id,
                _DELIVERIES.c.attempts == delivery.attempts,
                _DELIVERIES.c.status == DeliveryStatus.PENDING,
            )
            .values(attempts=delivery.attempts + 1, **values)
        )
        return changed == 1

    async def reopen(self, delivery: WebhookDeliveryRow) -> WebhookDeliveryRow:
        """Makes a delivery pending again, due now, its tries counted afresh (a redelivery)."""
        now = utcnow()
        values = {
            "status": DeliveryStatus.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "finished_at": None,
            "last_error": "",
        }
        await self._execute(update(_DELIVERIES).where(_DELIVERIES.c.id == delivery.id).values(**values))
        return dataclasses.replace(delivery, **values)  # type: ignore[arg-type]

    async def list_deliveries(self, endpoint_id: str, page_size: int, cursor: str) -> DeliveryPage:
        """A page of an endpoint's deliveries, newest first (ids sort by creation)."""
        if page_size < 0:
            raise InvalidArgument("page_size must not be negative")
        size = min(page_size or _DEFAULT_PAGE, _MAX_PAGE)
        query = (
            select(_DELIVERIES)
            .where(_DELIVERIES.c.webhook_id == endpoint_id)
            .order_by(_DELIVERIES.c.id.desc())
            .limit(size + 1)
        )
        if cursor:
            query = query.where(_DELIVERIES.c.id < cursor)
        items = [WebhookDeliveryRow(**row) for row in await self._rows(query)]
        more = len(items) > size
        items = items[:size]
        return DeliveryPage(items, items[-1].id if more and items else "")

    async def oldest_pending_created_at(self) -> dt.datetime | None:
        """When the oldest delivery still pending was made (None: nothing pending)."""
        rows = await self._rows(
            select(func.min(_DELIVERIES.c.created_at).label("oldest")).where(
                _DELIVERIES.c.status == DeliveryStatus.PENDING
            )
        )
        oldest = rows[0]["oldest"] if rows else None
        if oldest is not None and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        return oldest
