"""Submissions carry their provider and whether the task is still running there, for shared limits.

Revision ID: 0002_submission_limits
Revises: 0001_catalog
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_submission_limits"
down_revision = "0001_catalog"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submissions") as batch:
        batch.add_column(sa.Column("provider_id", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_submissions_provider_created", "submissions", ["provider_id", "created_at"])
    op.create_index("ix_submissions_provider_active", "submissions", ["provider_id", "active"])


def downgrade() -> None:
    op.drop_index("ix_submissions_provider_active", table_name="submissions")
    op.drop_index("ix_submissions_provider_created", table_name="submissions")
    with op.batch_alter_table("submissions") as batch:
        batch.drop_column("active")
        batch.drop_column("provider_id")
