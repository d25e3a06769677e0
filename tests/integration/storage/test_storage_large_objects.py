"""Large objects through a storage service in its own process: memory stays bounded, checksums match.

The size comes from ASSETGEN_TEST_LARGE_OBJECT_BYTES (default 256 MiB; `make bench` uses 1 GiB). Bytes
are generated on the fly, never held whole, and the peak RSS (VmHWM) of the service process is read
from /proc after both transfers.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from storage_testkit import MIB, Origin, generated_chunks, remove_bucket, s3_client

from assetgen.v1 import storage_pb2, storage_pb2_grpc
from assetgen.v1.common_pb2 import StoredObject
from assetgen_dev.embedded import S3Server, free_port
from assetgen_dev.testing import eventually
from assetgen_runtime.server import GRPC_OPTIONS

LARGE_OBJECT_BYTES = int(os.environ.get("ASSETGEN_TEST_LARGE_OBJECT_BYTES", str(256 * MIB)))
PEAK_RSS_LIMIT_BYTES = 200 * 1000 * 1000


def peak_rss_bytes(pid: int) -> int:
    """The process's high-water resident set size."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("VmHWM missing from /proc status")


@pytest.fixture
def storage_process(s3_server: S3Server, bucket_name: str, tmp_path: Path) -> Iterator[tuple[int, int]]:
    """``python -m assetgen_storage`` with default part size, yielding (pid, gRPC port)."""
    port = free_port()
    env = {
        **os.environ,
        "ASSETGEN_GRPC_PORT": str(port),
        "ASSETGEN_S3_ENDPOINT": s3_server.url,
        "ASSETGEN_S3_ACCESS_KEY": s3_server.access_key,
        "ASSETGEN_S3_SECRET_KEY": s3_server.secret_key,
        "ASSETGEN_S3_BUCKET": bucket_name,
        "ASSETGEN_ALLOWED_FETCH_NETWORKS": "127.0.0.0/8",
        "ASSETGEN_MAX_OBJECT_BYTES": str(LARGE_OBJECT_BYTES + MIB),
        "ASSETGEN_SHUTDOWN_GRACE_SECONDS": "1",
    }
    with open(tmp_path / "storage.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "assetgen_storage"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield process.pid, port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    remove_bucket(s3_client(s3_server), bucket_name)
    assert process.returncode == 0, (tmp_path / "storage.log").read_text()[-3000:]


class HashingChunks:
    """Generated chunks whose SHA-256 is computed as they are handed out."""

    def __init__(self, total: int) -> None:
        self.digest = hashlib.sha256()
        self._chunks = generated_chunks(total, MIB)

    async def messages(self) -> AsyncIterator[storage_pb2.StorageUploadRequest]:
        yield storage_pb2.StorageUploadRequest(
            metadata=storage_pb2.StorageUploadMetadata(
                box_id="box_large", asset_id="ast_large", content_type="video/mp4", require_media=True
            )
        )
        for chunk in self._chunks:
            self.digest.update(chunk)
            yield storage_pb2.StorageUploadRequest(chunk=chunk)


@pytest.mark.slow
async def test_large_upload_and_ingest_keep_memory_bounded(
    storage_process: tuple[int, int], origin: Origin
) -> None:
    pid, port = storage_process
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=GRPC_OPTIONS) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def status() -> int:
            try:
                return (await health.Check(health_pb2.HealthCheckRequest(), timeout=2)).status
            except grpc.aio.AioRpcError:
                return health_pb2.HealthCheckResponse.UNKNOWN

        await eventually(
            status, lambda s: s == health_pb2.HealthCheckResponse.SERVING, timeout=60, what="storage SERVING"
        )
        stub = storage_pb2_grpc.StorageServiceStub(channel)

        source = HashingChunks(LARGE_OBJECT_BYTES)
        uploaded = await stub.Upload(source.messages(), timeout=300)
        assert uploaded.size_bytes == LARGE_OBJECT_BYTES
        assert uploaded.sha256 == source.digest.hexdigest()
        assert uploaded.content_type == "video/mp4"

        url = f"http://127.0.0.1:{origin.port}/generated?size={LARGE_OBJECT_BYTES}"
        ingested = await stub.Ingest(
            storage_pb2.IngestRequest(url=url, box_id="box_large", asset_id="ast_large2"), timeout=300
        )
        assert ingested.size_bytes == LARGE_OBJECT_BYTES
        assert [ingested.sha256] == origin.digests

        for stored in (uploaded, ingested):
            assert stored.url
            # Stored in parts, so S3 does not hold the checksum: Stat leaves it out rather than guess.
            assert await stub.Stat(storage_pb2.StatRequest(key=stored.key), timeout=10) == StoredObject(
                key=stored.key, content_type=stored.content_type, size_bytes=stored.size_bytes
            )

    peak = peak_rss_bytes(pid)
    print(f"storage peak RSS: {peak / MIB:.0f} MiB for {LARGE_OBJECT_BYTES / MIB:.0f} MiB objects")
    assert peak < PEAK_RSS_LIMIT_BYTES, f"storage peaked at {peak / MIB:.0f} MiB"
