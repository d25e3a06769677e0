"""Paying once, keeping what was stored (issue 22, items 1 and 4), through the running system.

* A provider that creates the task and then answers 502 (its response lost on the way): the asset
  ends FAILED "outcome unknown at kie" and the provider saw exactly one create.
* A registration or a Generate repeated after it committed (a channel retry of a call whose answer
  was lost) returns the same asset, and the uploaded object stays.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from aiohttp import web
from generations_api import register_kie, wait_terminal

from assetgen.v1 import common_pb2, gateway_pb2, orchestrator_pb2, orchestrator_pb2_grpc
from assetgen_dev.embedded import S3Server, start_nats
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs
from assetgen_dev.fake_providers.media import make_png
from assetgen_dev.stack import Stack, start_stack

PROVIDER_KEY = "lost-answer-key"


class LosingKie(FakeKieJobs):
    """Creates the task, then answers 502 for prompts containing ``[lose]``, as a proxy in front of a
    provider whose answer timed out would."""

    async def create_task(self, request: web.Request) -> web.Response:
        answer = await super().create_task(request)
        if "[lose]" in str(self.last_submit):
            return web.Response(status=502, text="bad gateway")
        return answer


@pytest.fixture
async def system(
    tmp_path: Path, s3_server: S3Server
) -> AsyncIterator[tuple[Stack, LosingKie, httpx.AsyncClient]]:
    server = start_nats(tmp_path / "nats")
    provider = LosingKie(PROVIDER_KEY)
    await provider.start()
    stack = await start_stack(tmp_path / "stack", nats_url=server.url, s3=s3_server)
    headers = {"Authorization": f"Bearer {stack.token}"}
    try:
        async with httpx.AsyncClient(base_url=stack.http_url, headers=headers, timeout=30) as http:
            await register_kie(http, provider.base_url, PROVIDER_KEY)
            yield stack, provider, http
    finally:
        await stack.stop()
        await provider.stop()
        server.stop()


async def test_a_lost_submit_answer_ends_as_outcome_unknown_after_one_create(
    system: tuple[Stack, LosingKie, httpx.AsyncClient],
) -> None:
    _, provider, http = system
    box = (await http.post("/api/boxes/", json={"name": "lost"})).json()["id"]
    created = await http.post(f"/api/boxes/{box}/generate/", json={"model": "img", "prompt": "[lose] it"})
    assert created.status_code == 202, created.text
    asset_id = created.json()["id"]

    assert await wait_terminal(http, [asset_id], timeout=60) == {asset_id: "FAILED"}
    asset = (await http.get(f"/api/assets/{asset_id}")).json()
    assert "outcome unknown at kie" in asset["error_message"], asset
    assert provider.submits == 1


def _orchestrator(stack: Stack) -> tuple[grpc.aio.Channel, orchestrator_pb2_grpc.OrchestratorServiceStub]:
    # start_stack starts storage, provider-adapter, orchestrator, gateway, in that order.
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{stack.services[2].port}")
    return channel, orchestrator_pb2_grpc.OrchestratorServiceStub(channel)


async def test_a_repeated_registration_or_generate_returns_the_same_asset(
    system: tuple[Stack, LosingKie, httpx.AsyncClient],
) -> None:
    stack, _, http = system
    box = (await http.post("/api/boxes/", json={"name": "repeats"})).json()["id"]
    uploaded = await http.post(
        f"/api/boxes/{box}/upload/", files={"file": ("photo.png", make_png("kept"), "image/png")}
    )
    assert uploaded.status_code == 201, uploaded.text
    asset = uploaded.json()
    channel, orchestrator = _orchestrator(stack)
    try:
        stored = common_pb2.StoredObject(
            key=asset["object_key"], content_type="image/png", size_bytes=int(asset["size_bytes"])
        )
        again = await orchestrator.RegisterUpload(
            orchestrator_pb2.RegisterUploadRequest(
                asset_id=asset["id"], box_id=box, filename="photo.png", object=stored
            ),
            timeout=10,
        )
        assert again.id == asset["id"] and again.status == common_pb2.ASSET_STATUS_COMPLETED

        generate = gateway_pb2.GenerateRequest(box_id=box, model="img", prompt="once")
        request_id = (("x-assetgen-request-id", "req_test_1"),)
        first = await orchestrator.Generate(generate, timeout=10, metadata=request_id)
        second = await orchestrator.Generate(generate, timeout=10, metadata=request_id)
        assert first.id == second.id
    finally:
        await channel.close()
    file_url = (await http.get(f"/api/assets/{asset['id']}")).json()["file_url"]
    async with httpx.AsyncClient(timeout=30) as plain:
        assert (await plain.get(file_url)).content == make_png("kept")  # the object is still there
