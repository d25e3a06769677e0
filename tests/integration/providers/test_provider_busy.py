"""A provider that rate-limits submissions holds the work back; it never fails it for being many.

Through the whole stack and a fake Kie that answers the next submissions with 429 and Retry-After:
more refusals than a submission has tries (``ASSETGEN_SUBMIT_RETRIES``) leave the generation PENDING
while they last, then it completes.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs, instant
from assetgen_dev.fake_providers.media import MediaResults
from assetgen_dev.stack import WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_provider_adapter.profiles import load_presets

KEY = "busy-key"


async def test_submissions_refused_for_now_wait_and_then_complete(
    tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory
) -> None:
    fake = FakeKieJobs(KEY, timing=instant, results=MediaResults(), polls_before_done=0)
    profile: dict[str, Any] = copy.deepcopy(dict(load_presets()["kie-ai"].data))
    profile["name"] = "kie-quick"
    profile["poll"]["interval"] = {"initial": "500ms", "backoff": 1.0, "max": "1s", "min": "500ms"}
    async with whole_stack(tmp_path_factory.mktemp("busy"), fakes=[fake]) as system:
        body = {"name": "kie", "profile": profile, "base_url": fake.base_url, "api_key": KEY}
        assert (await system.http.post("/api/providers/", json=body)).status_code == 201
        schema = {"model": "demo/image", "input": {"prompt": "{{prompt}}"}}
        model = {"provider": "kie", "name": "img", "model_type": "IMAGE", "request_schema": schema}
        assert (await system.http.post("/api/models/", json=model)).status_code == 201
        box = (await system.http.post("/api/boxes/", json={"name": "busy"})).json()["id"]
        # Three refusals per SubmitTask (the adapter's quick retries), six calls' worth: more than the
        # five tries a submission that cannot reach its provider gets.
        fake.busy_submits = 18
        generated = await system.http.post(
            f"/api/boxes/{box}/generate/", json={"model": "img", "prompt": "x"}
        )
        asset = generated.json()["id"]
        waiting = await eventually(
            lambda: system.http.get(f"/api/assets/{asset}/"),
            lambda _: fake.refused_busy >= 9,
            what="submissions refused as busy",
        )
        assert waiting.json()["status"] == "PENDING"
        done = await eventually(
            lambda: system.http.get(f"/api/assets/{asset}/"),
            lambda answer: answer.json()["status"] in ("COMPLETED", "FAILED"),
            timeout=90,
            what="the generation to finish",
        )
        assert done.json()["status"] == "COMPLETED", done.json()["error_message"]
        assert fake.refused_busy == 18 and fake.submits == 1
