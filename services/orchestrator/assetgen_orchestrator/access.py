"""Data access for projects and API keys, and the one question every call asks: which project?

Projects and keys are few and change rarely, so this store uses plain single statements; the box
it guards stays in :mod:`.store`. A project is named by id or by name wherever a caller names one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from assetgen_orchestrator.apikeys import mint_key, parse_key, secret_matches
from assetgen_orchestrator.models import (
    DEFAULT_PROJECT_ID,
    ApiKeyRow,
    ProjectRow,
    api_keys_table,
    boxes_table,
    projects_table,
    utcnow,
)
from assetgen_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from assetgen_runtime.ids import new_id
from assetgen_runtime.money import AmountError, parse_amount
from assetgen_runtime.scopes import parse_scopes

__all__ = ["AccessStore", "project_budget", "project_name"]

_PROJECTS = projects_table
_KEYS = api_keys_table
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_MAX_KEY_NAME = 200


def project_name(raw: str) -> str:
    """A valid project name: lower-case letters, digits, '-' and '_', at most 63 characters."""
    name = raw.strip()
    if not _PROJECT_NAME.fullmatch(name):
        raise InvalidArgument(
            "project name must be 1-63 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return name


def project_budget(raw: str) -> str | None:
    """A budget as stored: a decimal string (``"100.00"``), or None for ''."""
    if not raw.strip():
        return None
    try:
        return str(parse_amount(raw, "budget"))
    except AmountError as exc:
        raise InvalidArgument(str(exc)) from None


class AccessStore:
    """Projects and API keys in the orchestrator's database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    async def _rows(self, query: Select[Any]) -> Sequence[Mapping[str, Any]]:
        async with self._autocommit.connect() as connection:
            return (await connection.execute(query)).mappings().all()

    # -- projects -------------------------------------------------------------------------------

    async def create_project(self, name: str, budget: str = "") -> ProjectRow:
        """A new project (with a budget, a decimal string, if given); AlreadyExists if the name is taken."""
        project = ProjectRow(id=new_id("prj"), name=project_name(name), budget=project_budget(budget))
        try:
            async with self._autocommit.connect() as connection:
                await connection.execute(insert(_PROJECTS).values(dataclasses.asdict(project)))
        except IntegrityError:
            raise AlreadyExists(f"project {project.name!r} already exists") from None
        return project

    async def list_projects(self) -> list[ProjectRow]:
        """Every project, by name."""
        return [ProjectRow(**row) for row in await self._rows(select(_PROJECTS).order_by(_PROJECTS.c.name))]

    async def get_project(self, id_or_name: str) -> ProjectRow:
        """The project with this id or name, or NotFound."""
        query = select(_PROJECTS).where(or_(_PROJECTS.c.id == id_or_name, _PROJECTS.c.name == id_or_name))
        rows = await self._rows(query)
        if not id_or_name or not rows:
            raise NotFound(f"project {id_or_name!r} not found")
        return ProjectRow(**rows[0])

    async def rename_project(self, id_or_name: str, name: str) -> ProjectRow:
        """Renames a project; AlreadyExists if the new name is taken."""
        project = await self.get_project(id_or_name)
        renamed = dataclasses.replace(project, name=project_name(name))
        try:
            async with self._autocommit.connect() as connection:
                await connection.execute(
                    update(_PROJECTS).where(_PROJECTS.c.id == project.id).values(name=renamed.name)
                )
        except IntegrityError:
            raise AlreadyExists(f"project {renamed.name!r} already exists") from None
        return renamed

    async def set_budget(self, id_or_name: str, budget: str) -> ProjectRow:
        """Sets a project's budget ('' removes it)."""
        project = await self.get_project(id_or_name)
        changed = dataclasses.replace(project, budget=project_budget(budget))
        async with self._autocommit.connect() as connection:
            await connection.execute(
                update(_PROJECTS).where(_PROJECTS.c.id == project.id).values(budget=changed.budget)
            )
        return changed

    async def delete_project(self, id_or_name: str) -> None:
        """Deletes a project that has no boxes, with its keys; the default project stays."""
        project = await self.get_project(id_or_name)
        if project.id == DEFAULT_PROJECT_ID:
            raise FailedPrecondition("the default project cannot be deleted")
        async with self._engine.begin() as connection:
            boxes = (
                select(func.count()).select_from(boxes_table).where(boxes_table.c.project_id == project.id)
            )
            if (await connection.execute(boxes)).scalar_one():
                raise FailedPrecondition(f"project {project.name!r} still has boxes; delete them first")
            await connection.execute(delete(_KEYS).where(_KEYS.c.project_id == project.id))
            await connection.execute(delete(_PROJECTS).where(_PROJECTS.c.id == project.id))

    # -- keys -----------------------------------------------------------------------------------

    async def create_key(self, project: str, name: str, scopes: Sequence[str]) -> tuple[ApiKeyRow, str]:
        """A new key of ``project`` and the whole key (its secret), which is not kept."""
        name = name.strip()
        if not name or len(name) > _MAX_KEY_NAME:
            raise InvalidArgument(f"key name is required, at most {_MAX_KEY_NAME} characters")
        granted = parse_scopes(scopes)
        owner = await self.get_project(project)
        key_id, key, hashed = mint_key()
        row = ApiKeyRow(
            id=key_id,
            project_id=owner.id,
            name=name,
            scopes=" ".join(granted),
            secret_sha256=hashed,
        )
        async with self._autocommit.connect() as connection:
            await connection.execute(insert(_KEYS).values(dataclasses.asdict(row)))
        return row, key

    async def list_keys(self, project: str = "") -> list[ApiKeyRow]:
        """Keys newest first, of one project when named."""
        query = select(_KEYS).order_by(_KEYS.c.id.desc())
        if project:
            query = query.where(_KEYS.c.project_id == (await self.get_project(project)).id)
        return [ApiKeyRow(**row) for row in await self._rows(query)]

    async def revoke_key(self, key_id: str) -> ApiKeyRow:
        """Marks a key revoked (revoking twice keeps the first time); NotFound if there is none."""
        async with self._autocommit.connect() as connection:
            await connection.execute(
                update(_KEYS)
                .where(_KEYS.c.id == key_id, _KEYS.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        rows = await self._rows(select(_KEYS).where(_KEYS.c.id == key_id))
        if not rows:
            raise NotFound(f"API key {key_id!r} not found")
        return ApiKeyRow(**rows[0])

    async def authenticate(self, key: str) -> ApiKeyRow:
        """The valid key ``key`` is, or Unauthenticated (unknown, malformed, wrong secret, revoked)."""
        parsed = parse_key(key)
        if parsed is not None:
            key_id, secret = parsed
            rows = await self._rows(select(_KEYS).where(_KEYS.c.id == key_id))
            if rows:
                row = ApiKeyRow(**rows[0])
                if secret_matches(secret, row.secret_sha256) and row.revoked_at is None:
                    return row
        raise Unauthenticated("invalid or revoked API key")
