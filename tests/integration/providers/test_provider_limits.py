"""Provider limits hold through the whole system: work over a limit waits PENDING and is sent later."""

from __future__ import annotations

import copy
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from assetgen_dev.fake_providers import FakeKieJobs
from assetgen_dev.stack import Stack, WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_provider_adapter.profiles import load_presets

KEY = "kie-limits-key"
SCHEMA = {"model": "x/img", "input": {"prompt": "{{prompt}}"}}


@dataclass
class Env:
    stack: Stack
    http: httpx.AsyncClient
    box: str


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    async with whole_stack(tmp_path_factory.mktemp("limits")) as system:
        response = await system.http.post("/api/boxes/", json={"name": f"limits-{uuid.uuid4().hex[:8]}"})
        assert response.status_code == 201, response.text
        yield Env(stack=system.stack, http=system.http, box=response.json()["id"])


def _kie_profile(limits: dict[str, Any]) -> dict[str, Any]:
    profile = copy.deepcopy(dict(load_presets()["kie-ai"].data))
    profile["name"] = "kie-limited"
    profile["poll"]["interval"] = {"initial": "300ms", "backoff": 1.0, "max": "300ms", "min": "100ms"}
    profile["limits"] = limits
    return profile


async def _provider(env: Env, fake: FakeKieJobs, limits: dict[str, Any]) -> str:
    name = f"limited-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "profile": _kie_profile(limits), "base_url": fake.base_url, "api_key": KEY}
    response = await env.http.post("/api/providers/", json=body)
    assert response.status_code == 201, response.text
    model = {"provider": name, "name": f"{name}-m", "model_type": "IMAGE", "request_schema": SCHEMA}
    response = await env.http.post("/api/models/", json=model)
    assert response.status_code == 201, response.text
    return f"{name}-m"


async def _generate_all(env: Env, model: str, count: int) -> list[dict[str, Any]]:
    ids = []
    for index in range(count):
        response = await env.http.post(
            f"/api/boxes/{env.box}/generate/", json={"model": model, "prompt": f"fox {index}"}
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])

    async def read() -> list[dict[str, Any]]:
        return [(await env.http.get(f"/api/assets/{asset_id}/")).json() for asset_id in ids]

    return await eventually(
        read,
        lambda assets: all(a["status"] in ("COMPLETED", "FAILED") for a in assets),
        timeout=90,
        what="every generation terminal",
    )


async def test_max_concurrency_holds_work_pending_until_a_slot_frees(env: Env) -> None:
    fake = FakeKieJobs(KEY, polls_before_done=3)
    await fake.start()
    try:
        model = await _provider(env, fake, {"max_concurrency": 1})
        assets = await _generate_all(env, model, 3)
        assert [a["status"] for a in assets] == ["COMPLETED"] * 3, [a["error_message"] for a in assets]
        assert len(fake.tasks) == 3
        assert fake.peak_running == 1
    finally:
        await fake.stop()


async def test_submit_rate_spaces_submissions(env: Env) -> None:
    fake = FakeKieJobs(KEY, polls_before_done=0)
    await fake.start()
    try:
        model = await _provider(env, fake, {"submit_rate": "1/2s"})
        assets = await _generate_all(env, model, 2)
        assert [a["status"] for a in assets] == ["COMPLETED"] * 2, [a["error_message"] for a in assets]
        first, second = sorted(task.created_at for task in fake.tasks.values())
        assert second - first >= 1.9
    finally:
        await fake.stop()


async def test_api_key_referenced_from_the_environment(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSETGEN_PROVIDER_KEY_KIE_LIMITS", KEY)
    fake = FakeKieJobs(KEY, polls_before_done=0)
    await fake.start()
    try:
        name = f"by-ref-{uuid.uuid4().hex[:8]}"
        body = {
            "name": name,
            "profile": _kie_profile({}),
            "base_url": fake.base_url,
            "api_key_ref": "env:ASSETGEN_PROVIDER_KEY_KIE_LIMITS",
        }
        response = await env.http.post("/api/providers/", json=body)
        assert response.status_code == 201, response.text
        assert response.json()["has_api_key"] is True
        assert KEY not in response.text
        model = {"provider": name, "name": f"{name}-m", "model_type": "IMAGE", "request_schema": SCHEMA}
        assert (await env.http.post("/api/models/", json=model)).status_code == 201
        [asset] = await _generate_all(env, f"{name}-m", 1)
        assert asset["status"] == "COMPLETED", asset["error_message"]
    finally:
        await fake.stop()


@pytest.mark.parametrize(
    "reference", ["env:HOME", "env:ASSETGEN_SECRET_KEY", "file:../etc/passwd", "vault:x"]
)
async def test_api_key_references_outside_the_allowed_places_are_refused(env: Env, reference: str) -> None:
    body = {"name": f"bad-ref-{uuid.uuid4().hex[:8]}", "preset": "kie-ai", "api_key_ref": reference}
    response = await env.http.post("/api/providers/", json=body)
    assert response.status_code == 400, response.text
    assert "api_key_ref" in response.text
