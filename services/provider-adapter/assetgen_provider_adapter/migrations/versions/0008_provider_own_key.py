"""The key a provider was created with becomes its pool's first key; overall limits; shared cooling.

Every provider with a key gets a ``provider_keys`` row for it (id ``pkey_<provider id>``, name
``default``, ``provider_own``: its secret stays on the provider row), and its tasks in flight count
for that key. Providers get an overall ``max_concurrency``; keys a ``cooled_until`` that every
replica reads (a 429's cooling was kept per process before).

Revision ID: 0008_provider_own_key
Revises: 0007_submission_queue
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_provider_own_key"
down_revision = "0007_submission_queue"
branch_labels = None
depends_on = None

_providers = sa.table(
    "providers",
    sa.column("id", sa.String),
    sa.column("api_key_encrypted", sa.Text),
    sa.column("api_key_ref", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
_keys = sa.table(
    "provider_keys",
    sa.column("id", sa.String),
    sa.column("provider_id", sa.String),
    sa.column("name", sa.String),
    sa.column("api_key_encrypted", sa.Text),
    sa.column("api_key_ref", sa.String),
    sa.column("max_concurrency", sa.Integer),
    sa.column("weight", sa.Integer),
    sa.column("enabled", sa.Boolean),
    sa.column("deleted", sa.Boolean),
    sa.column("last_error", sa.Text),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("provider_own", sa.Boolean),
)
_submissions = sa.table(
    "submissions",
    sa.column("provider_id", sa.String),
    sa.column("key_id", sa.String),
    sa.column("active", sa.Boolean),
)


def upgrade() -> None:
    with op.batch_alter_table("providers") as batch:
        batch.add_column(sa.Column("max_concurrency", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("provider_keys") as batch:
        batch.add_column(sa.Column("provider_own", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("cooled_until", sa.DateTime(timezone=True), nullable=True))
    keyed = sa.or_(_providers.c.api_key_encrypted.is_not(None), _providers.c.api_key_ref != "")
    own_id = sa.literal("pkey_") + _providers.c.id
    op.execute(
        _keys.insert().from_select(
            [
                "id",
                "provider_id",
                "name",
                "api_key_encrypted",
                "api_key_ref",
                "max_concurrency",
                "weight",
                "enabled",
                "deleted",
                "last_error",
                "created_at",
                "updated_at",
                "provider_own",
            ],
            sa.select(
                own_id,
                _providers.c.id,
                sa.literal("default"),
                sa.null(),
                sa.literal(""),
                sa.literal(0),
                sa.literal(1),
                sa.true(),
                sa.false(),
                sa.literal(""),
                _providers.c.created_at,
                _providers.c.created_at,
                sa.true(),
            ).where(keyed),
        )
    )
    op.execute(
        _submissions.update()
        .where(
            _submissions.c.key_id == "",
            _submissions.c.active.is_(True),
            _submissions.c.provider_id.in_(sa.select(_providers.c.id).where(keyed)),
        )
        .values(key_id=sa.literal("pkey_") + _submissions.c.provider_id)
    )


def downgrade() -> None:
    op.execute(_submissions.update().where(_submissions.c.key_id.like("pkey_prv_%")).values(key_id=""))
    op.execute(_keys.delete().where(_keys.c.provider_own.is_(True)))
    with op.batch_alter_table("provider_keys") as batch:
        batch.drop_column("cooled_until")
        batch.drop_column("provider_own")
    with op.batch_alter_table("providers") as batch:
        batch.drop_column("max_concurrency")
