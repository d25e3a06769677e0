"""the cost ledger (one entry per priced asset attempt), assets.cost_json and boxes.budget

Revision ID: 0006_cost_ledger
Revises: 0005_webhooks
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_cost_ledger"
down_revision = "0005_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cost_ledger",
        sa.Column("asset_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("box_id", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("key_id", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("estimated_nanos", sa.BigInteger(), nullable=False),
        sa.Column("amount_nanos", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("asset_id", "attempt"),
    )
    op.create_index("ix_cost_ledger_project_id_state", "cost_ledger", ["project_id", "state"])
    op.create_index("ix_cost_ledger_box_id_state", "cost_ledger", ["box_id", "state"])
    op.create_index("ix_cost_ledger_settled_at", "cost_ledger", ["settled_at"])
    with op.batch_alter_table("assets") as batch_op:
        batch_op.add_column(sa.Column("cost_json", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("boxes") as batch_op:
        batch_op.add_column(sa.Column("budget", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("boxes") as batch_op:
        batch_op.drop_column("budget")
    with op.batch_alter_table("assets") as batch_op:
        batch_op.drop_column("cost_json")
    op.drop_index("ix_cost_ledger_settled_at", table_name="cost_ledger")
    op.drop_index("ix_cost_ledger_box_id_state", table_name="cost_ledger")
    op.drop_index("ix_cost_ledger_project_id_state", table_name="cost_ledger")
    op.drop_table("cost_ledger")
