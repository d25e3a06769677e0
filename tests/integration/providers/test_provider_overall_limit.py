"""A provider's overall max_concurrency holds over all its keys: work beyond it waits in the queue.

The provider is created with an overall limit of 2 and has two keys with no limit of their own. Of
five held generations two start and three wait PENDING with their queue_position; released, all
complete, never more than two running at the provider. The CLI changes the limit.
"""

from __future__ import annotations

import copy
import io
import json
import time
from typing import Any

import httpx
import pytest

from assetgen_cli.main import EXIT_OK, run_cli
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs, from_input
from assetgen_dev.fake_providers.media import MediaResults
from assetgen_dev.stack import WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_provider_adapter.profiles import load_presets


async def _assets(http: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    return [(await http.get(f"/api/assets/{asset}/")).json() for asset in ids]


async def test_the_providers_overall_limit_queues_work_over_all_its_keys(
    tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory
) -> None:
    fake = FakeKieJobs("key-a", timing=from_input, results=MediaResults(), polls_before_done=0)
    fake.add_key("key-b")
    profile: dict[str, Any] = copy.deepcopy(dict(load_presets()["kie-ai"].data))
    profile["name"] = "kie-quick"
    profile["poll"]["interval"] = {"initial": "500ms", "backoff": 1.0, "max": "1s", "min": "500ms"}
    async with whole_stack(tmp_path_factory.mktemp("overall"), fakes=[fake]) as system:
        http = system.http
        body = {
            "name": "kie",
            "profile": profile,
            "base_url": fake.base_url,
            "api_key": "key-a",
            "max_concurrency": 2,
        }
        created = await http.post("/api/providers/", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["max_concurrency"] == 2
        assert (
            await http.post("/api/providers/kie/keys/", json={"name": "b", "api_key": "key-b"})
        ).status_code == 201
        schema = {"model": "demo/image", "input": {"prompt": "{{prompt}}", "hold": "{{hold?}}"}}
        model = {"provider": "kie", "name": "img", "model_type": "IMAGE", "request_schema": schema}
        assert (await http.post("/api/models/", json=model)).status_code == 201
        box = (await http.post("/api/boxes/", json={"name": "overall"})).json()["id"]

        ids = []
        for number in range(5):
            body = {"model": "img", "prompt": f"image {number}", "config": {"hold": True}}
            ids.append((await http.post(f"/api/boxes/{box}/generate/", json=body)).json()["id"])
        waiting = await eventually(
            lambda: _assets(http, ids),
            lambda assets: sorted(asset["queue_position"] for asset in assets) == [0, 0, 1, 2, 3],
            what="two running and three queued behind the provider's overall limit",
        )
        assert sorted(asset["status"] for asset in waiting).count("PENDING") >= 3
        assert len(fake.tasks) == 2
        assert (await http.get("/api/providers/kie/keys/")).json()["queued"] == 3

        fake.release(time.time())  # the held tasks end; every later one finishes at once
        done = await eventually(
            lambda: _assets(http, ids),
            lambda assets: all(asset["status"] in ("COMPLETED", "FAILED") for asset in assets),
            timeout=60,
            what="every generation to finish",
        )
        assert {asset["status"] for asset in done} == {"COMPLETED"}
        assert fake.peak_running == 2  # never more than the provider's overall limit
        assert {task.owner for task in fake.tasks.values()} == {"key-a", "key-b"}

        out = io.StringIO()
        environ = {"ASSETGEN_URL": system.stack.grpc_address, "ASSETGEN_TOKEN": system.stack.token}
        code = await run_cli(
            ["--json", "providers", "set", "kie", "--max-concurrency", "0"], environ=environ, stdout=out
        )
        assert code == EXIT_OK and json.loads(out.getvalue()).get("max_concurrency", 0) == 0
        assert (await http.get("/api/providers/kie/")).json().get("max_concurrency", 0) == 0
