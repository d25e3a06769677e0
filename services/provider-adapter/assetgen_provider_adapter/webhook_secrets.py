"""Providers' webhook secrets (what verifies their callbacks), encrypted at rest like their API keys.

A table of its own beside ``providers`` (one row per provider that has a secret, deleted with it);
the secret never leaves this service: the API only ever sets or clears it.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, Text, delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from assetgen_provider_adapter.credentials import SecretBox
from assetgen_provider_adapter.db import Base
from assetgen_runtime.errors import InvalidArgument

__all__ = ["WebhookSecretRow", "WebhookSecrets"]

_MAX_SECRET = 1000


class WebhookSecretRow(Base):
    """The encrypted webhook secret of one provider."""

    __tablename__ = "provider_webhook_secrets"

    provider_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("providers.id", ondelete="CASCADE"), primary_key=True
    )
    secret_encrypted: Mapped[str] = mapped_column(Text)


class WebhookSecrets:
    """Sets, clears and reads providers' webhook secrets."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], box: SecretBox) -> None:
        self._sessions = sessions
        self._box = box

    async def set(self, provider_id: str, secret: str) -> None:
        """Stores ``secret`` for the provider, or removes its secret when ``secret`` is ''."""
        secret = secret.strip()
        if len(secret) > _MAX_SECRET:
            raise InvalidArgument(f"webhook_secret is longer than {_MAX_SECRET} characters")
        async with self._sessions.begin() as session:
            await session.execute(delete(WebhookSecretRow).where(WebhookSecretRow.provider_id == provider_id))
            if secret:
                session.add(
                    WebhookSecretRow(provider_id=provider_id, secret_encrypted=self._box.encrypt(secret))
                )

    async def get(self, provider_id: str) -> str:
        """The provider's secret, or '' when it has none."""
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(WebhookSecretRow).where(WebhookSecretRow.provider_id == provider_id)
                )
            ).scalar_one_or_none()
        return self._box.decrypt(row.secret_encrypted) if row is not None else ""
