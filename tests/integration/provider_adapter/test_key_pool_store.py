"""The key pool in the shared catalog database, as two adapter replicas see it (SQLite, PostgreSQL).

A 429's cooling is stored on the key, so the other replica leaves the key alone too; a provider's
own key is its pool's first key, created with it, rotated by a new key and gone with the provider;
providers that existed before the pool get their own key by migration, their tasks in flight
counted for it. The queue gives each waiter its place, in turns across projects.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from assetgen_provider_adapter.catalog import Catalog
from assetgen_provider_adapter.credentials import SecretBox
from assetgen_provider_adapter.db import ProviderRow
from assetgen_provider_adapter.key_pool import KeyPool, PoolFull, own_key_id
from assetgen_provider_adapter.ledger import SubmissionLedger
from assetgen_provider_adapter.main import MIGRATIONS
from assetgen_provider_adapter.messages import key_message
from assetgen_provider_adapter.submission_queue import SubmissionQueue
from assetgen_runtime.database import create_engine, migrate, session_factory


@dataclass
class Replicas:
    catalog: Catalog
    ledger: SubmissionLedger
    pools: tuple[KeyPool, KeyPool]


@pytest.fixture
async def replicas(database_url: str) -> AsyncIterator[Replicas]:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_catalog")
    engines = [create_engine(database_url) for _ in range(2)]
    box = SecretBox.from_passphrase("test")
    pools = tuple(KeyPool(engine, session_factory(engine), box) for engine in engines)
    yield Replicas(
        Catalog(session_factory(engines[0]), box, cache_ttl=0), SubmissionLedger(engines[0]), pools
    )
    for engine in engines:
        await engine.dispose()


async def _provider(replicas: Replicas) -> ProviderRow:
    name = f"kie-{uuid.uuid4().hex[:8]}"
    return await replicas.catalog.create_provider(name, "kie-ai", "https://api.kie.ai", "own-secret")


async def _claim(replicas: Replicas, pool: KeyPool, provider: ProviderRow) -> str:
    asset = f"ast_{uuid.uuid4().hex}"
    assert await replicas.ledger.begin(asset, 1, "m", provider.id) is None
    chosen = await pool.claim(provider, asset, 1, running_for=600)
    assert chosen is not None
    return chosen.name


async def test_a_429_cools_a_key_for_every_replica(replicas: Replicas) -> None:
    provider = await _provider(replicas)
    first, second = replicas.pools
    other = await first.create(provider.id, "b", api_key="b-secret")
    await first.cool(own_key_id(provider.id), 60)  # replica one heard the 429
    assert {await _claim(replicas, second, provider) for _ in range(3)} == {"b"}
    listed = {view.row.name: key_message(view) for view in await second.list_keys(provider.id)}
    assert listed["default"].HasField("cooled_until") and not listed["b"].HasField("cooled_until")
    await second.cool(other.row.id, 60)
    with pytest.raises(PoolFull):
        await _claim(replicas, first, provider)


async def test_the_providers_own_key_is_its_first_key_rotated_with_it(replicas: Replicas) -> None:
    provider = await _provider(replicas)
    pool = replicas.pools[0]
    (own,) = await pool.list_keys(provider.name)
    assert (own.row.id, own.row.name, own.state) == (own_key_id(provider.id), "default", "active")
    assert await pool.secret(own.row.id) is None  # the provider's credential, as stored now
    assert await pool.disable(own.row.id, "401: refused")
    assert not await pool.disable(own.row.id, "401: refused")  # announced once
    await replicas.catalog.update_provider(provider.name, api_key="new-secret")
    (own,) = await pool.list_keys(provider.name)
    assert (own.state, own.row.last_error) == ("active", "")
    # Removing the provider's key takes its own key out of the pool.
    await replicas.catalog.update_provider(provider.name, api_key_ref="")
    assert await pool.list_keys(provider.name) == []
    await replicas.catalog.delete_provider(provider.name)  # its key rows go with it


def _upgrade(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["version_table"] = "alembic_version_catalog"
    command.upgrade(config, revision)


async def test_providers_from_before_the_pool_get_their_own_key_by_migration(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/catalog.db"
    await asyncio.to_thread(_upgrade, url, "0007_submission_queue")
    engine = create_engine(url)
    now = "2026-12-01 10:00:00.000000"
    async with engine.begin() as connection:
        for provider, key in (("prv_keyed", "'sealed'"), ("prv_open", "NULL")):
            await connection.execute(
                text(
                    "INSERT INTO providers (id, name, preset, base_url, profile_json, api_key_encrypted, "
                    f"api_key_ref, created_at, updated_at) VALUES ('{provider}', '{provider}', 'kie-ai', "
                    f"'https://api.kie.ai', '{{}}', {key}, '', '{now}', '{now}')"
                )
            )
        await connection.execute(
            text(
                "INSERT INTO submissions (asset_id, attempt, model_id, state, task_id, status_json, "
                "created_at, updated_at, provider_id, active, key_id) VALUES ('ast_1', 1, 'm', 'SENT', "
                f"'t1', '{{}}', '{now}', '{now}', 'prv_keyed', 1, '')"
            )
        )
    await engine.dispose()
    await asyncio.to_thread(_upgrade, url, "head")
    engine = create_engine(url)
    async with engine.connect() as connection:
        keys = (
            await connection.execute(
                text("SELECT id, provider_id, name, enabled, provider_own FROM provider_keys")
            )
        ).all()
        key_of_task = (await connection.execute(text("SELECT key_id FROM submissions"))).scalar_one()
    await engine.dispose()
    assert [tuple(row) for row in keys] == [("pkey_prv_keyed", "prv_keyed", "default", 1, 1)]
    assert key_of_task == "pkey_prv_keyed"


async def test_the_queue_counts_each_waiters_place_in_turns_across_projects(database_url: str) -> None:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_catalog")
    engine = create_engine(database_url)
    queue = SubmissionQueue(engine)
    provider = f"prv_{uuid.uuid4().hex}"
    try:
        # Asset ids sort by acceptance: alpha's three came before beta's one.
        for asset, project in (("ast_1", "alpha"), ("ast_2", "alpha"), ("ast_3", "alpha"), ("ast_4", "beta")):
            await queue.place(provider, asset, 1, project)
        places = {
            asset: await queue.place(provider, asset, 1, "") for asset in ("ast_1", "ast_2", "ast_3", "ast_4")
        }
        # alpha 1, beta 1, alpha 2, alpha 3: 0-based places, four waiting.
        assert places == {"ast_1": (0, 4), "ast_4": (1, 4), "ast_2": (2, 4), "ast_3": (3, 4)}
        assert await queue.waiting_place(provider, "ast_9", 1) is None  # never joined
        assert await queue.waiting_place(provider, "ast_3", 1) == (3, 4)  # asks again, nothing claimed
        await queue.leave(provider, "ast_1", 1)  # started: alpha has had a turn
        assert await queue.waiting_place(provider, "ast_1", 1) is None  # started: asks the usual way
        assert await queue.place(provider, "ast_4", 1, "beta") == (0, 3)
        assert await queue.place(provider, "ast_2", 1, "alpha") == (1, 3)
        await queue.withdraw("ast_4")
        assert await queue.length(provider) == 2
    finally:
        await engine.dispose()
