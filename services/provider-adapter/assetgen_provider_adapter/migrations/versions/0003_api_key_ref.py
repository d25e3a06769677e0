"""Providers may reference their API key (environment variable or secret file) instead of storing it.

Revision ID: 0003_api_key_ref
Revises: 0002_submission_limits
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_api_key_ref"
down_revision = "0002_submission_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("api_key_ref", sa.String(500), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("api_key_ref")
