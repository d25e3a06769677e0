"""A submit that may have reached the provider is never sent twice (issue 22, item 1).

A 5xx or a lost answer after sending is an unknown outcome: FAILED_PRECONDITION "outcome unknown
at <provider>", the ledger entry kept; a 429 or a refused connect is a definite refusal: retried; a
profile with an ``idempotency_header`` is retried safely with the same key; a call in progress in
another process is waited for; one that stopped while waiting after a refusal is taken over.
"""

from __future__ import annotations

import contextlib
import copy
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from assetgen.v1 import common_pb2, gateway_pb2, provider_adapter_pb2
from assetgen_provider_adapter.catalog import Catalog
from assetgen_provider_adapter.credentials import SecretBox
from assetgen_provider_adapter.db import SubmissionRow, utcnow
from assetgen_provider_adapter.engine import ProviderEngine, RetryPolicy
from assetgen_provider_adapter.errors import SubmissionInProgress, SubmitOutcomeUnknown
from assetgen_provider_adapter.ledger import SENDING, SENT, UNKNOWN, WAITING, SubmissionLedger, SubmissionWire
from assetgen_provider_adapter.main import MIGRATIONS
from assetgen_provider_adapter.profiles import load_presets
from assetgen_provider_adapter.service import ProviderAdapterServicer
from assetgen_runtime.database import create_engine, migrate, session_factory
from assetgen_runtime.errors import FailedPrecondition, Unavailable
from assetgen_runtime.http import DirectClient

ACCEPTED = {"code": 200, "msg": "success", "data": {"taskId": "task_1"}}
Answer = Callable[[httpx.Request], httpx.Response]


@dataclass
class Harness:
    servicer: ProviderAdapterServicer
    engine: AsyncEngine
    sessions: Any
    requests: list[httpx.Request]
    answers: list[Answer]
    now: list[datetime]

    def ledger(self) -> SubmissionLedger:
        return SubmissionLedger(self.engine, clock=lambda: self.now[0])


def _deduplicating_profile() -> str:
    data = copy.deepcopy(load_presets()["kie-ai"].data)
    data["submit"]["idempotency_header"] = "Idempotency-Key"
    return json.dumps(data)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    url = f"sqlite+aiosqlite:///{tmp_path}/catalog.db"
    await migrate(url, MIGRATIONS, version_table="alembic_version_catalog")
    engine = create_engine(url)
    requests: list[httpx.Request] = []
    answers: list[Answer] = [lambda _: httpx.Response(200, json=ACCEPTED)]

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return answer(request)

    now = [utcnow()]
    catalog = Catalog(session_factory(engine), SecretBox.from_passphrase("unit"), cache_ttl=5.0)
    client = DirectClient(transport=httpx.MockTransport(handler))
    servicer = ProviderAdapterServicer(
        catalog,
        SubmissionLedger(engine, clock=lambda: now[0]),
        ProviderEngine(client, retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.002)),
    )
    for name, preset, profile in (("kie", "kie-ai", ""), ("dedup", "", _deduplicating_profile())):
        await servicer.CreateProvider(
            gateway_pb2.CreateProviderRequest(name=name, preset=preset, profile_json=profile, api_key="sk"),
            None,  # type: ignore[arg-type]
        )
        await servicer.CreateModel(
            gateway_pb2.CreateModelRequest(
                provider=name,
                name=f"{name}-model",
                model_type=common_pb2.MODEL_TYPE_IMAGE,
                request_schema_json=json.dumps({"model": "m", "input": {"prompt": "{{prompt}}"}}),
            ),
            None,  # type: ignore[arg-type]
        )
    yield Harness(servicer, engine, session_factory(engine), requests, answers, now)
    await client.aclose()
    await engine.dispose()


def _submit(asset_id: str, model: str = "kie-model") -> provider_adapter_pb2.SubmitTaskRequest:
    return provider_adapter_pb2.SubmitTaskRequest(
        asset_id=asset_id, attempt=1, model=model, variables_json=json.dumps({"prompt": "p"})
    )


async def _states(h: Harness) -> list[str]:
    async with h.sessions() as session:
        return [row.state for row in (await session.execute(select(SubmissionRow))).scalars()]


def _status(code: int) -> Answer:
    return lambda _: httpx.Response(code, text="upstream trouble")


def _dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)


@pytest.mark.parametrize("answer", [_status(504), _status(502), _status(500), _status(408), _dropped])
async def test_trouble_after_sending_is_an_unknown_outcome_never_resent(h: Harness, answer: Answer) -> None:
    h.answers[:] = [answer, lambda _: httpx.Response(200, json=ACCEPTED)]
    with pytest.raises(FailedPrecondition, match="outcome unknown at kie"):
        await h.servicer.SubmitTask(_submit("ast_1"), None)  # type: ignore[arg-type]
    assert len(h.requests) == 1
    assert await _states(h) == [UNKNOWN]  # kept for an operator, not released
    with pytest.raises(SubmitOutcomeUnknown):  # a redelivered step: still never resent
        await h.servicer.SubmitTask(_submit("ast_1"), None)  # type: ignore[arg-type]
    assert len(h.requests) == 1 and await _states(h) == [UNKNOWN]


async def test_a_429_is_a_definite_refusal_and_retried(h: Harness) -> None:
    h.answers[:] = [_status(429), lambda _: httpx.Response(200, json=ACCEPTED)]
    status = await h.servicer.SubmitTask(_submit("ast_2"), None)  # type: ignore[arg-type]
    assert status.task_id == "task_1" and len(h.requests) == 2
    assert await _states(h) == [SENT]


async def test_refusals_that_outlive_the_retries_hold_the_submission_back_for_a_later_step(
    h: Harness,
) -> None:
    # A provider that keeps answering 429 is busy, not broken: nothing was accepted, so the work waits
    # PENDING (no task id) for the provider's Retry-After, its claim released, no try spent.
    h.answers[:] = [lambda _: httpx.Response(429, headers={"Retry-After": "7"}, json={"msg": "slow down"})]
    held = await h.servicer.SubmitTask(_submit("ast_3"), None)  # type: ignore[arg-type]
    assert (held.state, held.task_id) == (provider_adapter_pb2.TASK_STATE_PENDING, "")
    assert held.poll_after_ms == 7000 and "busy" in held.raw_state
    assert len(h.requests) == 1 and await _states(h) == []  # Retry-After outlasts the in-call retries
    h.answers[:] = [lambda _: httpx.Response(200, json=ACCEPTED)]
    status = await h.servicer.SubmitTask(_submit("ast_3"), None)  # type: ignore[arg-type]
    assert status.task_id == "task_1" and len(h.requests) == 2


async def test_a_provider_that_cannot_be_reached_is_unavailable(h: Harness) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    h.answers[:] = [refused]
    with pytest.raises(Unavailable):
        await h.servicer.SubmitTask(_submit("ast_3b"), None)  # type: ignore[arg-type]
    assert len(h.requests) == 3 and await _states(h) == []


async def test_an_idempotency_header_profile_is_retried_safely_with_the_same_key(h: Harness) -> None:
    h.answers[:] = [_status(502), _dropped, lambda _: httpx.Response(200, json=ACCEPTED)]
    status = await h.servicer.SubmitTask(_submit("ast_4", "dedup-model"), None)  # type: ignore[arg-type]
    assert status.task_id == "task_1" and len(h.requests) == 3
    assert {request.headers["Idempotency-Key"] for request in h.requests} == {"assetgen-ast_4-1"}
    assert await _states(h) == [SENT]


async def test_a_submission_in_progress_in_another_process_is_waited_for(h: Harness) -> None:
    # Another adapter process has the request on the wire right now (a fresh SENDING entry).
    ledger = h.ledger()
    await ledger.begin("ast_5", 1, "mdl_x")
    await SubmissionWire(ledger, "ast_5", 1).sending()
    h.now[0] += timedelta(seconds=5)
    with pytest.raises(SubmissionInProgress):
        await h.servicer.SubmitTask(_submit("ast_5"), None)  # type: ignore[arg-type]
    assert h.requests == [] and await _states(h) == [SENDING]


async def test_a_stale_submission_in_progress_is_an_unknown_outcome(h: Harness) -> None:
    ledger = h.ledger()
    await ledger.begin("ast_6", 1, "mdl_x")
    await SubmissionWire(ledger, "ast_6", 1).sending()
    h.now[0] += timedelta(hours=1)  # far older than any request on the wire can be
    with pytest.raises(SubmitOutcomeUnknown, match="will not be submitted again"):
        await h.servicer.SubmitTask(_submit("ast_6"), None)  # type: ignore[arg-type]
    assert h.requests == []


async def test_a_call_waiting_to_retry_after_a_refusal_is_waited_for_then_taken_over(h: Harness) -> None:
    # Another process got a 429 and waits to retry: nothing of it is at the provider.
    ledger = h.ledger()
    await ledger.begin("ast_7", 1, "mdl_x")
    await SubmissionWire(ledger, "ast_7", 1).sending()
    await ledger.refused("ast_7", 1)
    assert await _states(h) == [WAITING]
    with pytest.raises(SubmissionInProgress):
        await h.servicer.SubmitTask(_submit("ast_7"), None)  # type: ignore[arg-type]
    assert h.requests == []
    h.now[0] += timedelta(hours=1)  # it died while waiting: not an unknown outcome, so send it
    status = await h.servicer.SubmitTask(_submit("ast_7"), None)  # type: ignore[arg-type]
    assert status.task_id == "task_1" and len(h.requests) == 1
    assert await _states(h) == [SENT]


async def test_a_waiting_call_whose_claim_was_taken_over_does_not_send(h: Harness) -> None:
    ledger = h.ledger()
    await ledger.begin("ast_8", 1, "mdl_x")
    await SubmissionWire(ledger, "ast_8", 1).sending()
    since = await ledger.refused("ast_8", 1)
    h.now[0] += timedelta(hours=1)
    assert await ledger.begin("ast_8", 1, "mdl_x") is None  # another call took it over
    with pytest.raises(SubmissionInProgress, match="taken over"):
        await ledger.resend("ast_8", 1, since)
    assert await _states(h) == [WAITING]  # the new owner's, off the wire until it sends


async def test_a_call_that_stopped_between_its_claim_and_its_request_is_taken_over(h: Harness) -> None:
    """Claimed, then killed while checking limits or building the request: nothing reached the
    provider, so it is not an unknown outcome (issue 22: the unknown window is the time on the wire)."""
    await h.ledger().begin("ast_9", 1, "mdl_x")
    assert await _states(h) == [WAITING]
    with pytest.raises(SubmissionInProgress):  # it may yet send: wait for it
        await h.servicer.SubmitTask(_submit("ast_9"), None)  # type: ignore[arg-type]
    h.now[0] += timedelta(hours=1)
    status = await h.servicer.SubmitTask(_submit("ast_9"), None)  # type: ignore[arg-type]
    assert status.task_id == "task_1" and len(h.requests) == 1
    assert await _states(h) == [SENT]


async def test_the_claim_is_on_the_wire_only_while_the_request_is(h: Harness) -> None:
    seen: list[str] = []

    def looking(request: httpx.Request) -> httpx.Response:
        # Runs inside the send: read the ledger's row as another process would.
        with contextlib.closing(sqlite3.connect(str(h.engine.url.database))) as db:
            seen.extend(row[0] for row in db.execute(f"SELECT state FROM {SubmissionRow.__tablename__}"))
        return httpx.Response(200, json=ACCEPTED)

    h.answers[:] = [looking]
    await h.servicer.SubmitTask(_submit("ast_10"), None)  # type: ignore[arg-type]
    assert seen == [SENDING] and await _states(h) == [SENT]
