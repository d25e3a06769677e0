"""A large upload through the gateway's HTTP API streams: neither gateway nor storage holds the file.

The size comes from ASSETGEN_TEST_LARGE_OBJECT_BYTES (default 256 MiB). The whole stack runs in this
process, so the bound is on this process's resident memory growth while the upload runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from minio import Minio

from assetgen_dev.embedded import S3Server
from assetgen_dev.stack import Stack, WholeStackFactory

pytestmark = pytest.mark.slow

MIB = 1024 * 1024
SIZE = int(os.environ.get("ASSETGEN_TEST_LARGE_OBJECT_BYTES", str(256 * MIB)))
# An MP4 'ftyp' header so the bytes are a video as far as type sniffing goes; the rest is filler.
HEADER = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("VmRSS missing")


class GeneratedVideo:
    """A file-like object producing SIZE bytes on the fly (httpx streams it as a multipart part)."""

    def __init__(self) -> None:
        self.sent = 0
        self.digest = hashlib.sha256()
        self._block = bytes(range(256)) * 4096

    def read(self, size: int = -1) -> bytes:
        if self.sent >= SIZE:
            return b""
        size = MIB if size is None or size < 0 else min(size, MIB)
        if self.sent == 0:
            chunk = HEADER + self._block[: max(size - len(HEADER), 0)]
        else:
            chunk = self._block[:size]
        chunk = chunk[: SIZE - self.sent]
        self.sent += len(chunk)
        self.digest.update(chunk)
        return chunk


@pytest.fixture
async def stack(tmp_path: Path, whole_stack: WholeStackFactory) -> AsyncIterator[Stack]:
    async with whole_stack(tmp_path, max_object_bytes=SIZE + MIB) as system:
        yield system.stack


async def test_large_upload_streams_through_the_gateway(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {stack.token}"}
    peak = baseline = _rss()
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    async with httpx.AsyncClient(base_url=stack.http_url, headers=headers, timeout=300) as http:
        box = (await http.post("/api/boxes/", json={"name": "big"})).json()["id"]
        source = GeneratedVideo()
        response = await http.post(
            f"/api/boxes/{box}/upload/", files={"file": ("big.mp4", source, "application/octet-stream")}
        )
        done.set()
        await sampler
        assert response.status_code == 201, response.text
        asset = response.json()
    assert asset["size_bytes"] == SIZE
    assert asset["content_type"] == "video/mp4"
    assert asset["sha256"] == source.digest.hexdigest()
    growth = peak - baseline
    print(f"resident growth during a {SIZE // MIB} MiB upload: {growth / MIB:.0f} MiB")
    assert growth < 200 * MIB


async def test_an_over_limit_upload_is_refused_and_leaves_nothing(
    tmp_path: Path, s3_server: S3Server, whole_stack: WholeStackFactory
) -> None:
    async with whole_stack(tmp_path, max_object_bytes=MIB) as system:
        small = system.stack
        headers = {"Authorization": f"Bearer {small.token}"}
        async with httpx.AsyncClient(base_url=small.http_url, headers=headers, timeout=60) as http:
            box = (await http.post("/api/boxes/", json={"name": "limits"})).json()["id"]
            blob = HEADER + b"\x00" * (3 * MIB)
            response = await http.post(
                f"/api/boxes/{box}/upload/", files={"file": ("big.mp4", blob, "video/mp4")}
            )
            assert response.status_code == 413, response.text
            assert "limit" in response.json()["error"]
            assert (await http.get(f"/api/boxes/{box}/assets/")).json()["items"] == []
        client = Minio(
            s3_server.url.removeprefix("http://"),
            access_key=s3_server.access_key,
            secret_key=s3_server.secret_key,
            secure=False,
            region="us-east-1",
        )
        leftovers = await asyncio.to_thread(lambda: list(client.list_objects(small.bucket, recursive=True)))
        assert leftovers == []
