"""The Kie.ai-shaped demo provider: wire shapes, auth, states and real media files."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import AsyncIterator

import httpx
import pytest

from assetgen_dev.demo_provider import make_png, start_demo_provider


def _png_chunks(data: bytes) -> dict[bytes, bytes]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    chunks, offset = {}, 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = body
        offset += 12 + length
    return chunks


def test_png_is_valid_and_depends_on_the_prompt() -> None:
    chunks = _png_chunks(make_png("a fox", size=32))
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour) == (32, 32, 8, 2)
    assert len(zlib.decompress(chunks[b"IDAT"])) == 32 * (1 + 32 * 3)
    assert b"IEND" in chunks
    assert make_png("a fox") != make_png("a cat")
    assert make_png("a fox") == make_png("a fox")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    runner, base_url = await start_demo_provider("127.0.0.1", 0, "k", 0.0)
    async with httpx.AsyncClient(base_url=base_url, timeout=5, headers={"Authorization": "Bearer k"}) as http:
        yield http
    await runner.cleanup()


async def test_wrong_key_gets_kies_401_envelope(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/jobs/createTask", json={"model": "m"}, headers={"Authorization": "Bearer x"}
    )
    assert response.json() == {"code": 401, "msg": "You do not have access permissions"}
    response = await client.get(
        "/api/v1/jobs/recordInfo", params={"taskId": "t"}, headers={"Authorization": ""}
    )
    assert response.json()["code"] == 401


async def test_image_task_succeeds_with_a_result_json_string(client: httpx.AsyncClient) -> None:
    created = (
        await client.post("/api/v1/jobs/createTask", json={"model": "img", "input": {"prompt": "p"}})
    ).json()
    assert created["code"] == 200 and created["msg"] == "success"
    record = (
        await client.get("/api/v1/jobs/recordInfo", params={"taskId": created["data"]["taskId"]})
    ).json()
    assert record["data"]["state"] == "success" and record["data"]["failMsg"] == ""
    urls = json.loads(record["data"]["resultJson"])["resultUrls"]
    image = await client.get(urls[0])
    assert image.headers["content-type"] == "image/png" and image.content.startswith(b"\x89PNG")
    assert (await client.get("/_demo/stats")).json()["submits"] == 1


async def test_video_models_get_an_mp4(client: httpx.AsyncClient) -> None:
    created = (
        await client.post("/api/v1/jobs/createTask", json={"model": "kling/text-to-video", "input": {}})
    ).json()
    record = (
        await client.get("/api/v1/jobs/recordInfo", params={"taskId": created["data"]["taskId"]})
    ).json()
    video = await client.get(json.loads(record["data"]["resultJson"])["resultUrls"][0])
    assert video.headers["content-type"] == "video/mp4" and video.content[4:8] == b"ftyp"


async def test_fail_marker_ends_in_fail(client: httpx.AsyncClient) -> None:
    created = (
        await client.post("/api/v1/jobs/createTask", json={"model": "m", "input": {"prompt": "x [fail]"}})
    ).json()
    data = (await client.get("/api/v1/jobs/recordInfo", params={"taskId": created["data"]["taskId"]})).json()[
        "data"
    ]
    assert data["state"] == "fail" and "[fail]" in data["failMsg"]


async def test_tasks_wait_before_generating() -> None:
    runner, base_url = await start_demo_provider("127.0.0.1", 0, "k", 3600.0)
    try:
        async with httpx.AsyncClient(
            base_url=base_url, timeout=5, headers={"Authorization": "Bearer k"}
        ) as http:
            created = (await http.post("/api/v1/jobs/createTask", json={"model": "m", "input": {}})).json()
            data = (
                await http.get("/api/v1/jobs/recordInfo", params={"taskId": created["data"]["taskId"]})
            ).json()["data"]
            assert (data["state"], data["failMsg"], data["resultJson"]) == ("waiting", None, "")
            assert (await http.get(f"/files/{created['data']['taskId']}.png")).status_code == 404
    finally:
        await runner.cleanup()
