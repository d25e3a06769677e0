"""The chaos providers: each fault does what it says, and the record tells the truth about tasks and bytes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from assetgen_dev.chaos.faults import FaultPlan, prompt_of
from assetgen_dev.chaos.providers import chaos_app, make_fakes
from assetgen_dev.fake_providers.base import serve
from assetgen_dev.testing import eventually

KEY = "k"
AUTH = {"Authorization": f"Bearer {KEY}"}
NO_FAULTS = FaultPlan(task_failure=0, server_error=0, rate_limited=0, lost_response=0, failed_download=0)


@asynccontextmanager
async def _serving(family: str, plan: FaultPlan) -> AsyncIterator[httpx.AsyncClient]:
    fake = make_fakes(KEY, plan)[family]
    app, _ = chaos_app(family, fake, plan)
    runner, fake.base_url = await serve(app)
    try:
        async with httpx.AsyncClient(base_url=fake.base_url, headers=AUTH, timeout=10) as client:
            yield client
    finally:
        await runner.cleanup()


async def _record(client: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await client.get("/_chaos/record")).json())


def _replace(**rates: float) -> FaultPlan:
    values: dict[str, Any] = {**NO_FAULTS.__dict__, **rates}
    return FaultPlan(**values)


def test_prompts_are_found_where_families_put_them() -> None:
    assert prompt_of({"prompt": "a"}) == "a"
    assert prompt_of({"model": "m", "input": {"prompt": "b"}}) == "b"
    assert prompt_of(["x"]) == "" and prompt_of({"input": "x"}) == ""
    plan = FaultPlan(seed=7, lost_response=0.5)
    assert FaultPlan.from_json(plan.to_json()) == plan


async def test_a_5xx_or_429_submit_makes_no_task_and_a_lost_one_makes_exactly_one() -> None:
    body = {"model": "m", "input": {"prompt": "p"}}
    async with _serving("kie", _replace(server_error=1.0)) as client:
        answer = await client.post("/api/v1/jobs/createTask", json=body)
        assert answer.status_code in (500, 502, 503, 504)
        record = await _record(client)
        assert record["tasks"] == [] and [s["outcome"] for s in record["submits"]] == ["5xx"]
    async with _serving("kie", _replace(rate_limited=1.0)) as client:
        answer = await client.post("/api/v1/jobs/createTask", json=body)
        assert answer.status_code == 429 and 1 <= int(answer.headers["Retry-After"]) <= 3
        assert (await _record(client))["faults"] == {"submit_429": 1}
    async with _serving("kie", _replace(lost_response=1.0)) as client:
        answer = await client.post("/api/v1/jobs/createTask", json=body)
        assert answer.status_code == 502
        record = await _record(client)
        [task] = record["tasks"]
        assert (
            record["submits"][0]["outcome"] == "lost" and record["submits"][0]["task_id"] == task["task_id"]
        )


async def test_polls_fail_as_planned_and_a_doomed_task_fails_in_its_familys_words() -> None:
    async with _serving("replicate", _replace(server_error=1.0)) as client:
        assert (await client.get("/v1/predictions/nope")).status_code >= 500
    async with _serving("replicate", _replace(task_failure=1.0)) as client:
        created = await client.post("/v1/predictions", json={"version": "v", "input": {"prompt": "p"}})
        assert created.status_code == 201
        url = created.json()["urls"]["get"]
        final = await eventually(
            lambda: client.get(url), lambda answer: answer.json()["status"] != "processing", timeout=5
        )
        assert final.json()["status"] == "failed"
        assert (await _record(client))["tasks"][0]["outcome"] == "fail"


async def _served_bytes(client: httpx.AsyncClient, family: str, prompt: str) -> tuple[bytes, dict[str, Any]]:
    """Submits ``prompt``, polls until done, downloads the result; its bytes and its task's record."""
    submits: dict[str, Callable[[], Any]] = {
        "kie": lambda: client.post(
            "/api/v1/jobs/createTask", json={"model": "m", "input": {"prompt": prompt}}
        ),
        "luma": lambda: client.post("/dream-machine/v1/generations", json={"prompt": prompt}),
    }
    created = (await submits[family]()).json()
    if family == "kie":
        task_id = created["data"]["taskId"]
        answer = await eventually(
            lambda: client.get("/api/v1/jobs/recordInfo", params={"taskId": task_id}),
            lambda answer: answer.json()["data"]["state"] == "success",
            timeout=15,
            interval=0.2,
        )
        import json

        url = json.loads(answer.json()["data"]["resultJson"])["resultUrls"][0]
    else:
        task_id = created["id"]
        answer = await eventually(
            lambda: client.get(f"/dream-machine/v1/generations/{task_id}"),
            lambda answer: answer.json()["state"] == "completed",
            timeout=5,
        )
        url = answer.json()["assets"]["video"]
    content = (await client.get(url)).content
    [task] = [t for t in (await _record(client))["tasks"] if t["task_id"] == task_id]
    return content, task


async def test_the_record_holds_the_sha256_of_the_exact_bytes_served() -> None:
    async with _serving("kie", NO_FAULTS) as client:
        content, task = await _served_bytes(client, "kie", "a lighthouse")
        assert content.startswith(b"\x89PNG") and hashlib.sha256(content).hexdigest() == task["sha256"]
    async with _serving("luma", NO_FAULTS) as client:
        first, task = await _served_bytes(client, "luma", "one")
        second, _ = await _served_bytes(client, "luma", "two")
        assert first[4:8] == b"ftyp" and first != second  # a real MP4, unique per task
        assert hashlib.sha256(first).hexdigest() == task["sha256"] and task["size"] == len(first)


async def test_a_failed_download_is_a_503_or_a_body_cut_short() -> None:
    plan = _replace(failed_download=1.0)
    fake = make_fakes(KEY, plan)["luma"]
    app, injector = chaos_app("luma", fake, plan)
    runner, fake.base_url = await serve(app)
    try:
        async with httpx.AsyncClient(base_url=fake.base_url, headers=AUTH, timeout=10) as client:
            created = (await client.post("/dream-machine/v1/generations", json={"prompt": "x"})).json()
            seen = set()
            for _ in range(30):
                try:
                    answer = await client.get(f"/files/{created['id']}")
                    seen.add(answer.status_code)
                except httpx.TransportError:
                    seen.add("cut")
            assert seen == {503, "cut"}
            assert injector.counts["download_failed"] == 30
    finally:
        await runner.cleanup()
