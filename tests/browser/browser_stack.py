"""The browser tests' system: constants, the fake provider's timing, and what the fixture hands out."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import ViewportSize

from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs
from assetgen_dev.stack import Stack

__all__ = [
    "DESKTOP",
    "IMAGE_MODEL",
    "IMAGE_SCHEMA",
    "PHONE",
    "PROVIDER_KEY",
    "REPO",
    "SLOW",
    "VIDEO_MODEL",
    "VIDEO_SCHEMA",
    "Console",
    "fast_polling",
    "task_timing",
]

REPO = Path(__file__).resolve().parents[2]
PROVIDER_KEY = "browser-kie-key"
IMAGE_MODEL = "demo-image"
VIDEO_MODEL = "demo-video"
IMAGE_SCHEMA = {"model": "demo/image", "input": {"prompt": "{{prompt}}", "aspect_ratio": "{{aspect_ratio?}}"}}
VIDEO_SCHEMA = {
    "model": "demo/video",
    "input": {"prompt": "{{prompt}}", "image_urls": "{{image_urls}}", "duration": "{{duration?}}"},
}
# A prompt with this mark is held by the fake provider until cancelled: the "slow generation".
SLOW = "[slow]"
DESKTOP = ViewportSize(width=1280, height=800)
PHONE = ViewportSize(width=390, height=844)


def task_timing(body: Mapping[str, Any]) -> float | None:
    prompt = str((body.get("input") or {}).get("prompt", ""))
    return None if SLOW in prompt else 0.3


@dataclass
class Console:
    """The running system the browser talks to: its URL, admin token, an API client and the fake."""

    url: str
    token: str
    http: httpx.AsyncClient
    provider: FakeKieJobs
    stack: Stack

    async def box(self, name: str) -> str:
        response = await self.http.post("/api/boxes/", json={"name": name})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])


def fast_polling(profile: dict[str, Any]) -> dict[str, Any]:
    """The kie-ai profile polling every 200 ms instead of every few seconds, so tests are quick."""
    fast = copy.deepcopy(profile)
    fast["poll"]["interval"] = {"initial": "200ms", "backoff": 1.0, "max": "200ms", "min": "100ms"}
    fast["limits"] = {}
    return fast
