"""The orchestrator's tables: boxes, assets and each asset's history of transitions."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Asset", "AssetTransition", "Base", "Box", "Status", "Step", "utcnow"]


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class Status(enum.StrEnum):
    """Public status of an asset (the seed's four plus CANCELED)."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"

    @property
    def terminal(self) -> bool:
        """Whether nothing can follow this status (except a retry, which starts a new attempt)."""
        return self in (Status.COMPLETED, Status.FAILED, Status.CANCELED)


class Step(enum.StrEnum):
    """Finer internal step under the public status; says what the next job run must do."""

    WAITING_PARENT = "waiting_parent"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    POLLING = "polling"
    INGESTING = "ingesting"
    DONE = "done"


class Base(DeclarativeBase):
    """Declarative base of the orchestrator's schema."""


class Box(Base):
    """A box groups the assets of one piece of work."""

    __tablename__ = "boxes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Asset(Base):
    """An uploaded or generated file and the state of its generation.

    ``version`` increases with every change; every update is a compare-and-set on it, so two workers
    or a late message can never move an asset backwards or finish it twice.
    """

    __tablename__ = "assets"
    __table_args__ = (
        UniqueConstraint("box_id", "idempotency_key", name="uq_assets_box_idempotency_key"),
        Index("ix_assets_box_id_id", "box_id", "id"),
        Index("ix_assets_parent_asset_id", "parent_asset_id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    box_id: Mapped[str] = mapped_column(String(40), ForeignKey("boxes.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16))
    step: Mapped[str] = mapped_column(String(16))
    source_type: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(200), default="")
    prompt: Mapped[str] = mapped_column(Text, default="")
    image_url: Mapped[str] = mapped_column(Text, default="")
    image_urls_json: Mapped[str] = mapped_column(Text, default="[]")
    config_json: Mapped[str] = mapped_column(Text, default="{}")
    parent_asset_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    external_task_id: Mapped[str] = mapped_column(Text, default="")
    task_handle_json: Mapped[str] = mapped_column(Text, default="")
    result_url: Mapped[str] = mapped_column(Text, default="")
    poll_policy_json: Mapped[str] = mapped_column(Text, default="{}")
    raw_status: Mapped[str] = mapped_column(String(200), default="")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    error_message: Mapped[str] = mapped_column(Text, default="")
    filename: Mapped[str] = mapped_column(String(300), default="")
    object_key: Mapped[str] = mapped_column(Text, default="")
    content_type: Mapped[str] = mapped_column(String(100), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    @classmethod
    def new(cls, **values: object) -> Asset:
        """A new asset whose unspecified columns hold their defaults already (before any insert)."""
        for column in cls.__table__.columns:
            default = column.default
            if column.key not in values and default is not None and getattr(default, "is_scalar", False):
                values[column.key] = default.arg  # type: ignore[attr-defined]
        return cls(**values)


class AssetTransition(Base):
    """One step of an asset's history: what it moved from and to, when, and why."""

    __tablename__ = "asset_transitions"
    __table_args__ = (Index("ix_asset_transitions_asset_id", "asset_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    asset_id: Mapped[str] = mapped_column(String(40), ForeignKey("assets.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    from_status: Mapped[str] = mapped_column(String(16), default="")
    to_status: Mapped[str] = mapped_column(String(16))
    step: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
