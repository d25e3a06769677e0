"""The submission ledger on SQLite and PostgreSQL, and concurrent duplicate submits over gRPC."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from assetgen.v1 import common_pb2, gateway_pb2, provider_adapter_pb2, provider_adapter_pb2_grpc
from assetgen_dev.demo_provider import start_demo_provider
from assetgen_provider_adapter.ledger import SubmissionLedger
from assetgen_provider_adapter.main import MIGRATIONS, run_server
from assetgen_provider_adapter.settings import ProviderAdapterSettings
from assetgen_runtime.database import create_engine, migrate, session_factory
from assetgen_runtime.errors import FailedPrecondition
from assetgen_runtime.settings import load


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[SubmissionLedger]:
    await migrate(database_url, MIGRATIONS, version_table="alembic_version_catalog")
    engine = create_engine(database_url)
    yield SubmissionLedger(session_factory(engine))
    await engine.dispose()


async def test_claim_record_and_repeat(ledger: SubmissionLedger) -> None:
    asset = f"ast_{uuid.uuid4().hex}"
    assert await ledger.begin(asset, 1, "mdl_1") is None
    with pytest.raises(FailedPrecondition, match="will not be submitted again"):
        await ledger.begin(asset, 1, "mdl_1")
    await ledger.record(asset, 1, "task_9", '{"taskId": "task_9"}')
    assert await ledger.begin(asset, 1, "mdl_1") == '{"taskId": "task_9"}'
    assert await ledger.begin(asset, 2, "mdl_1") is None


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
    outcomes = await asyncio.gather(*(ledger.begin(asset, 1, "m") for _ in range(5)), return_exceptions=True)
    assert sum(outcome is None for outcome in outcomes) == 1
    assert all(isinstance(outcome, FailedPrecondition) for outcome in outcomes if outcome is not None)


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
        assert all(o == grpc.StatusCode.FAILED_PRECONDITION for o in outcomes if o not in statuses)
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.get(f"{base_url}/_demo/stats")).json()["submits"] == 1
        assert (await stub.SubmitTask(request, timeout=10)).task_id == statuses[0].task_id
    finally:
        await channel.close()
        await service.stop()
        await runner.cleanup()
