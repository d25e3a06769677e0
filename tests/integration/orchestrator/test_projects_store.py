"""Projects and API keys on real SQLite and PostgreSQL: the migration that adds them, and their store."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Table, text

from assetgen_orchestrator.access import AccessStore
from assetgen_orchestrator.main import MIGRATIONS
from assetgen_orchestrator.models import (
    DEFAULT_PROJECT_ID,
    ApiKeyRow,
    ProjectRow,
    api_keys_table,
    projects_table,
)
from assetgen_orchestrator.store import AssetStore
from assetgen_runtime.database import create_engine, migrate
from assetgen_runtime.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from assetgen_runtime.ids import new_id

VERSION_TABLE = "alembic_version_orchestrator"


async def _upgrade(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["version_table"] = VERSION_TABLE
    await asyncio.to_thread(command.upgrade, config, revision)


@pytest.mark.parametrize(("row", "table"), [(ProjectRow, projects_table), (ApiKeyRow, api_keys_table)])
def test_a_row_type_has_one_field_per_column(row: type, table: Table) -> None:
    assert {field.name for field in dataclasses.fields(row)} == {column.key for column in table.columns}


async def test_the_migration_moves_existing_boxes_into_the_default_project(database_url: str) -> None:
    await _upgrade(database_url, "0003")
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO boxes (id, name, created_at, updated_at) VALUES (:id, 'old', :at, :at)"),
                {"id": "box_old", "at": dt.datetime.now(dt.UTC)},
            )
        await migrate(database_url, MIGRATIONS, version_table=VERSION_TABLE)
        await migrate(database_url, MIGRATIONS, version_table=VERSION_TABLE)  # a no-op the second time
        box = await AssetStore(engine).get_box("box_old")
        assert box.project_id == DEFAULT_PROJECT_ID
        projects = await AccessStore(engine).list_projects()
        assert [(project.id, project.name) for project in projects] == [("default", "default")]
    finally:
        await engine.dispose()


@pytest.fixture
async def stores(database_url: str) -> AsyncIterator[tuple[AccessStore, AssetStore]]:
    await migrate(database_url, MIGRATIONS, version_table=VERSION_TABLE)
    engine = create_engine(database_url)
    yield AccessStore(engine), AssetStore(engine)
    await engine.dispose()


async def test_projects_have_unique_valid_names_and_go_only_when_empty(
    stores: tuple[AccessStore, AssetStore],
) -> None:
    access, assets = stores
    project = await access.create_project("team-a")
    with pytest.raises(AlreadyExists):
        await access.create_project("team-a")
    with pytest.raises(InvalidArgument):
        await access.create_project("Team A")
    assert await access.get_project("team-a") == await access.get_project(project.id)
    renamed = await access.rename_project(project.id, "team-b")
    assert (await access.get_project("team-b")).id == project.id == renamed.id
    with pytest.raises(AlreadyExists):
        await access.rename_project("team-b", "default")
    box = await assets.create_box(new_id("box"), "theirs", project.id)
    page = await assets.list_boxes(50, "", project.id)
    assert [item.id for item in page.items] == [box.id]
    assert box.id not in {item.id for item in (await assets.list_boxes(50, "", DEFAULT_PROJECT_ID)).items}
    with pytest.raises(FailedPrecondition):
        await access.delete_project(project.id)
    await access.create_key(project.id, "ci", ["read"])
    await assets.delete_box(box.id)
    await access.delete_project("team-b")
    with pytest.raises(NotFound):
        await access.get_project(project.id)
    with pytest.raises(FailedPrecondition):
        await access.delete_project(DEFAULT_PROJECT_ID)


async def test_a_key_authenticates_until_it_is_revoked(stores: tuple[AccessStore, AssetStore]) -> None:
    access, _ = stores
    row, key = await access.create_key("default", "ci", ["write", "read"])
    assert row.scopes == "read write" and key not in row.secret_sha256
    assert (await access.authenticate(key)).id == row.id
    for wrong in (
        key[:-1] + ("0" if key[-1] != "0" else "1"),
        "agk_nothing",
        "",
        key.replace(row.id, new_id("key")),
    ):
        with pytest.raises(Unauthenticated):
            await access.authenticate(wrong)
    assert [item.id for item in await access.list_keys("default")][:1] == [row.id]
    revoked = await access.revoke_key(row.id)
    assert revoked.revoked_at is not None
    assert (await access.revoke_key(row.id)).revoked_at == revoked.revoked_at
    with pytest.raises(Unauthenticated):
        await access.authenticate(key)
    with pytest.raises(NotFound):
        await access.revoke_key("key_missing")
    with pytest.raises(NotFound):
        await access.create_key("nope", "ci", ["read"])
    with pytest.raises(InvalidArgument):
        await access.create_key("default", "ci", ["sudo"])
