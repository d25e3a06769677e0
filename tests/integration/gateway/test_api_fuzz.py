"""The public HTTP API fuzzed against its own OpenAPI document with schemathesis.

The whole system runs in this process (four services over real NATS, SeaweedFS and PostgreSQL, with a
fake Kie.ai provider). Schemathesis reads ``/api/openapi.json`` and sends every operation generated
requests, schema-valid (positive) and schema-breaking (negative), in its coverage and fuzzing phases.
Every answer must be no 5xx, carry a status, content type and body the document lists, and negative
data must be refused. The seed is fixed and generation derandomized, so CI sends the same requests on
every run; the number of examples per operation keeps the whole module within CI's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import strategies as st

# Internal names, pinned by the exact schemathesis version in pyproject.toml: a coverage case says
# which phase made it and which parameter it is about only through them.
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import TestPhase

from assetgen_dev.demo_provider import make_png
from assetgen_dev.embedded import S3Server, start_nats
from assetgen_dev.fake_providers import FakeKieJobs
from assetgen_dev.stack import start_stack
from assetgen_gateway.openapi import build_openapi

PROVIDER_KEY = "fuzz-provider-key"
TOKEN = "fuzz-admin-token"
IMAGE_SCHEMA = {"model": "kie/image", "input": {"prompt": "{{prompt}}", "size": "{{size?}}"}}
# Enough examples per operation and generation mode to reach the interesting corners of each
# schema (unknown fields, wrong types, odd characters in ids) while the module stays within CI's time.
MAX_EXAMPLES = 100
SEED = 20261204
STARTUP_TIMEOUT = 120.0
# The tests' PostgreSQL, as tests/conftest.py reaches it.
POSTGRES_ADMIN_URL = os.environ.get("ASSETGEN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

FUZZ_CONFIG: dict[str, Any] = {
    "seed": SEED,
    "generation": {
        "mode": "all",
        "max-examples": MAX_EXAMPLES,
        "deterministic": True,
        "database": "none",
        # Now and then a string of the kind that broke the API: NUL (PostgreSQL refuses it), NATS
        # subject and path syntax, text that is long or not text at all.
        "dictionaries": {"string": {"dictionary": "awkward-text", "probability": 0.1}},
        # The token comes from the config's headers; made-up credentials would only meet 401s.
        "with-security-parameters": False,
    },
    "phases": {
        "examples": {"enabled": False},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
    "checks": {
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
        "negative_data_rejection": {"enabled": True},
        "unsupported_method": {"enabled": True},
        # Protobuf messages can't say which fields are required or which values are in range, so
        # the document can't either: a schema-valid request without a name is rightly refused with 400.
        "positive_data_acceptance": {"enabled": False},
        # Every call is authenticated with one admin token; there is nothing per user to cross.
        "ignored_auth": {"enabled": False},
        "object_level_authorization": {"enabled": False},
        # Stateful checks: the stateful phase is off (resources are seeded, see ``_RealIds``).
        "use_after_free": {"enabled": False},
        "ensure_resource_availability": {"enabled": False},
    },
    "request-timeout": 30,
    "dictionaries": {
        "awkward-text": {
            "values": ["\x00", "a\x00b", "a.b", "*", ">", " ", "../..", "%00", "\u202e", "x" * 300]
        }
    },
}


@dataclass(frozen=True)
class Seeded:
    """The running API, its token and the resources it was given to act on."""

    url: str
    token: str
    box_id: str
    asset_id: str
    provider_id: str
    model_id: str


async def _seed(url: str, token: str, provider_url: str) -> Seeded:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        provider = await http.post(
            "/api/providers",
            json={"name": "kie", "preset": "kie-ai", "base_url": provider_url, "api_key": PROVIDER_KEY},
        )
        assert provider.status_code == 201, provider.text
        model = await http.post(
            "/api/models",
            json={"provider": "kie", "name": "img", "model_type": "IMAGE", "request_schema": IMAGE_SCHEMA},
        )
        assert model.status_code == 201, model.text
        box = await http.post("/api/boxes", json={"name": "fuzzed"})
        assert box.status_code == 201, box.text
        box_id = box.json()["id"]
        upload = await http.post(
            f"/api/boxes/{box_id}/upload", files={"file": ("seed.png", make_png("fuzz"), "image/png")}
        )
        assert upload.status_code == 201, upload.text
        return Seeded(
            url=url,
            token=token,
            box_id=box_id,
            asset_id=upload.json()["id"],
            provider_id=provider.json()["id"],
            model_id=model.json()["id"],
        )


@contextlib.asynccontextmanager
async def _fresh_postgres_database() -> AsyncIterator[str]:
    """A database of its own on the tests' PostgreSQL (SQLAlchemy URL), dropped afterwards.

    PostgreSQL, not SQLite, because it is what production runs and it is the stricter of the two
    (a NUL character in text is an error there).
    """
    name = f"assetgen_fuzz_{uuid.uuid4().hex[:12]}"
    await _postgres_execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        await _postgres_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _postgres_execute(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


class _ServedStack:
    """The whole system served from a thread of its own, on that thread's event loop.

    Schemathesis's tests are synchronous and call the API with blocking requests, so the servers
    can't live on the test session's event loop: it doesn't run while a synchronous test does.
    """

    def __init__(self, data_dir: Path, nats_url: str, s3: S3Server) -> None:
        self._data_dir = data_dir
        self._nats_url = nats_url
        self._s3 = s3
        self._ready = threading.Event()
        self._seeded: Seeded | None = None
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fuzzed-stack", daemon=True)

    def start(self) -> Seeded:
        """Starts the system and seeds it; returns once it serves."""
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT):
            raise AssertionError(f"the stack did not start within {STARTUP_TIMEOUT}s")
        if self._failure is not None:
            raise self._failure
        assert self._seeded is not None
        return self._seeded

    def stop(self) -> None:
        """Stops every service and waits for the thread to end."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STARTUP_TIMEOUT)
        if self._failure is not None:
            raise self._failure

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._failure = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with contextlib.AsyncExitStack() as cleanup:
            provider = FakeKieJobs(PROVIDER_KEY)
            provider_url = await provider.start()
            cleanup.push_async_callback(provider.stop)
            database_url = await cleanup.enter_async_context(_fresh_postgres_database())
            stack = await start_stack(
                self._data_dir,
                nats_url=self._nats_url,
                s3=self._s3,
                token=TOKEN,
                database_url=database_url,
                catalog_database_url=database_url,
            )
            cleanup.push_async_callback(stack.stop)
            self._seeded = await _seed(stack.http_url, stack.token, provider_url)
            self._ready.set()
            await self._stop.wait()


@dataclass
class FuzzLog:
    """What the fuzzer sent: answers per operation, to show it reached past the front door."""

    statuses: dict[str, Counter[int]] = field(default_factory=dict)

    def record(self, label: str, status: int) -> None:
        """Counts one answer of ``label`` (``METHOD /path``)."""
        self.statuses.setdefault(label, Counter())[status] += 1

    @property
    def requests(self) -> int:
        """How many requests were sent."""
        return sum(sum(counts.values()) for counts in self.statuses.values())


class _RealIds:
    """Puts the seeded resources' ids in generated paths, so requests get past the 404.

    Fuzzed requests take them half the time, through a schemathesis hook; the coverage phase's
    requests (made when pytest collects the module, before anything is seeded) take them in the test
    unless the case is about the path parameter itself. DELETE keeps its generated ids: deleting
    the seeded resources would leave every later operation nothing to act on.
    """

    def __init__(self) -> None:
        self.seeded: Seeded | None = None

    def ids(self, path: str, path_parameters: dict[str, Any]) -> dict[str, Any]:
        """``path_parameters`` with the seeded ids the operation at ``path`` takes."""
        assert self.seeded is not None
        by_name = {"box_id": self.seeded.box_id, "asset_id": self.seeded.asset_id}
        by_path = {
            "/api/boxes/{id}": self.seeded.box_id,
            "/api/assets/{id}": self.seeded.asset_id,
            "/api/providers/{id}": self.seeded.provider_id,
            "/api/models/{id}": self.seeded.model_id,
        }
        real = dict(path_parameters)
        for name in real:
            if name in by_name:
                real[name] = by_name[name]
            else:
                real[name] = next((v for p, v in by_path.items() if path.startswith(p)), real[name])
        return real

    def strategy(self, context: Any, path_parameters: dict[str, Any] | None) -> Any:
        """The fuzzing phase's path parameters: as generated or the seeded ids, half and half."""
        operation = context.operation
        if not path_parameters or self.seeded is None or operation.method.upper() == "DELETE":
            return st.just(path_parameters)
        return st.sampled_from([path_parameters, self.ids(operation.path, path_parameters)])

    def apply_to_coverage_case(self, case: schemathesis.Case) -> None:
        """Sets the seeded ids in a coverage-phase case that isn't about its path parameters."""
        meta = case.meta
        if meta is None or meta.phase.name != TestPhase.COVERAGE or not case.path_parameters:
            return
        about_path = getattr(meta.phase.data, "parameter_location", None) == ParameterLocation.PATH
        if about_path or meta.is_negative_at(ParameterLocation.PATH) or case.method.upper() == "DELETE":
            return
        case.path_parameters = self.ids(case.operation.path, case.path_parameters)


_real_ids = _RealIds()
_fuzz_log = FuzzLog()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Iterator[Seeded]:
    nats = start_nats(tmp_path_factory.mktemp("fuzz-nats"))
    served = _ServedStack(tmp_path_factory.mktemp("fuzz"), nats.url, s3_server)
    try:
        _real_ids.seeded = served.start()
        yield _real_ids.seeded
    finally:
        try:
            served.stop()
        finally:
            nats.stop()


# The document the gateway serves (``test_the_served_document_is_the_fuzzed_one`` holds them equal),
# built here so that schemathesis makes one test per operation when pytest collects the module.
schema = schemathesis.openapi.from_dict(
    build_openapi(),
    config=schemathesis.Config.from_dict({**FUZZ_CONFIG, "headers": {"Authorization": f"Bearer {TOKEN}"}}),
).exclude(
    # The event streams and the WebSocket never end while the box lives: a request would wait for
    # its timeout. tests/integration/gateway/test_gateway_watch.py covers them.
    path_regex=r"/events$|^/ws/",
)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any] | None) -> Any:
    return _real_ids.strategy(context, path_parameters)


async def test_the_served_document_is_the_fuzzed_one(seeded: Seeded) -> None:
    async with httpx.AsyncClient(base_url=seeded.url, timeout=30) as http:
        response = await http.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.json() == build_openapi()


@schema.parametrize()
def test_every_answer_matches_the_document(case: schemathesis.Case, seeded: Seeded) -> None:
    _real_ids.apply_to_coverage_case(case)
    response = case.call(base_url=seeded.url)
    _fuzz_log.record(f"{case.method.upper()} {case.operation.path}", response.status_code)
    case.validate_response(response, transport_kwargs={"base_url": seeded.url})


def test_the_fuzzer_reached_every_operation() -> None:
    if not _fuzz_log.statuses:
        pytest.skip("reads what the fuzzing tests before it in this module sent")
    assert _fuzz_log.requests > 1000, _fuzz_log.requests
    for label, counts in _fuzz_log.statuses.items():
        assert set(counts) - {401}, f"{label} only met 401: the token was not sent"
    succeeded = {label for label, counts in _fuzz_log.statuses.items() if any(200 <= s < 300 for s in counts)}
    assert {"GET /api/models/{id}", "PATCH /api/models/{id}", "GET /api/boxes/{id}"} <= succeeded, succeeded
