"""Provider limits counted in the shared catalog database, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from assetgen_provider_adapter.key_pool import Slots
from assetgen_provider_adapter.ledger import Limits, SubmissionLedger
from assetgen_provider_adapter.main import MIGRATIONS
from assetgen_runtime.database import create_engine, migrate


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[SubmissionLedger]:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_catalog")
    engine = create_engine(database_url)
    yield SubmissionLedger(engine)
    await engine.dispose()


async def test_concurrency_counts_running_tasks_until_they_finish(ledger: SubmissionLedger) -> None:
    provider, limits = f"prv_{uuid.uuid4().hex}", Limits(max_concurrency=2, retry_seconds=3)
    for index in range(2):
        assert await ledger.begin(f"a{index}-{provider}", 1, "m", provider) is None
        assert await ledger.hold_back(provider, limits, running_for=600) == 0
        await ledger.record(f"a{index}-{provider}", 1, f"t{index}", "{}")
    assert await ledger.begin(f"a2-{provider}", 1, "m", provider) is None
    assert await ledger.hold_back(provider, limits, running_for=600) == 3
    await ledger.abandon(f"a2-{provider}", 1)
    await ledger.finish([(f"a0-{provider}", "t0")])
    assert await ledger.begin(f"a2-{provider}", 1, "m", provider) is None
    assert await ledger.hold_back(provider, limits, running_for=600) == 0
    # A task whose poll deadline passed no longer holds a slot, even if nobody saw it end.
    assert await ledger.hold_back(provider, limits, running_for=0) == 0


async def test_a_terminal_submit_frees_its_slot_at_once(ledger: SubmissionLedger) -> None:
    provider, limits = f"prv_{uuid.uuid4().hex}", Limits(max_concurrency=1)
    assert await ledger.begin(f"s-{provider}", 1, "m", provider) is None
    await ledger.record(f"s-{provider}", 1, "", "{}", running=False)
    assert await ledger.begin(f"t-{provider}", 1, "m", provider) is None
    assert await ledger.hold_back(provider, limits, running_for=600) == 0


async def test_submit_rate_waits_until_the_window_frees_a_place(ledger: SubmissionLedger) -> None:
    provider, limits = f"prv_{uuid.uuid4().hex}", Limits(submit_count=2, submit_period=60)
    for index in range(2):
        assert await ledger.begin(f"r{index}-{provider}", 1, "m", provider) is None
        assert await ledger.hold_back(provider, limits, running_for=600) == 0
    assert await ledger.begin(f"r2-{provider}", 1, "m", provider) is None
    wait = await ledger.hold_back(provider, limits, running_for=600)
    assert 55 < wait <= 60
    other = f"prv_{uuid.uuid4().hex}"
    assert await ledger.begin(f"o-{other}", 1, "m", other) is None
    assert await ledger.hold_back(other, limits, running_for=600) == 0


async def test_racing_claims_never_exceed_the_limit(ledger: SubmissionLedger) -> None:
    provider, limits = f"prv_{uuid.uuid4().hex}", Limits(max_concurrency=1)

    async def claim(index: int) -> bool:
        asset = f"c{index}-{provider}"
        assert await ledger.begin(asset, 1, "m", provider) is None
        if await ledger.hold_back(provider, limits, running_for=600):
            await ledger.abandon(asset, 1)
            return False
        return True

    admitted = await asyncio.gather(*(claim(index) for index in range(6)))
    assert sum(admitted) <= 1


async def test_tasks_finished_together_free_their_slots_with_one_call(ledger: SubmissionLedger) -> None:
    provider, limits = f"prv_{uuid.uuid4().hex}", Limits(max_concurrency=3, retry_seconds=3)
    for index in range(3):
        assert await ledger.begin(f"a{index}-{provider}", 1, "m", provider) is None
        await ledger.record(f"a{index}-{provider}", 1, f"t{index}", "{}")
    # The pair must match: a0 with a1's task id frees nothing.
    await ledger.finish([(f"a0-{provider}", "t1"), (f"a1-{provider}", "t1"), (f"a2-{provider}", "t2")])
    await ledger.finish([])
    assert await ledger.begin(f"a3-{provider}", 1, "m", provider) is None
    assert await ledger.begin(f"a4-{provider}", 1, "m", provider) is None
    # Running: a0 (still), a3 and a4 — three of three, so the next one waits.
    assert await ledger.begin(f"a5-{provider}", 1, "m", provider) is None
    assert await ledger.hold_back(provider, limits, running_for=600) == 3


async def test_free_slots_are_what_the_tighter_profile_limit_leaves(ledger: SubmissionLedger) -> None:
    provider = f"prv_{uuid.uuid4().hex}"
    limits = Limits(max_concurrency=3, submit_count=2, submit_period=60)
    assert await ledger.free_slots(provider, Limits(), running_for=600) is None  # nothing limited
    assert await ledger.free_slots(provider, limits, running_for=600, claimed=False) == Slots(2, 2)
    assert await ledger.begin(f"f0-{provider}", 1, "m", provider) is None
    # The caller's own claim is not held against it; another's is.
    assert await ledger.free_slots(provider, limits, running_for=600) == Slots(2, 2)
    assert await ledger.free_slots(provider, limits, running_for=600, claimed=False) == Slots(1, 2)
    await ledger.record(f"f0-{provider}", 1, "t0", "{}")
    assert await ledger.begin(f"f1-{provider}", 1, "m", provider) is None
    await ledger.record(f"f1-{provider}", 1, "t1", "{}")
    # Two sent in the window: the rate leaves none, though one more could run at once.
    assert await ledger.free_slots(provider, limits, running_for=600, claimed=False) == Slots(0, 2)
    only_running = Limits(max_concurrency=3)
    assert await ledger.free_slots(provider, only_running, running_for=600, claimed=False) == Slots(1, 3)
    await ledger.finish([(f"f0-{provider}", "t0")])
    assert await ledger.free_slots(provider, only_running, running_for=600, claimed=False) == Slots(2, 3)
