"""SubmitTask's idempotency per (asset_id, attempt), PollTasks' bounds, the catalog cache, and keys
never returned."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from sqlalchemy import select

from assetgen.v1 import common_pb2, gateway_pb2, provider_adapter_pb2
from assetgen_provider_adapter.catalog import Catalog
from assetgen_provider_adapter.credentials import SecretBox
from assetgen_provider_adapter.db import ProviderRow, SubmissionRow, utcnow
from assetgen_provider_adapter.engine import ProviderEngine, RetryPolicy
from assetgen_provider_adapter.errors import SubmissionInProgress, SubmitOutcomeUnknown
from assetgen_provider_adapter.ledger import SENDING, SENT, UNKNOWN, SubmissionLedger, SubmissionWire
from assetgen_provider_adapter.main import MIGRATIONS
from assetgen_provider_adapter.service import ProviderAdapterServicer
from assetgen_runtime.database import create_engine, migrate, session_factory
from assetgen_runtime.errors import FailedPrecondition, InvalidArgument, Unavailable
from assetgen_runtime.http import DirectClient

KEY = "sk-unit-secret"
ACCEPTED = {"code": 200, "msg": "success", "data": {"taskId": "task_1"}}


@dataclass
class Harness:
    servicer: ProviderAdapterServicer
    catalog: Catalog
    engine: Any
    sessions: Any
    requests: list[httpx.Request]
    answer: list[Callable[[httpx.Request], httpx.Response]]
    clock: list[float]
    now: list[datetime]  # the ledger's clock


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path}/catalog.db"
    await migrate(url, MIGRATIONS, version_table="alembic_version_catalog")
    engine = create_engine(url)
    sessions = session_factory(engine)
    requests: list[httpx.Request] = []
    answer: list[Callable[[httpx.Request], httpx.Response]] = [lambda _: httpx.Response(200, json=ACCEPTED)]

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return answer[0](request)

    clock = [0.0]
    now = [utcnow()]
    catalog = Catalog(sessions, SecretBox.from_passphrase("unit"), cache_ttl=5.0, clock=lambda: clock[0])
    client = DirectClient(transport=httpx.MockTransport(handler))
    servicer = ProviderAdapterServicer(
        catalog,
        SubmissionLedger(engine, clock=lambda: now[0]),
        ProviderEngine(client, retry=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.002)),
    )
    await servicer.CreateProvider(
        gateway_pb2.CreateProviderRequest(name="kie", preset="kie-ai", api_key=KEY),
        None,  # type: ignore[arg-type]
    )
    await servicer.CreateModel(
        gateway_pb2.CreateModelRequest(
            provider="kie",
            name="banana",
            model_type=common_pb2.MODEL_TYPE_IMAGE,
            request_schema_json=json.dumps({"model": "m", "input": {"prompt": "{{prompt}}"}}),
        ),
        None,  # type: ignore[arg-type]
    )
    yield Harness(servicer, catalog, engine, sessions, requests, answer, clock, now)
    await client.aclose()
    await engine.dispose()


def _submit(asset_id: str, variables: dict[str, Any] | None = None) -> provider_adapter_pb2.SubmitTaskRequest:
    return provider_adapter_pb2.SubmitTaskRequest(
        asset_id=asset_id, attempt=1, model="banana", variables_json=json.dumps(variables or {"prompt": "p"})
    )


async def _rows(h: Harness) -> list[SubmissionRow]:
    async with h.sessions() as session:
        return list((await session.execute(select(SubmissionRow))).scalars())


async def test_a_repeated_submit_returns_the_recorded_status_without_calling_the_provider(h: Harness) -> None:
    first = await h.servicer.SubmitTask(_submit("ast_1"), None)  # type: ignore[arg-type]
    second = await h.servicer.SubmitTask(_submit("ast_1"), None)  # type: ignore[arg-type]
    assert first == second and first.task_id == "task_1"
    assert first.state == provider_adapter_pb2.TASK_STATE_PROCESSING
    assert len(h.requests) == 1
    other_attempt = _submit("ast_1")
    other_attempt.attempt = 2
    await h.servicer.SubmitTask(other_attempt, None)  # type: ignore[arg-type]
    assert len(h.requests) == 2


async def test_a_refusal_is_recorded_and_repeated_without_calling_again(h: Harness) -> None:
    h.answer[0] = lambda _: httpx.Response(200, json={"code": 402, "msg": "Insufficient Credits"})
    first = await h.servicer.SubmitTask(_submit("ast_2"), None)  # type: ignore[arg-type]
    again = await h.servicer.SubmitTask(_submit("ast_2"), None)  # type: ignore[arg-type]
    assert first.state == again.state == provider_adapter_pb2.TASK_STATE_FAILED
    assert again.error_message == "Insufficient Credits"
    assert len(h.requests) == 1


async def test_a_submission_another_call_is_sending_is_retried_later_not_failed(h: Harness) -> None:
    # Another replica claimed it a moment ago and may be waiting for the provider's answer right now.
    ledger = SubmissionLedger(h.engine, clock=lambda: h.now[0])
    await ledger.begin("ast_3", 1, "mdl_x")
    await SubmissionWire(ledger, "ast_3", 1).sending()
    h.now[0] += timedelta(seconds=60)  # within kie-ai's 30 s timeout x 2 attempts + 4 s of backoff
    with pytest.raises(SubmissionInProgress, match="is in progress; retry"):
        await h.servicer.SubmitTask(_submit("ast_3"), None)  # type: ignore[arg-type]
    assert h.requests == []
    assert [row.state for row in await _rows(h)] == [SENDING]


async def test_an_interrupted_submission_is_never_sent_again(h: Harness) -> None:
    ledger = SubmissionLedger(h.engine, clock=lambda: h.now[0])
    await ledger.begin("ast_3", 1, "mdl_x")
    await SubmissionWire(ledger, "ast_3", 1).sending()
    h.now[0] += timedelta(seconds=65)  # older than any submit takes: the sender died mid-flight
    with pytest.raises(SubmitOutcomeUnknown, match="outcome was never recorded"):
        await h.servicer.SubmitTask(_submit("ast_3"), None)  # type: ignore[arg-type]
    assert h.requests == []


async def test_a_lost_answer_is_recorded_and_later_calls_refuse_at_once(h: Harness) -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    h.answer[0] = timeout
    with pytest.raises(FailedPrecondition, match="outcome is unknown"):
        await h.servicer.SubmitTask(_submit("ast_4"), None)  # type: ignore[arg-type]
    assert [row.state for row in await _rows(h)] == [UNKNOWN]
    h.answer[0] = lambda _: httpx.Response(200, json=ACCEPTED)
    with pytest.raises(SubmitOutcomeUnknown, match="answer was lost"):
        await h.servicer.SubmitTask(_submit("ast_4"), None)  # type: ignore[arg-type]
    assert len(h.requests) == 1


async def test_an_unreachable_provider_releases_the_claim_so_a_later_call_sends(h: Harness) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    h.answer[0] = refuse
    with pytest.raises(Unavailable, match="provider kie unreachable"):
        await h.servicer.SubmitTask(_submit("ast_5"), None)  # type: ignore[arg-type]
    assert await _rows(h) == []
    h.answer[0] = lambda _: httpx.Response(200, json=ACCEPTED)
    status = await h.servicer.SubmitTask(_submit("ast_5"), None)  # type: ignore[arg-type]
    assert status.task_id == "task_1"


async def test_a_bad_request_leaves_no_claim(h: Harness) -> None:
    with pytest.raises(InvalidArgument, match="missing template variable: prompt"):
        await h.servicer.SubmitTask(_submit("ast_6", {"other": 1}), None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="unknown model"):
        await h.servicer.SubmitTask(  # type: ignore[arg-type]
            provider_adapter_pb2.SubmitTaskRequest(asset_id="ast_6", attempt=1, model="nope"), None
        )
    assert await _rows(h) == [] and h.requests == []


async def test_poll_uses_the_cache_until_it_expires(h: Harness) -> None:
    h.answer[0] = lambda _: httpx.Response(200, json={"code": 200, "data": {"state": "generating"}})
    poll = provider_adapter_pb2.PollTaskRequest(asset_id="a", model="banana", task_id="task_1")
    assert (await h.servicer.PollTask(poll, None)).state == provider_adapter_pb2.TASK_STATE_PROCESSING  # type: ignore[arg-type]
    async with h.sessions() as session:
        row = (await session.execute(select(ProviderRow))).scalar_one()
        row.base_url = "https://moved.example"
        await session.commit()
    await h.servicer.PollTask(poll, None)  # type: ignore[arg-type]
    assert h.requests[-1].url.host == "api.kie.ai"  # cached
    h.clock[0] += 6
    await h.servicer.PollTask(poll, None)  # type: ignore[arg-type]
    assert h.requests[-1].url.host == "moved.example"


async def test_the_key_is_stored_encrypted_and_never_returned(h: Harness) -> None:
    async with h.sessions() as session:
        row = (await session.execute(select(ProviderRow))).scalar_one()
    assert row.api_key_encrypted and KEY not in row.api_key_encrypted
    provider = await h.servicer.GetProvider(gateway_pb2.GetProviderRequest(id="kie"), None)  # type: ignore[arg-type]
    assert provider.has_api_key and KEY not in provider.SerializeToString().decode("utf-8", "replace")
    await h.servicer.SubmitTask(_submit(f"ast_{uuid.uuid4().hex}"), None)  # type: ignore[arg-type]
    assert h.requests[-1].headers["Authorization"] == f"Bearer {KEY}"


async def test_poll_tasks_polls_at_most_poll_concurrency_tasks_at_once(h: Harness) -> None:
    in_flight, peak, gate = 0, 0, asyncio.Event()

    async def provider(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 3:
            gate.set()  # unbounded, all ten would be in here before anyone is let go
        await gate.wait()
        in_flight -= 1
        return httpx.Response(200, json={"code": 200, "data": {"state": "generating"}})

    async with DirectClient(transport=httpx.MockTransport(provider)) as client:
        servicer = ProviderAdapterServicer(
            h.catalog, SubmissionLedger(h.engine), ProviderEngine(client), poll_concurrency=3
        )
        tasks = [provider_adapter_pb2.PollTaskRequest(model="banana", task_id=f"t{i}") for i in range(10)]
        answer = await servicer.PollTasks(provider_adapter_pb2.PollTasksRequest(tasks=tasks), None)  # type: ignore[arg-type]
    assert peak == 3
    assert [result.status.task_id for result in answer.results] == [f"t{i}" for i in range(10)]


async def test_poll_tasks_hides_an_unexpected_error_and_answers_the_other_tasks(h: Harness) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.params["taskId"] == "bad":
            raise RuntimeError("secret internals")
        return httpx.Response(200, json={"code": 200, "data": {"state": "generating"}})

    h.answer[0] = answer
    tasks = [provider_adapter_pb2.PollTaskRequest(model="banana", task_id=task) for task in ("bad", "ok")]
    result = await h.servicer.PollTasks(provider_adapter_pb2.PollTasksRequest(tasks=tasks), None)  # type: ignore[arg-type]
    assert result.results[0].error.code == grpc.StatusCode.INTERNAL.value[0]
    assert result.results[0].error.message == "internal error"
    assert result.results[1].status.state == provider_adapter_pb2.TASK_STATE_PROCESSING


async def test_concurrent_lookups_of_an_expired_model_share_one_query(h: Harness) -> None:
    calls = 0
    get_model = h.catalog.get_model

    async def counted(ref: str) -> Any:
        nonlocal calls
        calls += 1
        return await get_model(ref)

    h.catalog.get_model = counted  # type: ignore[method-assign]
    h.clock[0] += 6
    resolved = await asyncio.gather(*(h.catalog.resolve("banana") for _ in range(20)))
    assert calls == 1 and len({id(model) for model in resolved}) == 1
    await h.catalog.resolve("banana")
    assert calls == 1  # cached again
    h.catalog.invalidate()
    await h.catalog.resolve("banana")
    assert calls == 2


def _held_provider(h: Harness) -> tuple[asyncio.Event, asyncio.Event]:
    """Makes the provider hold each submit until released: (the call arrived, release it)."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        arrived.set()
        await release.wait()
        return httpx.Response(200, json=ACCEPTED)

    h.answer[0] = held  # type: ignore[assignment]  # MockTransport awaits an awaitable answer
    return arrived, release


async def test_a_submission_outlives_its_cancelled_caller_and_close_awaits_it(h: Harness) -> None:
    arrived, release = _held_provider(h)
    caller = asyncio.create_task(h.servicer.SubmitTask(_submit("ast_gone"), None))  # type: ignore[arg-type]
    await asyncio.wait_for(arrived.wait(), timeout=5)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert [row.state for row in await _rows(h)] == [SENDING]
    release.set()
    await h.servicer.aclose(timeout=5)
    assert [(row.state, row.task_id) for row in await _rows(h)] == [(SENT, "task_1")]


async def test_close_cancels_a_submission_that_outlasts_its_timeout(h: Harness) -> None:
    arrived, _ = _held_provider(h)
    caller = asyncio.create_task(h.servicer.SubmitTask(_submit("ast_stuck"), None))  # type: ignore[arg-type]
    await asyncio.wait_for(arrived.wait(), timeout=5)
    await h.servicer.aclose(timeout=0.01)
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert [row.state for row in await _rows(h)] == [SENDING]
    await h.servicer.aclose(timeout=0.01)  # nothing left running: returns at once


async def test_close_cancels_a_model_lookup_its_caller_left(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    arrived, cancelled = asyncio.Event(), asyncio.Event()

    async def held_lookup(ref: str) -> Any:
        arrived.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    monkeypatch.setattr(h.catalog, "get_model", held_lookup)
    h.clock[0] += 60  # past the cache's TTL
    caller = asyncio.create_task(h.catalog.resolve("banana"))
    await asyncio.wait_for(arrived.wait(), timeout=5)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert not cancelled.is_set()  # shielded: the lookup others may share outlives its caller
    await h.catalog.aclose()
    assert cancelled.is_set()
