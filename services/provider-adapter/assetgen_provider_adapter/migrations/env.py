"""Alembic environment of the provider-adapter's catalog database."""

from alembic import context

from assetgen_provider_adapter.db import Base
from assetgen_runtime.database import run_alembic_env

run_alembic_env(context, Base.metadata)
