"""Every stored object checked against the bytes the fake provider sent for its task.

The provider records each download's size and SHA-256 (``--digest-downloads``). For each completed
asset the check reads the asset (its task, recorded size and SHA-256), reads the stored object back
through the asset's ``file_url`` and hashes it, and compares all three: what was sent, what is
stored, and what the asset says.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from typing import Any

import httpx

from bench.system import System

__all__ = ["check_stored", "problems"]

_AT_ONCE = 4
_SHOWN = 10


def problems(asset: dict[str, Any], served: dict[str, Any] | None, stored: tuple[int, str]) -> list[str]:
    """What is wrong with one asset's object: ``served`` is the provider's download record, ``stored``
    the (size, SHA-256) read back from the bucket. Empty: sent, stored and recorded all agree."""
    size, digest = stored
    found = []
    if served is None:
        found.append("the provider served no result for its task")
    else:
        if size != served["bytes"]:
            found.append(f"stored {size} bytes, the provider sent {served['bytes']}")
        if digest != served.get("sha256"):
            found.append("stored SHA-256 differs from the bytes the provider sent")
    if asset.get("size_bytes") != size:
        found.append(f"the asset records {asset.get('size_bytes')} bytes, the object has {size}")
    if asset.get("sha256") != digest:
        found.append("the asset's SHA-256 differs from the stored object's")
    return found


async def _read_back(client: httpx.AsyncClient, url: str) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    async with client.stream("GET", url) as response:
        response.raise_for_status()
        async for chunk in response.aiter_bytes():
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


async def check_stored(system: System, assets: Iterable[str]) -> dict[str, Any]:
    """Checks each of ``assets`` (completed ones); returns counts and the first problems found."""
    assert system.http is not None
    served = {d["task_id"]: d for d in await system.provider_get("/_demo/downloads") if "task_id" in d}
    limit = asyncio.Semaphore(_AT_ONCE)
    checked, stored_bytes = 0, 0
    bad: list[dict[str, Any]] = []

    async with httpx.AsyncClient(timeout=120) as plain:

        async def check(asset_id: str) -> None:
            nonlocal checked, stored_bytes
            async with limit:
                assert system.http is not None
                response = await system.http.get(f"/api/assets/{asset_id}")
                response.raise_for_status()
                asset = response.json()
                stored = await _read_back(plain, asset["file_url"])
            checked += 1
            stored_bytes += stored[0]
            found = problems(asset, served.get(asset.get("external_task_id", "")), stored)
            if found:
                bad.append({"asset": asset_id, "problems": found})

        await asyncio.gather(*(check(asset) for asset in assets))
    return {
        "checked": checked,
        "matched": checked - len(bad),
        "mismatched": len(bad),
        "bytes": stored_bytes,
        "first_problems": bad[:_SHOWN],
    }
