"""Catalog management over HTTP: create, read, list, update and delete providers and models."""

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

KEY = "kie-catalog-key"


@dataclass
class Env:
    stack: Stack
    http: httpx.AsyncClient
    fake: FakeKieJobs


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    fake = FakeKieJobs(KEY, polls_before_done=0)
    async with whole_stack(tmp_path_factory.mktemp("catalog"), fakes=[fake]) as system:
        yield Env(stack=system.stack, http=system.http, fake=fake)


async def _generate(env: Env, model: str) -> dict[str, Any]:
    box = (await env.http.post("/api/boxes/", json={"name": "catalog"})).json()["id"]
    response = await env.http.post(f"/api/boxes/{box}/generate/", json={"model": model, "prompt": "a fox"})
    assert response.status_code == 202, response.text
    asset_id = response.json()["id"]

    async def read() -> dict[str, Any]:
        return dict((await env.http.get(f"/api/assets/{asset_id}/")).json())

    return await eventually(
        read, lambda a: a["status"] in ("COMPLETED", "FAILED"), timeout=60, what="terminal"
    )


async def test_update_and_delete_providers_and_models(env: Env) -> None:
    provider, model = f"cat-{uuid.uuid4().hex[:8]}", f"cat-m-{uuid.uuid4().hex[:8]}"
    response = await env.http.post(
        "/api/providers/",
        json={"name": provider, "preset": "kie-ai", "base_url": "http://127.0.0.1:9", "api_key": KEY},
    )
    assert response.status_code == 201, response.text
    schema = {"model": "x/img", "input": {"prompt": "{{prompt}}"}}
    response = await env.http.post(
        "/api/models/",
        json={"provider": provider, "name": model, "model_type": "IMAGE", "request_schema": schema},
    )
    assert response.status_code == 201, response.text

    listed = {m["name"]: m for m in (await env.http.get("/api/models/")).json()["items"]}
    assert listed[model]["provider"] == provider and listed[model]["model_type"] == "IMAGE"
    assert listed[model]["variables"] == ["prompt"]

    schema["input"]["size"] = "{{size?}}"
    response = await env.http.patch(
        f"/api/models/{model}/", json={"request_schema": schema, "model_type": "VIDEO"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["variables"] == ["prompt", "size"] and response.json()["required_variables"] == [
        "prompt"
    ]
    assert response.json()["model_type"] == "VIDEO"

    broken = await env.http.patch(f"/api/providers/{provider}/", json={"profile": {"name": "x"}})
    assert broken.status_code == 400 and "$" in broken.text
    assert (await env.http.get(f"/api/providers/{provider}/")).json()["preset"] == "kie-ai"

    # The provider points nowhere yet; moving it to the fake takes effect on the next generation. A
    # stored key goes only where it was given for: a move to another origin needs it again.
    moved = {"base_url": env.fake.base_url}
    refused_move = await env.http.patch(f"/api/providers/{provider}/", json=moved)
    assert refused_move.status_code == 400 and "api_key" in refused_move.text
    response = await env.http.patch(f"/api/providers/{provider}/", json={**moved, "api_key": KEY})
    assert response.status_code == 200 and response.json()["base_url"] == env.fake.base_url
    done = await _generate(env, model)
    assert done["status"] == "COMPLETED", done["error_message"]

    response = await env.http.patch(f"/api/providers/{provider}/", json={"api_key": "wrong"})
    assert response.status_code == 200 and "wrong" not in response.text
    refused = await _generate(env, model)
    assert refused["status"] == "FAILED" and "access permissions" in refused["error_message"]

    in_use = await env.http.delete(f"/api/providers/{provider}/")
    assert in_use.status_code >= 400 and model in in_use.text
    assert (await env.http.delete(f"/api/models/{model}/")).status_code in (200, 204)
    assert (await env.http.get(f"/api/models/{model}/")).status_code == 404
    assert (await env.http.delete(f"/api/providers/{provider}/")).status_code in (200, 204)
    assert (await env.http.get(f"/api/providers/{provider}/")).status_code == 404


async def test_presets_list_every_family_with_caveats(env: Env) -> None:
    response = await env.http.get("/api/presets/")
    assert response.status_code == 200, response.text
    presets = {item["name"]: item for item in response.json()["items"]}
    assert set(presets) == {
        "kie-ai",
        "kie-veo",
        "replicate",
        "fal",
        "stability-image",
        "stability-video",
        "openai-images",
        "openai-videos",
        "runway",
        "luma",
        "google-veo",
        "kling",
        "minimax",
        "seedance-ark",
        "dashscope-wan",
        "openrouter-video",
    }
    assert presets["stability-video"]["retired"]["date"] == "2025-10"
    assert presets["openai-videos"]["retired"]["date"] == "2026-09-24"
    assert presets["kie-ai"]["retired"] is None
    assert presets["runway"]["profile"]["connection"]["default_headers"]["X-Runway-Version"] == "2024-11-06"


async def test_a_models_variables_include_what_its_endpoint_and_the_submit_request_need(env: Env) -> None:
    profile = copy.deepcopy(dict(load_presets()["kie-ai"].data))
    profile["submit"]["request"]["headers"] = {"X-Tenant": "{{tenant}}", "X-Trace": "{{trace?}}"}
    provider, model = f"vars-{uuid.uuid4().hex[:8]}", f"vars-m-{uuid.uuid4().hex[:8]}"
    created = await env.http.post(
        "/api/providers/",
        json={"name": provider, "profile": profile, "base_url": env.fake.base_url, "api_key": KEY},
    )
    assert created.status_code == 201, created.text
    created = await env.http.post(
        "/api/models/",
        json={
            "provider": provider,
            "name": model,
            "model_type": "IMAGE",
            "api_endpoint": "/api/v1/{{family}}/createTask",
            "request_schema": {"model": "x/img", "input": {"prompt": "{{prompt}}", "seed": "{{seed?}}"}},
        },
    )
    assert created.status_code == 201, created.text
    for listed in (
        created.json(),
        *[m for m in (await env.http.get("/api/models/")).json()["items"] if m["name"] == model],
    ):
        assert set(listed["variables"]) == {"prompt", "seed", "tenant", "trace", "family"}
        assert sorted(listed["required_variables"]) == ["family", "prompt", "tenant"]
    box = (await env.http.post("/api/boxes/", json={"name": "vars"})).json()["id"]
    refused = await env.http.post(f"/api/boxes/{box}/generate/", json={"model": model, "prompt": "a fox"})
    assert refused.status_code == 400, refused.text
    assert "family" in refused.json()["error"] and "tenant" in refused.json()["error"]
