"""Several API keys per provider (a key pool), and which key submitted each task.

Revision ID: 0006_provider_keys
Revises: 0005_webhook_secrets
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_provider_keys"
down_revision = "0005_webhook_secrets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_keys",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=True),
        sa.Column("api_key_ref", sa.String(length=500), nullable=False, server_default=""),
        sa.Column("max_concurrency", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("weight", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.true()),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["provider_id"], ["providers.id"], name="fk_provider_keys_provider_id"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_provider_keys_provider_id", "provider_keys", ["provider_id"])
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=64), nullable=False, server_default=""))
        batch.create_index("ix_submissions_key_id_active", ["key_id", "active"])


def downgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.drop_index("ix_submissions_key_id_active")
        batch.drop_column("key_id")
    op.drop_index("ix_provider_keys_provider_id", table_name="provider_keys")
    op.drop_table("provider_keys")
