"""A key the provider refuses while a task runs (rotated, expired, out of credit) does not fail the task.

Through the whole stack and a fake Kie whose polls answer its envelope's 401 to a wrong key: the asset
stays PROCESSING while its polls are refused, and completes once the key is right again; a task whose
key stays refused fails at its deadline, and its error names the refused key.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs, from_input
from assetgen_dev.fake_providers.media import MediaResults
from assetgen_dev.stack import WholeStack, WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_provider_adapter.profiles import load_presets

KEY = "polling-key"
SCHEMA = {"model": "demo/image", "input": {"prompt": "{{prompt}}", "hold": "{{hold?}}"}}
REFUSED = "refused its API key while polling (401: You do not have access permissions)"


@dataclass
class Env:
    system: WholeStack
    fake: FakeKieJobs
    box: str

    @property
    def http(self) -> httpx.AsyncClient:
        return self.system.http


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    fake = FakeKieJobs(KEY, timing=from_input, results=MediaResults(), polls_before_done=0)
    short: dict[str, Any] = copy.deepcopy(dict(load_presets()["kie-ai"].data))
    short["name"] = "kie-short"
    short["poll"]["deadline"] = "6s"
    async with whole_stack(tmp_path_factory.mktemp("key-refused"), fakes=[fake]) as system:
        for body in (
            {"name": "kie", "preset": "kie-ai", "base_url": fake.base_url, "api_key": KEY},
            {"name": "kie-short", "profile": short, "base_url": fake.base_url, "api_key": KEY},
        ):
            assert (await system.http.post("/api/providers/", json=body)).status_code == 201
        for provider, model in (("kie", "img"), ("kie-short", "img-short")):
            body = {"provider": provider, "name": model, "model_type": "IMAGE", "request_schema": SCHEMA}
            assert (await system.http.post("/api/models/", json=body)).status_code == 201
        box = await system.http.post("/api/boxes/", json={"name": "keys"})
        yield Env(system, fake, box.json()["id"])


async def _held_task(env: Env, model: str) -> str:
    """A generation whose task the provider holds running, once it is submitted."""
    body = {"model": model, "prompt": "x", "config": {"hold": True}}
    asset = (await env.http.post(f"/api/boxes/{env.box}/generate/", json=body)).json()["id"]
    await eventually(
        lambda: env.http.get(f"/api/assets/{asset}/"),
        lambda answer: answer.json()["status"] == "PROCESSING",
        what="the task to be submitted",
    )
    return str(asset)


async def _set_key(env: Env, provider: str, key: str) -> None:
    answer = await env.http.patch(f"/api/providers/{provider}/", json={"api_key": key})
    assert answer.status_code == 200, answer.text


async def test_a_task_whose_key_stays_refused_fails_at_its_deadline_naming_the_key(env: Env) -> None:
    asset = await _held_task(env, "img-short")
    await _set_key(env, "kie-short", "expired-key")
    failed = await eventually(
        lambda: env.http.get(f"/api/assets/{asset}/"),
        lambda answer: answer.json()["status"] == "FAILED",
        timeout=30,
        what="the deadline",
    )
    message = failed.json()["error_message"]
    assert message.startswith(
        "timed out after 6s waiting for the provider; the last poll: provider kie-short "
    )
    assert message.endswith(REFUSED)


async def test_a_refused_poll_leaves_the_task_running_until_the_key_is_fixed(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="assetgen_orchestrator.lifecycle")
    asset = await _held_task(env, "img")
    await _set_key(env, "kie", "rotated-away")
    await eventually(
        lambda: _refusals(caplog, asset),
        lambda count: count >= 1,
        what="a poll refused for its key",
    )
    running = (await env.http.get(f"/api/assets/{asset}/")).json()
    assert (running["status"], running["error_message"]) == ("PROCESSING", "")

    await _set_key(env, "kie", KEY)
    env.fake.release(time.time())
    done = await eventually(
        lambda: env.http.get(f"/api/assets/{asset}/"),
        lambda answer: answer.json()["status"] in ("COMPLETED", "FAILED"),
        what="the task to complete",
    )
    assert done.json()["status"] == "COMPLETED", done.json()["error_message"]
    assert _refusals_sync(caplog, asset) >= 1


async def _refusals(caplog: pytest.LogCaptureFixture, asset: str) -> int:
    return _refusals_sync(caplog, asset)


def _refusals_sync(caplog: pytest.LogCaptureFixture, asset: str) -> int:
    return sum(
        1
        for record in caplog.records
        if getattr(record, "asset_id", "") == asset and REFUSED in record.getMessage()
    )
