"""Generations waiting for a provider's keys queue fairly: first in, first out within a project, projects
in turn, with their place shown on the asset.

One key of concurrency 1 (the provider's own, its pool's first) at a fake Kie that holds tasks until
released: project alpha's batch of six waits behind its first task, then project beta's two join;
alpha already has a task running, so beta's first goes next and its second between alpha's (beta 1,
alpha 2, beta 2, alpha 3, …), never behind the whole batch, and no task is refused for the key's limit.
The profile's own ``submit_rate`` queues the same way, with no key limited at all.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs, from_input
from assetgen_dev.fake_providers.media import MediaResults
from assetgen_dev.stack import WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_provider_adapter.profiles import load_presets

KEY = "fair-key"


async def _assets(http: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    return [(await http.get(f"/api/assets/{asset}/")).json() for asset in ids]


async def test_queued_generations_start_in_turns_across_projects(
    tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory
) -> None:
    fake = FakeKieJobs(KEY, timing=from_input, results=MediaResults(), polls_before_done=0)
    fake.per_key_limit = 1
    profile: dict[str, Any] = copy.deepcopy(dict(load_presets()["kie-ai"].data))
    profile["name"] = "kie-quick"
    profile["poll"]["interval"] = {"initial": "500ms", "backoff": 1.0, "max": "1s", "min": "500ms"}
    async with whole_stack(tmp_path_factory.mktemp("fair"), fakes=[fake]) as system:
        http = system.http
        body = {"name": "kie", "profile": profile, "base_url": fake.base_url, "api_key": KEY}
        assert (await http.post("/api/providers/", json=body)).status_code == 201
        (own,) = (await http.get("/api/providers/kie/keys/")).json()["items"]
        limited = await http.patch(f"/api/providers/kie/keys/{own['id']}/", json={"max_concurrency": 1})
        assert limited.status_code == 200
        schema = {"model": "demo/image", "input": {"prompt": "{{prompt}}", "hold": "{{hold?}}"}}
        model = {"provider": "kie", "name": "img", "model_type": "IMAGE", "request_schema": schema}
        assert (await http.post("/api/models/", json=model)).status_code == 201
        boxes = {}
        for project in ("alpha", "beta"):
            assert (await http.post("/api/projects/", json={"name": project})).status_code == 201
            boxes[project] = (
                await http.post("/api/boxes/", json={"name": project, "project": project})
            ).json()["id"]

        async def generate(project: str, number: int) -> str:
            body = {"model": "img", "prompt": f"{project} {number}", "config": {"hold": True}}
            return str((await http.post(f"/api/boxes/{boxes[project]}/generate/", json=body)).json()["id"])

        alpha = [await generate("alpha", number) for number in range(1, 7)]
        await eventually(
            lambda: _assets(http, alpha[1:]),
            lambda assets: sorted(asset["queue_position"] for asset in assets) == [1, 2, 3, 4, 5],
            what="alpha's batch queued behind its first task",
        )
        beta = [await generate("beta", number) for number in range(1, 3)]
        queued = await eventually(
            lambda: _assets(http, beta),
            lambda assets: [asset["queue_position"] for asset in assets] == [1, 3],
            what="beta's jobs placed before and between alpha's (alpha has one running)",
        )
        assert [asset["status"] for asset in queued] == ["PENDING", "PENDING"]
        assert (await http.get("/api/providers/kie/keys/")).json()["queued"] == 7

        async def gauges() -> tuple[float | None, float | None]:
            queued = REGISTRY.get_sample_value("assetgen_provider_queued", {"provider": "kie"})
            running = REGISTRY.get_sample_value(
                "assetgen_provider_key_in_flight", {"provider": "kie", "key": "default"}
            )
            return queued, running

        await eventually(gauges, lambda values: values == (7.0, 1.0), what="the queue's and the key's gauges")

        # A queued generation canceled leaves the queue at once, not after it stops asking.
        extra = await generate("beta", 3)
        await eventually(
            lambda: http.get(f"/api/assets/{extra}/"),
            lambda answer: answer.json()["queue_position"] > 0,
            what="a third beta job queued",
        )
        assert (await http.get("/api/providers/kie/keys/")).json()["queued"] == 8
        canceled = await http.post(f"/api/assets/{extra}/cancel/", json={})
        assert canceled.json()["status"] == "CANCELED"
        assert (await http.get("/api/providers/kie/keys/")).json()["queued"] == 7

        fake.release(time.time())  # the held task ends; every later one finishes at once
        done = await eventually(
            lambda: _assets(http, alpha + beta),
            lambda assets: all(asset["status"] in ("COMPLETED", "FAILED") for asset in assets),
            timeout=90,
            what="every generation to finish",
        )
        assert {asset["status"] for asset in done} == {"COMPLETED"}
        assert {asset["queue_position"] for asset in done} == {0}
        order = [task.prompt for task in sorted(fake.tasks.values(), key=lambda task: task.created_at)]
        assert order == [
            "alpha 1",
            "beta 1",
            "alpha 2",
            "beta 2",
            "alpha 3",
            "alpha 4",
            "alpha 5",
            "alpha 6",
        ]
        assert fake.refused_over_limit == 0 and fake.peak_by_key == {KEY: 1}


async def test_a_profiles_submit_rate_queues_in_turns_across_projects(
    tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory
) -> None:
    """Two submissions per 6 s (the profile's ``limits.submit_rate``), no key limited: alpha's first
    two go at once, the rest of its batch and beta's three wait with their places, and each window
    sends the next two by turn: beta 1 and 2, then alpha 3 and beta 3, then alpha 4. (The window is
    long enough to see the places before it frees; within one window its two race, in any order.)"""
    count, period = 2, 6.0
    fake = FakeKieJobs(KEY, results=MediaResults(), polls_before_done=0)
    profile: dict[str, Any] = copy.deepcopy(dict(load_presets()["kie-ai"].data))
    profile["name"] = "kie-rated"
    profile["poll"]["interval"] = {"initial": "500ms", "backoff": 1.0, "max": "1s", "min": "500ms"}
    profile["limits"] = {"submit_rate": f"{count}/{period:g}s"}
    async with whole_stack(tmp_path_factory.mktemp("fair-rate"), fakes=[fake]) as system:
        http = system.http
        body = {"name": "kie", "profile": profile, "base_url": fake.base_url, "api_key": KEY}
        assert (await http.post("/api/providers/", json=body)).status_code == 201
        (own,) = (await http.get("/api/providers/kie/keys/")).json()["items"]
        assert own["max_concurrency"] == 0  # only the profile's rate limits this provider
        schema = {"model": "demo/image", "input": {"prompt": "{{prompt}}"}}
        model = {"provider": "kie", "name": "img", "model_type": "IMAGE", "request_schema": schema}
        assert (await http.post("/api/models/", json=model)).status_code == 201
        boxes = {}
        for project in ("alpha", "beta"):
            assert (await http.post("/api/projects/", json={"name": project})).status_code == 201
            boxes[project] = (
                await http.post("/api/boxes/", json={"name": project, "project": project})
            ).json()["id"]

        async def generate(project: str, number: int) -> str:
            body = {"model": "img", "prompt": f"{project} {number}"}
            return str((await http.post(f"/api/boxes/{boxes[project]}/generate/", json=body)).json()["id"])

        alpha = [await generate("alpha", number) for number in range(1, 5)]
        await eventually(
            lambda: _assets(http, alpha[2:]),
            lambda assets: [asset["queue_position"] for asset in assets] == [1, 2],
            what="alpha's batch queued behind the window's two submissions",
        )
        beta = [await generate("beta", number) for number in range(1, 4)]
        queued = await eventually(
            lambda: _assets(http, beta + alpha[2:]),
            lambda assets: [asset["queue_position"] for asset in assets] == [1, 2, 4, 3, 5],
            what="beta's jobs placed before and between alpha's (alpha was served twice)",
        )
        assert {asset["status"] for asset in queued} == {"PENDING"}
        assert (await http.get("/api/providers/kie/keys/")).json()["queued"] == 5

        done = await eventually(
            lambda: _assets(http, alpha + beta),
            lambda assets: all(asset["status"] in ("COMPLETED", "FAILED") for asset in assets),
            timeout=90,
            what="every generation to finish",
        )
        assert {asset["status"] for asset in done} == {"COMPLETED"}
        assert {asset["queue_position"] for asset in done} == {0}
        sent = sorted(fake.tasks.values(), key=lambda task: task.created_at)
        order = [task.prompt for task in sent]
        windows = [set(order[0:2]), set(order[2:4]), set(order[4:6]), set(order[6:])]
        assert windows == [{"alpha 1", "alpha 2"}, {"beta 1", "beta 2"}, {"alpha 3", "beta 3"}, {"alpha 4"}]
        # Never more than the rate's count within one window. The provider sees each a little after
        # the ledger counted it (its claim), so its own clock is given a tenth of a second of slack.
        times = [task.created_at for task in sent]
        for index, start in enumerate(times):
            assert sum(1 for at in times[index:] if at < start + period - 0.1) <= count, times
