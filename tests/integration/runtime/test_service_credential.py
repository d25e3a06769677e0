"""Internal services serve only callers holding the service credential; health stays open."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from assetgen.v1 import storage_pb2, storage_pb2_grpc
from assetgen_dev.demo_provider import demo_provider
from assetgen_dev.embedded import S3Server
from assetgen_dev.stack import WholeStackFactory
from assetgen_runtime.channels import open_channel
from assetgen_runtime.servicetoken import SERVICE_TOKEN_METADATA, token_interceptors
from assetgen_storage.main import run_server as run_storage
from assetgen_storage.settings import StorageSettings

TOKEN = "service-credential-under-test"


async def test_storage_refuses_a_call_without_the_credential_but_answers_health(s3_server: S3Server) -> None:
    settings = StorageSettings(
        s3_endpoint=s3_server.url,
        s3_access_key=s3_server.access_key,
        s3_secret_key=s3_server.secret_key,
        s3_bucket=f"assetgen-{uuid.uuid4().hex[:12]}",
        service_token=TOKEN,
        grpc_host="127.0.0.1",
    )
    storage = await run_storage(settings, port=0)
    address = f"127.0.0.1:{storage.port}"
    request = storage_pb2.StatRequest(key="missing/object")
    try:
        async with open_channel(address) as bare:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await storage_pb2_grpc.StorageServiceStub(bare).Stat(request, timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            wrong = [(SERVICE_TOKEN_METADATA, "not-the-token")]
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await storage_pb2_grpc.StorageServiceStub(bare).Stat(request, metadata=wrong, timeout=5)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            health = await health_pb2_grpc.HealthStub(bare).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
        async with open_channel(address, interceptors=token_interceptors(TOKEN)) as holder:
            with pytest.raises(grpc.aio.AioRpcError) as answered:
                await storage_pb2_grpc.StorageServiceStub(holder).Stat(request, timeout=5)
            # Past the credential check: storage judges the key itself.
            assert answered.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await storage.stop()


IMAGE_SCHEMA = {"model": "demo/image", "input": {"prompt": "{{prompt}}"}}


async def test_a_whole_stack_with_the_credential_generates(
    tmp_path: Path, whole_stack: WholeStackFactory
) -> None:
    provider = demo_provider("credential-provider-key", delay=0.1)
    async with whole_stack(tmp_path, fakes=[provider], service_token=TOKEN) as system:
        await system.add_provider("kie", provider)
        await system.add_model("kie", "img", "IMAGE", IMAGE_SCHEMA)
        box = await system.http.post("/api/boxes/", json={"name": "trusted"})
        assert box.status_code == 201, box.text
        made = await system.http.post(
            f"/api/boxes/{box.json()['id']}/generate/", json={"model": "img", "prompt": "a fox"}
        )
        assert made.status_code == 202, made.text
        deadline = time.monotonic() + 60
        status = ""
        while time.monotonic() < deadline:
            asset = await system.http.get(f"/api/assets/{made.json()['id']}/")
            status = asset.json()["status"]
            if status in ("COMPLETED", "FAILED", "CANCELED"):
                break
            await asyncio.sleep(0.1)
        assert status == "COMPLETED", asset.text
        async with open_channel(system.stack.storage_addr) as bare:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await storage_pb2_grpc.StorageServiceStub(bare).Stat(
                    storage_pb2.StatRequest(key="x"), timeout=5
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
