"""The submission ledger on SQLite and PostgreSQL, and concurrent duplicate submits over gRPC."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from assetgen.v1 import common_pb2, gateway_pb2, provider_adapter_pb2, provider_adapter_pb2_grpc
from assetgen_dev.demo_provider import start_demo_provider
from assetgen_provider_adapter.db import utcnow
from assetgen_provider_adapter.errors import SubmissionInProgress, SubmitOutcomeUnknown
from assetgen_provider_adapter.ledger import SubmissionLedger, SubmissionWire
from assetgen_provider_adapter.main import MIGRATIONS, run_server
from assetgen_provider_adapter.settings import ProviderAdapterSettings
from assetgen_runtime.database import create_engine, migrate
from assetgen_runtime.settings import load

# How long a claim counts as in progress in these tests (SubmitTask derives it from the profile).
WINDOW = 90.0


@dataclass
class Clock:
    """The ledger's notion of now, moved by the test instead of waiting."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock(utcnow())


@pytest.fixture
async def ledger(database_url: str, clock: Clock) -> AsyncIterator[SubmissionLedger]:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_catalog")
    engine = create_engine(database_url)
    yield SubmissionLedger(engine, clock=clock)
    await engine.dispose()


async def test_claim_record_and_repeat(ledger: SubmissionLedger) -> None:
    asset = f"ast_{uuid.uuid4().hex}"
    assert await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW) is None
    await ledger.record(asset, 1, "task_9", '{"taskId": "task_9"}')
    assert await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW) == '{"taskId": "task_9"}'
    assert await ledger.begin(asset, 2, "mdl_1", in_progress_for=WINDOW) is None


async def test_concurrent_claims_and_outcomes_each_get_their_own_answer(ledger: SubmissionLedger) -> None:
    """On PostgreSQL these are committed as groups; a repeated claim in one group still loses."""
    assets = [f"ast_{uuid.uuid4().hex}" for _ in range(5)]
    claims = await asyncio.gather(
        *(ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW) for asset in assets),
        ledger.begin(assets[0], 1, "mdl_1", in_progress_for=WINDOW),
        return_exceptions=True,
    )
    assert claims[:5] == [None] * 5
    assert isinstance(claims[5], SubmissionInProgress)
    await asyncio.gather(*(ledger.record(asset, 1, f"task_{asset}", f'"{asset}"') for asset in assets))
    repeats = await asyncio.gather(*(ledger.begin(asset, 1, "mdl_1") for asset in assets))
    assert repeats == [f'"{asset}"' for asset in assets]


async def test_claims_made_together_share_one_statement_on_postgresql(postgres_url: str) -> None:
    await migrate(postgres_url, MIGRATIONS, version_table="alembic_version_catalog")
    engine = create_engine(postgres_url)
    try:
        ledger = SubmissionLedger(engine, write_linger=0.05)
        statements: list[str] = []
        execute = ledger._execute

        async def counting(statement: Any, parameters: dict[str, Any]) -> list[Any]:
            statements.append(str(statement).split()[0])
            return await execute(statement, parameters)

        ledger._execute = counting  # type: ignore[method-assign]
        assets = [f"ast_{uuid.uuid4().hex}" for _ in range(20)]
        assert await asyncio.gather(*(ledger.begin(asset, 1, "mdl_1") for asset in assets)) == [None] * 20
        await asyncio.gather(*(SubmissionWire(ledger, asset, 1).sending() for asset in assets))
        await asyncio.gather(*(ledger.record(asset, 1, "t", "{}") for asset in assets))
        # Twenty claims in one, their going on the wire in another, twenty outcomes in a third.
        assert statements == ["WITH", "WITH", "WITH"]
        assert await asyncio.gather(*(ledger.begin(asset, 1, "mdl_1") for asset in assets)) == ["{}"] * 20
    finally:
        await engine.dispose()


async def test_a_young_claim_is_in_progress_and_an_old_one_unknown(
    ledger: SubmissionLedger, clock: Clock
) -> None:
    asset = f"ast_{uuid.uuid4().hex}"
    assert await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW) is None
    await SubmissionWire(ledger, asset, 1).sending()  # its request goes out
    # The first call may still be waiting for the provider: the repeat is told to come back.
    clock.advance(WINDOW - 1)
    with pytest.raises(SubmissionInProgress, match=f"asset {asset} attempt 1 is in progress; retry"):
        await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW)
    # No submit takes that long: the first call died mid-flight and the provider may have the task.
    clock.advance(2)
    with pytest.raises(SubmitOutcomeUnknown, match="will not be submitted again"):
        await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW)
    # Its outcome, once recorded after all, is what a repeat gets.
    await ledger.record(asset, 1, "task_late", "{}")
    assert await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW) == "{}"


async def test_a_claim_that_never_went_on_the_wire_is_taken_over_not_unknown(
    ledger: SubmissionLedger, clock: Clock
) -> None:
    """Its call died after claiming, before sending (checking limits, building the request)."""
    asset = f"ast_{uuid.uuid4().hex}"
    assert await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW) is None
    clock.advance(WINDOW - 1)
    with pytest.raises(SubmissionInProgress):  # it may still send
        await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW)
    clock.advance(2)
    assert await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW) is None  # taken over
    wire = SubmissionWire(ledger, asset, 1)
    await wire.sending()  # the new owner puts it on the wire
    clock.advance(WINDOW + 1)
    with pytest.raises(SubmitOutcomeUnknown):  # and dies there: now the outcome is unknown
        await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW)


async def test_a_claim_taken_over_in_the_same_group_as_its_old_owners_send_stays_with_the_new_owner(
    postgres_url: str,
) -> None:
    """Going on the wire together (one statement), each send still checks its own claim."""
    await migrate(postgres_url, MIGRATIONS, version_table="alembic_version_catalog")
    engine = create_engine(postgres_url)
    try:
        clock = Clock(utcnow())
        ledger = SubmissionLedger(engine, clock=clock, write_linger=0.05)
        stale, fresh = f"ast_{uuid.uuid4().hex}", f"ast_{uuid.uuid4().hex}"
        assert await ledger.begin(stale, 1, "mdl_1", in_progress_for=WINDOW) is None
        old_owner = SubmissionWire(ledger, stale, 1)  # claimed, then stalled before sending
        clock.advance(WINDOW + 1)
        assert await ledger.begin(stale, 1, "mdl_1", in_progress_for=WINDOW) is None  # taken over
        assert await ledger.begin(fresh, 1, "mdl_1", in_progress_for=WINDOW) is None
        outcomes = await asyncio.gather(
            old_owner.sending(), SubmissionWire(ledger, fresh, 1).sending(), return_exceptions=True
        )
        assert isinstance(outcomes[0], SubmissionInProgress) and outcomes[1] is None
    finally:
        await engine.dispose()


async def test_a_lost_answer_is_unknown_at_once(ledger: SubmissionLedger) -> None:
    asset = f"ast_{uuid.uuid4().hex}"
    assert await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW) is None
    await SubmissionWire(ledger, asset, 1).sending()
    await ledger.record_unknown(asset, 1)
    with pytest.raises(SubmitOutcomeUnknown, match="answer was lost"):
        await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW)
    await ledger.abandon(asset, 1)  # only an unsent claim can be released
    with pytest.raises(SubmitOutcomeUnknown):
        await ledger.begin(asset, 1, "mdl_1", in_progress_for=WINDOW)


async def test_an_abandoned_claim_can_be_taken_again_but_a_sent_one_is_kept(ledger: SubmissionLedger) -> None:
    asset = f"ast_{uuid.uuid4().hex}"
    assert await ledger.begin(asset, 1, "mdl_1") is None
    await ledger.abandon(asset, 1)
    assert await ledger.begin(asset, 1, "mdl_1") is None
    await ledger.record(asset, 1, "t", "{}")
    await ledger.abandon(asset, 1)
    assert await ledger.begin(asset, 1, "mdl_1") == "{}"


async def test_concurrent_claims_let_exactly_one_through(ledger: SubmissionLedger) -> None:
    asset = f"ast_{uuid.uuid4().hex}"
    outcomes = await asyncio.gather(
        *(ledger.begin(asset, 1, "m", in_progress_for=WINDOW) for _ in range(5)), return_exceptions=True
    )
    assert sum(outcome is None for outcome in outcomes) == 1
    assert all(isinstance(outcome, SubmissionInProgress) for outcome in outcomes if outcome is not None)


async def test_concurrent_duplicate_submits_reach_the_provider_once(
    database_url: str, tmp_path: Path
) -> None:
    runner, base_url = await start_demo_provider("127.0.0.1", 0, "k", 5.0)
    settings = load(
        ProviderAdapterSettings,
        environ={},
        catalog_database_url=database_url,
        data_dir=str(tmp_path),
        secret_key="s",
        allowed_fetch_networks=("127.0.0.0/8",),  # the fake provider listens on loopback
    )
    service = await run_server(settings, port=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        stub = provider_adapter_pb2_grpc.ProviderAdapterServiceStub(channel)
        await stub.CreateProvider(
            gateway_pb2.CreateProviderRequest(name="demo", preset="kie-ai", base_url=base_url, api_key="k"),
            timeout=10,
        )
        await stub.CreateModel(
            gateway_pb2.CreateModelRequest(
                provider="demo",
                name="img",
                model_type=common_pb2.MODEL_TYPE_IMAGE,
                request_schema_json=json.dumps({"model": "demo/image", "input": {"prompt": "{{prompt}}"}}),
            ),
            timeout=10,
        )
        request = provider_adapter_pb2.SubmitTaskRequest(
            asset_id="ast_same", attempt=1, model="img", variables_json='{"prompt": "p"}'
        )

        async def submit() -> Any:
            try:
                return await stub.SubmitTask(request, timeout=10)
            except grpc.aio.AioRpcError as error:
                return error.code()

        outcomes = await asyncio.gather(*(submit() for _ in range(4)))
        statuses = [o for o in outcomes if isinstance(o, provider_adapter_pb2.TaskStatus)]
        assert statuses and len({status.task_id for status in statuses}) == 1
        # The others found the winner's claim still sending: transient, to be retried.
        assert all(o == grpc.StatusCode.ABORTED for o in outcomes if o not in statuses)
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"{base_url}/_demo/stats")).json()["submits"] == 1
        assert (await stub.SubmitTask(request, timeout=10)).task_id == statuses[0].task_id
    finally:
        await channel.close()
        await service.stop()
        await runner.cleanup()
