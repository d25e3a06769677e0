"""The webhook tables — a project's endpoints and every delivery made to them — and their row types.

They live on the orchestrator's one ``metadata`` (the migrations' target) beside the asset tables.
An endpoint belongs to a project (and optionally to one box of it): deleting either deletes the
endpoint, and deleting an endpoint deletes its deliveries. A delivery keeps its asset id without a
foreign key, so the log outlives a deleted asset.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from assetgen_orchestrator.models import metadata, utcnow

__all__ = [
    "DeliveryStatus",
    "WebhookDeliveryRow",
    "WebhookEndpointRow",
    "webhook_deliveries_table",
    "webhook_endpoints_table",
]


class DeliveryStatus:
    """What became of a delivery: still to be sent, answered 2xx, or given up."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


webhook_endpoints_table = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("project_id", String(40), ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
    Column("box_id", String(40), ForeignKey("boxes.id", ondelete="CASCADE"), nullable=True),
    Column("url", Text, nullable=False),
    Column("events", String(200), nullable=False),
    Column("secret", String(100), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("disabled_reason", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("updated_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Index("ix_webhook_endpoints_project_id", "project_id"),
)
"""Endpoints: ``events`` is a space-separated list; ``secret`` is kept whole, since every delivery is
signed with it (like the provider keys of the adapter, it never leaves the service after creation)."""

webhook_deliveries_table = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("webhook_id", String(40), ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), nullable=False),
    Column("asset_id", String(40), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("event", String(40), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False, default=DeliveryStatus.PENDING),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_status_code", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=False, default=""),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, default=utcnow),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    # One delivery per endpoint and event of an asset attempt: a fan-out run twice inserts nothing.
    UniqueConstraint("webhook_id", "asset_id", "attempt", "event", name="uq_webhook_deliveries_event"),
    Index("ix_webhook_deliveries_webhook_id_id", "webhook_id", "id"),
    Index("ix_webhook_deliveries_status", "status"),
)
"""Deliveries: ``seq`` is the event's stream sequence (the order per asset); ``payload`` the exact
body sent on every try; ``id`` the ``webhook-id`` header."""


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookEndpointRow:
    """An endpoint of a project that is told of its assets' events."""

    id: str
    project_id: str
    url: str
    events: str
    secret: str
    box_id: str | None = None
    enabled: bool = True
    disabled_reason: str = ""
    created_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    updated_at: dt.datetime = dataclasses.field(default_factory=utcnow)

    @property
    def event_types(self) -> tuple[str, ...]:
        """The event types sent to this endpoint."""
        return tuple(self.events.split())


@dataclasses.dataclass(frozen=True, slots=True)
class WebhookDeliveryRow:
    """One event for one endpoint, and how sending it went."""

    id: str
    webhook_id: str
    asset_id: str
    attempt: int
    event: str
    seq: int
    payload: str
    status: str = DeliveryStatus.PENDING
    attempts: int = 0
    last_status_code: int = 0
    last_error: str = ""
    next_attempt_at: dt.datetime | None = None
    created_at: dt.datetime = dataclasses.field(default_factory=utcnow)
    finished_at: dt.datetime | None = None
