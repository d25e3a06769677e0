"""Cancel, retry, chains whose parent is still in flight, history, and deleting, through the HTTP API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from assetgen_dev.demo_provider import demo_provider
from assetgen_dev.stack import WholeStack, WholeStackFactory
from assetgen_dev.testing import eventually

PROVIDER_KEY = "controls-key"


# The running system: its services (``stack``), an authenticated ``http`` client, the ``provider_url``.
Env = WholeStack


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    provider = demo_provider(PROVIDER_KEY, delay=2.5)
    async with whole_stack(tmp_path_factory.mktemp("controls"), fakes=[provider]) as system:
        await system.add_provider("kie", provider)
        image = {"model": "demo/image", "input": {"prompt": "{{prompt}}"}}
        video = {"model": "demo/video", "input": {"prompt": "{{prompt}}", "image_urls": "{{image_urls}}"}}
        await system.add_model("kie", "img", "IMAGE", image)
        await system.add_model("kie", "vid", "VIDEO", video)
        yield system


async def _box(env: Env) -> str:
    return str((await env.http.post("/api/boxes/", json={"name": "controls"})).json()["id"])


async def _generate(env: Env, box: str, **body: Any) -> dict[str, Any]:
    response = await env.http.post(f"/api/boxes/{box}/generate/", json=body)
    assert response.status_code == 202, response.text
    return dict(response.json())


async def _asset(env: Env, asset_id: str) -> dict[str, Any]:
    response = await env.http.get(f"/api/assets/{asset_id}/")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _until(env: Env, asset_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
    return await eventually(
        lambda: _asset(env, asset_id), lambda a: a["status"] in statuses, timeout=timeout, what=str(statuses)
    )


async def test_cancel_then_retry_completes_as_a_second_attempt(env: Env) -> None:
    box = await _box(env)
    asset = await _generate(env, box, model="img", prompt="to be cancelled")
    await _until(env, asset["id"], "PROCESSING")
    cancelled = await env.http.post(f"/api/assets/{asset['id']}/cancel/")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "CANCELED"
    again = await env.http.post(f"/api/assets/{asset['id']}/cancel/")
    assert again.status_code == 409

    retried = await env.http.post(f"/api/assets/{asset['id']}/retry/")
    assert retried.status_code == 202, retried.text
    assert retried.json()["attempt"] == 2 and retried.json()["status"] == "PENDING"
    done = await _until(env, asset["id"], "COMPLETED", "FAILED")
    assert done["status"] == "COMPLETED" and done["id"] == asset["id"] and done["attempt"] == 2

    history = (await env.http.get(f"/api/assets/{asset['id']}/history/")).json()["items"]
    moves = [(h["attempt"], h["to_status"]) for h in history if h["from_status"] != h["to_status"]]
    assert (1, "CANCELED") in moves and (2, "PENDING") in moves and moves[-1] == (2, "COMPLETED")
    assert (await env.http.post(f"/api/assets/{asset['id']}/retry/")).status_code == 409


async def test_child_waits_for_a_processing_parent_then_starts_by_itself(env: Env) -> None:
    box = await _box(env)
    parent = await _generate(env, box, model="img", prompt="parent")
    child = await _generate(env, box, model="vid", prompt="child", parent_asset=parent["id"])
    assert child["status"] == "PENDING" and child["source_type"] == "IMG2VID"
    done_parent = await _until(env, parent["id"], "COMPLETED")
    done_child = await _until(env, child["id"], "COMPLETED", "FAILED")
    assert done_child["status"] == "COMPLETED", done_child
    assert done_child["content_type"] == "video/mp4"
    assert done_child["created_at"] < done_parent["updated_at"]


async def test_child_of_a_failing_parent_fails_with_the_parents_reason(env: Env) -> None:
    box = await _box(env)
    parent = await _generate(env, box, model="img", prompt="[fail] parent")
    child = await _generate(env, box, model="vid", prompt="child", parent_asset=parent["id"])
    failed_parent = await _until(env, parent["id"], "FAILED")
    failed_child = await _until(env, child["id"], "FAILED")
    assert parent["id"] in failed_child["error_message"]
    assert failed_parent["error_message"] in failed_child["error_message"]


async def test_deleting_assets_and_boxes_removes_files(env: Env) -> None:
    box = await _box(env)
    finished = await _until(env, (await _generate(env, box, model="img", prompt="keep"))["id"], "COMPLETED")
    in_flight = await _generate(env, box, model="img", prompt="in flight")
    async with httpx.AsyncClient(timeout=10) as plain:
        assert (await plain.get(finished["file_url"])).status_code == 200
        deleted = await env.http.delete(f"/api/assets/{finished['id']}/")
        assert deleted.status_code == 200, deleted.text
        assert (await env.http.get(f"/api/assets/{finished['id']}/")).status_code == 404
        assert (await plain.get(finished["file_url"])).status_code == 404

    renamed = await env.http.patch(f"/api/boxes/{box}/", json={"name": "renamed"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "renamed"
    gone = await env.http.delete(f"/api/boxes/{box}/")
    assert gone.status_code == 200, gone.text
    assert gone.json()["deleted_assets"] == 1
    assert (await env.http.get(f"/api/boxes/{box}/")).status_code == 404
    assert (await env.http.get(f"/api/assets/{in_flight['id']}/")).status_code == 404


async def test_a_provider_that_never_finishes_fails_at_the_deadline(env: Env) -> None:
    never = demo_provider(PROVIDER_KEY, delay=3600)
    never_url = await never.start()
    try:
        presets = (await env.http.get("/api/presets/")).json()["items"]
        profile = next(p["profile"] for p in presets if p["name"] == "kie-ai")
        profile["poll"]["deadline"] = "3s"
        profile["poll"]["interval"] = {**profile["poll"].get("interval", {}), "initial": "0.5s", "max": "1s"}
        created = await env.http.post(
            "/api/providers/",
            json={"name": "never", "profile": profile, "base_url": never_url, "api_key": PROVIDER_KEY},
        )
        assert created.status_code == 201, created.text
        model = await env.http.post(
            "/api/models/",
            json={
                "provider": "never",
                "name": "never-img",
                "model_type": "IMAGE",
                "request_schema": {"model": "demo/image", "input": {"prompt": "{{prompt}}"}},
            },
        )
        assert model.status_code == 201, model.text
        box = await _box(env)
        asset = await _generate(env, box, model="never-img", prompt="forever")
        failed = await _until(env, asset["id"], "FAILED", "COMPLETED", timeout=60)
        assert failed["status"] == "FAILED"
        assert "timed out after 3s" in failed["error_message"]
    finally:
        await never.stop()
