"""Alembic environment of the provider-adapter's catalog database."""

from alembic import context
from assetgen_runtime.database import run_alembic_env

from assetgen_provider_adapter.db import Base

run_alembic_env(context, Base.metadata)
