"""The whole flow through the public API: four services, NATS, S3, SQLite and a Kie.ai-shaped provider."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from assetgen.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from assetgen_dev.demo_provider import demo_provider, make_png
from assetgen_dev.embedded import binary
from assetgen_dev.stack import WholeStack, WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_gateway.http_api import http_routes

PROVIDER_KEY = "kie-secret-key-123"
IMAGE_SCHEMA = {"model": "demo/image", "input": {"prompt": "{{prompt}}", "aspect_ratio": "{{aspect_ratio?}}"}}
VIDEO_SCHEMA = {
    "model": "demo/video",
    "input": {"prompt": "{{prompt}}", "image_urls": "{{image_urls}}", "duration": "{{duration?}}"},
}


# The running system: its services (``stack``), an authenticated ``http`` client, the ``provider_url``.
Env = WholeStack


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    provider = demo_provider(PROVIDER_KEY, delay=0.3)
    async with whole_stack(tmp_path_factory.mktemp("e2e"), fakes=[provider]) as system:
        await system.add_provider("kie", provider)
        await system.add_model("kie", "img", "IMAGE", IMAGE_SCHEMA)
        await system.add_model("kie", "vid", "VIDEO", VIDEO_SCHEMA)
        yield system


async def _box(env: Env) -> str:
    response = await env.http.post("/api/boxes/", json={"name": "campaign"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _wait_terminal(env: Env, asset_id: str) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        response = await env.http.get(f"/api/assets/{asset_id}/")
        assert response.status_code == 200, response.text
        return dict(response.json())

    return await eventually(
        read, lambda a: a["status"] in ("COMPLETED", "FAILED", "CANCELED"), timeout=60, what="terminal status"
    )


async def _provider_result_bytes(env: Env, task_id: str) -> bytes:
    async with httpx.AsyncClient(timeout=10) as client:
        info = await client.get(
            f"{env.provider_url}/api/v1/jobs/recordInfo",
            params={"taskId": task_id},
            headers={"Authorization": f"Bearer {PROVIDER_KEY}"},
        )
        url = json.loads(info.json()["data"]["resultJson"])["resultUrls"][0]
        return (await client.get(url)).content


async def test_image_then_video_from_it(env: Env) -> None:
    box = await _box(env)
    response = await env.http.post(
        f"/api/boxes/{box}/generate/", json={"model": "img", "prompt": "a red fox"}
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "PENDING" and accepted["source_type"] == "GENERATED"

    image = await _wait_terminal(env, accepted["id"])
    assert image["status"] == "COMPLETED", image
    assert image["external_task_id"]
    assert image["content_type"] == "image/png"
    async with httpx.AsyncClient(timeout=30) as plain:
        stored = (await plain.get(image["file_url"])).content
    assert stored == await _provider_result_bytes(env, image["external_task_id"])
    assert stored.startswith(b"\x89PNG")
    assert image["sha256"] == hashlib.sha256(stored).hexdigest()
    assert image["size_bytes"] == len(stored)

    response = await env.http.post(
        f"/api/boxes/{box}/generate",
        json={
            "model": "vid",
            "prompt": "the fox runs",
            "parent_asset": image["id"],
            "config": {"duration": "8"},
        },
    )
    assert response.status_code == 202, response.text
    video = await _wait_terminal(env, response.json()["id"])
    assert video["status"] == "COMPLETED", video
    assert video["source_type"] == "IMG2VID" and video["parent_asset"] == image["id"]
    assert video["content_type"] == "video/mp4"
    assert video["config"] == {"duration": "8"}
    async with httpx.AsyncClient(timeout=30) as plain:
        clip = (await plain.get(video["file_url"])).content
    assert clip[4:8] == b"ftyp"
    assert clip == await _provider_result_bytes(env, video["external_task_id"])

    listing = (await env.http.get(f"/api/boxes/{box}/assets/")).json()
    assert [a["id"] for a in listing["items"]] == [video["id"], image["id"]]
    assert listing["next_cursor"] in ("", None)
    only_videos = (await env.http.get(f"/api/boxes/{box}/assets", params={"source_type": "IMG2VID"})).json()
    assert [a["id"] for a in only_videos["items"]] == [video["id"]]


async def test_provider_failure_carries_the_providers_message(env: Env) -> None:
    box = await _box(env)
    response = await env.http.post(f"/api/boxes/{box}/generate/", json={"model": "img", "prompt": "[fail] x"})
    failed = await _wait_terminal(env, response.json()["id"])
    assert failed["status"] == "FAILED"
    assert failed["error_message"]
    assert failed["file_url"] == ""


async def test_upload_stores_the_bytes_and_refuses_non_media(env: Env) -> None:
    box = await _box(env)
    png = make_png("upload")
    response = await env.http.post(
        f"/api/boxes/{box}/upload/", files={"file": ("photo.jpg", png, "image/jpeg")}
    )
    assert response.status_code == 201, response.text
    asset = response.json()
    assert asset["status"] == "COMPLETED" and asset["source_type"] == "UPLOADED"
    assert asset["content_type"] == "image/png"  # the bytes decide, not the label
    assert asset["object_key"].startswith(f"boxes/{box}/{asset['id']}/") and asset["object_key"].endswith(
        ".png"
    )
    async with httpx.AsyncClient(timeout=30) as plain:
        assert (await plain.get(asset["file_url"])).content == png

    response = await env.http.post(
        f"/api/boxes/{box}/upload/", files={"file": ("notes.txt", b"just text", "text/plain")}
    )
    assert response.status_code == 415, response.text
    assert "error" in response.json()
    listing = (await env.http.get(f"/api/boxes/{box}/assets/")).json()
    assert [a["id"] for a in listing["items"]] == [asset["id"]]


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"model": "nope", "prompt": "x"}, 400, "nope"),
        ({"model": "img"}, 400, "prompt"),
        ({"model": "vid", "prompt": "x"}, 400, "image_urls"),
        ({"model": "img", "prompt": "x", "config": [1, 2]}, 400, "config"),
        ({"model": "img", "prompt": "x", "image_url": "file:///etc/passwd"}, 400, "http"),
        ({"model": "img", "prompt": "x", "parent_asset": "ast_missing"}, 400, "ast_missing"),
    ],
)
async def test_bad_generate_requests_are_refused_before_any_asset_exists(
    env: Env, body: dict[str, Any], status: int, fragment: str
) -> None:
    box = await _box(env)
    response = await env.http.post(f"/api/boxes/{box}/generate/", json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["error"]
    assert (await env.http.get(f"/api/boxes/{box}/assets/")).json()["items"] == []


async def test_http_errors_are_json_with_the_right_status(env: Env) -> None:
    async with httpx.AsyncClient(base_url=env.stack.http_url, timeout=10) as anonymous:
        assert (await anonymous.get("/api/boxes/")).status_code == 401
        wrong = await anonymous.get("/api/boxes/", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401 and wrong.json()["error"]
        assert (await anonymous.get("/healthz")).status_code == 200
    assert (await env.http.get("/api/boxes/box_missing/")).status_code == 404
    assert (await env.http.get("/api/assets/ast_missing")).status_code == 404
    assert (await env.http.post("/api/boxes/box_missing/generate/", json={"model": "img"})).status_code == 404
    bad_json = await env.http.post(
        "/api/boxes/", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]
    assert (await env.http.post("/api/boxes/", json={"name": ""})).status_code == 400
    assert (await env.http.get("/api/nothing-here")).status_code == 404


async def test_catalog_never_shows_the_api_key(env: Env) -> None:
    providers = (await env.http.get("/api/providers/")).json()
    assert PROVIDER_KEY not in json.dumps(providers)
    kie = next(p for p in providers["items"] if p["name"] == "kie")
    assert kie["has_api_key"] is True and kie["preset"] == "kie-ai"
    models = (await env.http.get("/api/models/")).json()
    vid = next(m for m in models["items"] if m["name"] == "vid")
    assert vid["provider"] == "kie" and vid["model_type"] == "VIDEO"
    assert "image_urls" in vid["required_variables"] and "duration" not in vid["required_variables"]
    duplicate = await env.http.post(
        "/api/providers/", json={"name": "kie", "preset": "kie-ai", "base_url": env.provider_url}
    )
    assert duplicate.status_code == 409


async def test_typed_grpc_stubs_drive_the_same_flow(env: Env) -> None:
    metadata = [("authorization", f"Bearer {env.stack.token}")]
    async with grpc.aio.insecure_channel(env.stack.grpc_address) as channel:
        api = gateway_pb2_grpc.GatewayServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await api.ListBoxes(gateway_pb2.ListBoxesRequest(), timeout=10)
        assert denied.value.code() == grpc.StatusCode.UNAUTHENTICATED
        box = await api.CreateBox(gateway_pb2.CreateBoxRequest(name="grpc"), metadata=metadata, timeout=10)
        asset = await api.Generate(
            gateway_pb2.GenerateRequest(box_id=box.id, model="img", prompt="over gRPC"),
            metadata=metadata,
            timeout=10,
        )
        assert asset.status == common_pb2.ASSET_STATUS_PENDING

        async def read() -> common_pb2.Asset:
            return await api.GetAsset(gateway_pb2.GetAssetRequest(id=asset.id), metadata=metadata, timeout=10)

        done = await eventually(read, lambda a: a.status == common_pb2.ASSET_STATUS_COMPLETED, timeout=60)
        assert done.file_url and done.size_bytes > 0

        async def chunks() -> AsyncIterator[gateway_pb2.UploadRequest]:
            yield gateway_pb2.UploadRequest(
                metadata=gateway_pb2.UploadMetadata(box_id=box.id, filename="a.png")
            )
            data = make_png("grpc upload")
            for start in range(0, len(data), 100):
                yield gateway_pb2.UploadRequest(chunk=data[start : start + 100])

        uploaded = await api.Upload(chunks(), metadata=metadata, timeout=30)
        assert uploaded.source_type == common_pb2.SOURCE_TYPE_UPLOADED
        assert uploaded.content_type == "image/png"


async def test_idempotency_key_returns_the_first_asset(env: Env, tmp_path: Path) -> None:
    box = await _box(env)
    headers = {"Idempotency-Key": "order-42"}
    first = await env.http.post(
        f"/api/boxes/{box}/generate/", json={"model": "img", "prompt": "a"}, headers=headers
    )
    again = await env.http.post(
        f"/api/boxes/{box}/generate/", json={"model": "img", "prompt": "a"}, headers=headers
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert len((await env.http.get(f"/api/boxes/{box}/assets/")).json()["items"]) == 1


async def _grpcurl(*args: str) -> str:
    """Runs the venv's grpcurl without blocking the event loop the servers run on."""
    process = await asyncio.create_subprocess_exec(
        binary("grpcurl"), "-plaintext", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_grpcurl_lists_describes_and_calls_every_service(env: Env) -> None:
    addresses = {
        "assetgen.v1.GatewayService": env.stack.grpc_address,
        "assetgen.v1.OrchestratorService": f"127.0.0.1:{env.stack.services[2].port}",
        "assetgen.v1.ProviderAdapterService": env.stack.provider_adapter_addr,
        "assetgen.v1.StorageService": env.stack.storage_addr,
    }
    for service, address in addresses.items():
        listed = (await _grpcurl(address, "list")).split()
        assert service in listed and "grpc.health.v1.Health" in listed
        assert "rpc " in await _grpcurl(address, "describe", service)
        health = json.loads(await _grpcurl("-d", "{}", address, "grpc.health.v1.Health/Check"))
        assert health["status"] == "SERVING"
    auth = ("-H", f"authorization: Bearer {env.stack.token}")
    created = json.loads(
        await _grpcurl(
            *auth,
            "-d",
            '{"name": "via grpcurl"}',
            env.stack.grpc_address,
            "assetgen.v1.GatewayService/CreateBox",
        )
    )
    fetched = json.loads(
        await _grpcurl(
            *auth,
            "-d",
            json.dumps({"id": created["id"]}),
            env.stack.grpc_address,
            "assetgen.v1.GatewayService/GetBox",
        )
    )
    assert fetched["name"] == "via grpcurl"


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x_1", path)


@pytest.mark.parametrize("token", [None, "Bearer wrong-token", "Basic abc"])
async def test_every_route_and_rpc_refuses_a_missing_or_wrong_token(env: Env, token: str | None) -> None:
    headers = {"Authorization": token} if token else {}
    paths = [(route.method, _concrete(route.path)) for route in http_routes()]
    paths += [
        ("POST", "/api/boxes/x_1/upload"),
        ("GET", "/api/boxes/x_1/events"),
        ("GET", "/api/assets/x_1/events"),
        ("GET", "/ws/boxes/x_1"),
    ]
    async with httpx.AsyncClient(base_url=env.stack.http_url, timeout=10) as anonymous:
        for method, path in paths:
            for variant in (path, path + "/"):
                response = await anonymous.request(method, variant, headers=headers, json={})
                assert response.status_code == 401, (method, variant, response.text)
                assert response.json()["error"]
        assert (await anonymous.get("/api/boxes/x_1/events/", params={"token": "wrong"})).status_code == 401

    metadata = [("authorization", token)] if token else []
    service = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]
    async with grpc.aio.insecure_channel(env.stack.grpc_address) as channel:
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            if method.client_streaming:
                call = channel.stream_unary(path)(iter(()), metadata=metadata, timeout=10)
            elif method.server_streaming:
                call = channel.unary_stream(path)(b"", metadata=metadata, timeout=10)
            else:
                call = channel.unary_unary(path)(b"", metadata=metadata, timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                if method.server_streaming:
                    async for _ in call:
                        pass
                else:
                    await call
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, method.name
