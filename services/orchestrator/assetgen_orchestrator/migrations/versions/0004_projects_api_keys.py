"""projects and API keys: the tables, project "default", boxes.project_id (every box moves into "default")

Revision ID: 0004_projects
Revises: 0003
"""

import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0004_projects"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    projects = op.create_table(
        "projects",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("budget", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", name="uq_projects_name"),
    )
    op.bulk_insert(projects, [{"id": "default", "name": "default", "created_at": dt.datetime.now(dt.UTC)}])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("project_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("scopes", sa.String(length=100), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_api_keys_project_id"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_api_keys_project_id", "api_keys", ["project_id"])
    # The server default moves every existing box into "default" as the column is added.
    with op.batch_alter_table("boxes") as batch_op:
        batch_op.add_column(
            sa.Column("project_id", sa.String(length=40), nullable=False, server_default="default")
        )
        batch_op.create_foreign_key("fk_boxes_project_id", "projects", ["project_id"], ["id"])
        batch_op.create_index("ix_boxes_project_id_id", ["project_id", "id"])


def downgrade() -> None:
    with op.batch_alter_table("boxes") as batch_op:
        batch_op.drop_index("ix_boxes_project_id_id")
        batch_op.drop_constraint("fk_boxes_project_id", type_="foreignkey")
        batch_op.drop_column("project_id")
    op.drop_index("ix_api_keys_project_id", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("projects")
