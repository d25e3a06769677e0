"""The queue of submissions waiting for a free key of their provider's pool.

Revision ID: 0007_submission_queue
Revises: 0006_provider_keys
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_submission_queue"
down_revision = "0006_provider_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "submission_queue",
        sa.Column("asset_id", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("provider_id", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=64), nullable=False),
        sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("asset_id", "attempt"),
    )
    op.create_index("ix_submission_queue_provider_id", "submission_queue", ["provider_id", "enqueued_at"])


def downgrade() -> None:
    op.drop_index("ix_submission_queue_provider_id", table_name="submission_queue")
    op.drop_table("submission_queue")
