"""Providers' webhook secrets, encrypted, in a table of their own.

Revision ID: 0005_webhook_secrets
Revises: 0004_model_price
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_webhook_secrets"
down_revision = "0004_model_price"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_webhook_secrets",
        sa.Column("provider_id", sa.String(64), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["provider_id"],
            ["providers.id"],
            name="fk_provider_webhook_secrets_provider_id",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("provider_id"),
    )


def downgrade() -> None:
    op.drop_table("provider_webhook_secrets")
