"""the reconciler: assets.job_generation, assets.attempt_started_at, an index on status, leases

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assets") as batch_op:
        batch_op.add_column(sa.Column("job_generation", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("attempt_started_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_assets_status", ["status"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("leases")
    with op.batch_alter_table("assets") as batch_op:
        batch_op.drop_index("ix_assets_status")
        batch_op.drop_column("attempt_started_at")
        batch_op.drop_column("job_generation")
