"""The catalog's tables: providers, models, and the submission ledger that makes SubmitTask idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, TypeDecorator
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "ModelRow", "ProviderKeyRow", "ProviderRow", "SubmissionRow", "utcnow"]


def utcnow() -> datetime:
    """Now, timezone-aware in UTC."""
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that comes back timezone-aware in UTC on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Metadata of the catalog database."""


class ProviderRow(Base):
    """A provider account: a copy of its profile, base URL and encrypted key."""

    __tablename__ = "providers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    preset: Mapped[str] = mapped_column(String(100))
    base_url: Mapped[str] = mapped_column(String(2000))
    profile_json: Mapped[str] = mapped_column(Text)
    api_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    # "env:NAME" or "file:name" when the key is read from the environment or a mounted secret.
    api_key_ref: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Most tasks the provider runs at once over all its keys (0: no overall limit).
    max_concurrency: Mapped[int] = mapped_column(Integer, default=0)


class ModelRow(Base):
    """A model a provider serves, with its request template."""

    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.id"), index=True)
    model_type: Mapped[int] = mapped_column(Integer)
    api_endpoint: Mapped[str] = mapped_column(String(2000), default="")
    request_schema_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The model's price as compact JSON (``pricing``); "" when it has none.
    price_json: Mapped[str] = mapped_column(Text, default="")


class SubmissionRow(Base):
    """One submission per (asset, attempt): SENDING before the HTTP call, SENT with its outcome after."""

    __tablename__ = "submissions"

    asset_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    task_id: Mapped[str] = mapped_column(String(500), default="")
    status_json: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # For limits shared by every replica: whose task it is, and whether it still runs there.
    provider_id: Mapped[str] = mapped_column(String(64), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    # The pool key that submitted it ('' : the provider's own key); its polls use the same key.
    key_id: Mapped[str] = mapped_column(String(64), default="")


class ProviderKeyRow(Base):
    """One API key of a provider's pool: stored like the provider's own (sealed or referenced), with
    how many tasks it may run at once (0: no limit of its own) and its share of new work (weight).

    A disabled or deleted key takes no new work but still serves the tasks it submitted (draining).
    The provider's own key (the one it was created with) is the pool's first key: its row
    (``provider_own``) stores no secret; the provider's does, so updating the provider rotates it.
    """

    __tablename__ = "provider_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("providers.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    api_key_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    api_key_ref: Mapped[str] = mapped_column(String(500), default="")
    max_concurrency: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[int] = mapped_column(Integer, default=1)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    provider_own: Mapped[bool] = mapped_column(Boolean, default=False)
    # Until when a 429 cools the key (no new work), for every replica; None: not cooling.
    cooled_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, default=None)
