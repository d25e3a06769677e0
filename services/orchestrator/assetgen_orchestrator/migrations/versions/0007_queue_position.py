"""assets.queue_position: where a generation waits for a free key of its provider (0: not queued)

Revision ID: 0007_queue_position
Revises: 0006_cost_ledger
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_queue_position"
down_revision = "0006_cost_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("assets") as batch_op:
        batch_op.add_column(sa.Column("queue_position", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("assets") as batch_op:
        batch_op.drop_column("queue_position")
