"""Alembic environment of the orchestrator's database."""

from alembic import context

from assetgen_orchestrator.models import metadata
from assetgen_runtime.database import run_alembic_env

run_alembic_env(context, metadata)
