"""Generations through the public HTTP API, for the orchestrator's system tests: register the fake
Kie provider and a model, generate many, and wait for (and read) every asset's ending."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from assetgen_dev.testing import eventually

__all__ = ["completions", "generate_many", "register_kie", "statuses", "wait_terminal"]

TERMINAL = {"COMPLETED", "FAILED", "CANCELED"}


def _ok(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, (
        f"{response.request.url.path}: {response.status_code} {response.text}"
    )
    return response.json()


async def register_kie(http: httpx.AsyncClient, base_url: str, api_key: str) -> None:
    """Registers the fake as provider ``kie`` (preset kie-ai) with the image model ``img``."""
    body = {"name": "kie", "preset": "kie-ai", "base_url": base_url, "api_key": api_key}
    _ok(await http.post("/api/providers/", json=body), 201)
    model = {
        "provider": "kie",
        "name": "img",
        "model_type": "IMAGE",
        "request_schema": {"model": "demo/image", "input": {"prompt": "{{prompt}}"}},
    }
    _ok(await http.post("/api/models/", json=model), 201)


async def generate_many(http: httpx.AsyncClient, count: int, *, parallel: int = 8) -> list[str]:
    """Generates ``count`` images in a new box; their asset ids."""
    box = _ok(await http.post("/api/boxes/", json={"name": "generations"}), 201)["id"]
    gate = asyncio.Semaphore(parallel)

    async def generate(index: int) -> str:
        async with gate:
            body = {"model": "img", "prompt": f"picture {index}"}
            return str(_ok(await http.post(f"/api/boxes/{box}/generate/", json=body), 202)["id"])

    return list(await asyncio.gather(*(generate(i) for i in range(count))))


async def statuses(http: httpx.AsyncClient, asset_ids: list[str]) -> dict[str, str]:
    """Each asset's status."""
    answers = await asyncio.gather(*(http.get(f"/api/assets/{asset_id}") for asset_id in asset_ids))
    return {asset_id: _ok(answer, 200)["status"] for asset_id, answer in zip(asset_ids, answers, strict=True)}


async def wait_terminal(http: httpx.AsyncClient, asset_ids: list[str], *, timeout: float) -> dict[str, str]:
    """Waits until every asset has ended; their statuses."""
    return await eventually(
        lambda: statuses(http, asset_ids),
        lambda found: set(found.values()) <= TERMINAL,
        timeout=timeout,
        interval=0.5,
        what=f"{len(asset_ids)} assets ended",
    )


async def completions(http: httpx.AsyncClient, asset_id: str) -> int:
    """How many times the asset's history says it completed."""
    history = _ok(await http.get(f"/api/assets/{asset_id}/history"), 200)
    return sum(1 for item in history["items"] if item.get("to_status") == "COMPLETED")
