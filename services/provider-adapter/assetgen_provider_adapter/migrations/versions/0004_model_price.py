"""Models may carry a price (JSON text; empty for none).

Revision ID: 0004_model_price
Revises: 0003_api_key_ref
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_model_price"
down_revision = "0003_api_key_ref"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("price_json", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_column("price_json")
