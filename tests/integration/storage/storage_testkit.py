"""Helpers and fixtures for the storage service's integration tests: a real S3 bucket per test, the
service started in process exactly as ``main`` starts it, and a local HTTP origin to ingest from.

A uniquely named module (not conftest) so test files import it unambiguously; conftest.py re-exports
its fixtures.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass

import grpc
import pytest
from aiohttp import web
from minio import Minio

from assetgen.v1 import storage_pb2_grpc
from assetgen_dev.embedded import S3Server
from assetgen_runtime.netguard import NetworkGuard
from assetgen_runtime.server import GRPC_OPTIONS, RunningService
from assetgen_runtime.settings import load
from assetgen_storage import minio_internals
from assetgen_storage.main import run_server
from assetgen_storage.settings import StorageSettings

MIB = 1024 * 1024
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(3000)
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def generated_chunks(total: int, chunk_size: int = MIB, head: bytes = MP4_HEAD) -> Iterator[bytes]:
    """``total`` pseudo-random bytes starting with ``head``, made chunk by chunk, never held whole."""
    block = os.urandom(chunk_size)
    sent = 0
    index = 0
    while sent < total:
        size = min(chunk_size, total - sent)
        chunk = (head if index == 0 else index.to_bytes(8, "big")) + block
        yield chunk[:size]
        sent += size
        index += 1


def digest_of(chunks: Iterator[bytes]) -> str:
    """SHA-256 of what ``chunks`` yields."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def fake_resolver(table: dict[str, Sequence[str]]):
    """Answers names in ``table`` itself, everything else through the system resolver."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        if host in table:
            return table[host]
        loop = asyncio.get_running_loop()
        return [str(info[4][0]) for info in await loop.getaddrinfo(host, port)]

    return resolve


PUBLIC_LOOKING_HOST = "cdn.example.com"
"""A public-looking name the tests' resolver maps to 127.0.0.1, where the local origin listens."""


def storage_settings_for(s3_server: S3Server, bucket: str, **overrides: object) -> StorageSettings:
    """Settings for a storage service on ``bucket`` of the test S3 server (5 MiB parts: multipart early)."""
    values: dict[str, object] = {
        "s3_endpoint": s3_server.url,
        "s3_access_key": s3_server.access_key,
        "s3_secret_key": s3_server.secret_key,
        "s3_bucket": bucket,
        "part_size_bytes": 5 * MIB,
        "allowed_fetch_networks": ("127.0.0.0/8",),
        "fetch_timeout_seconds": 10.0,
        "s3_startup_timeout_seconds": 30.0,
        "shutdown_grace_seconds": 1.0,
    }
    values.update(overrides)
    return load(StorageSettings, environ={}, **values)


@dataclass
class StorageUnderTest:
    """A running storage service, a stub to call it and an S3 client to check what it did."""

    service: RunningService
    stub: storage_pb2_grpc.StorageServiceStub
    channel: grpc.aio.Channel
    settings: StorageSettings
    s3: Minio

    def object_keys(self) -> list[str]:
        """Every object in the bucket."""
        return [o.object_name for o in self.s3.list_objects(self.settings.s3_bucket, recursive=True)]

    def pending_uploads(self) -> list[str]:
        """Multipart uploads begun and neither completed nor aborted."""
        result = minio_internals.list_multipart_uploads(self.s3, self.settings.s3_bucket)
        return [upload.object_name for upload in result.uploads]


def s3_client(s3_server: S3Server) -> Minio:
    """A plain MinIO client on the test S3 server, for checking what the service stored."""
    return Minio(
        s3_server.url.removeprefix("http://"),
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
        region="us-east-1",
    )


def remove_bucket(s3: Minio, bucket: str) -> None:
    """Deletes ``bucket`` and its objects: SeaweedFS gives each bucket volumes of its own, and the
    test server runs out of volume slots if every test's bucket stays."""
    if not s3.bucket_exists(bucket):
        return
    for listed in s3.list_objects(bucket, recursive=True):
        s3.remove_object(bucket, listed.object_name)
    s3.remove_bucket(bucket)


StartStorage = Callable[..., "asyncio.Future[StorageUnderTest]"]


@pytest.fixture
async def start_storage(s3_server: S3Server, bucket_name: str) -> AsyncIterator[StartStorage]:
    """Starts storage services on this test's bucket (settings overridable), stopping them afterwards."""
    started: list[StorageUnderTest] = []

    async def start(*, allowed: Sequence[str] = ("127.0.0.0/8",), **overrides: object) -> StorageUnderTest:
        settings = storage_settings_for(s3_server, bucket_name, **overrides)
        guard = NetworkGuard(allowed, resolver=fake_resolver({PUBLIC_LOOKING_HOST: ["127.0.0.1"]}))
        service = await run_server(settings, port=0, network_guard=guard)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}", options=GRPC_OPTIONS)
        under_test = StorageUnderTest(
            service=service,
            stub=storage_pb2_grpc.StorageServiceStub(channel),
            channel=channel,
            settings=settings,
            s3=s3_client(s3_server),
        )
        started.append(under_test)
        return under_test

    yield start  # type: ignore[misc]
    for under_test in started:
        await under_test.channel.close()
        await under_test.service.stop()
    await asyncio.to_thread(remove_bucket, s3_client(s3_server), bucket_name)


@pytest.fixture
async def storage(start_storage: StartStorage) -> StorageUnderTest:
    """A storage service that may fetch from loopback (where the test origin listens)."""
    return await start_storage()


@dataclass
class Origin:
    """A local HTTP server the service ingests from."""

    port: int
    hosts: list[str]
    """Host header of every request to /png-labelled-mp4."""
    digests: list[str]
    """SHA-256 of every body /generated sent completely."""

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """URL of ``path`` on this origin, reached under ``host``."""
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    """An aiohttp server on 127.0.0.1:0 whose routes tests add before the first request."""
    app = web.Application()
    routes = web.RouteTableDef()
    hosts: list[str] = []
    digests: list[str] = []

    @routes.get("/png-labelled-mp4")
    async def mislabelled(request: web.Request) -> web.Response:
        hosts.append(request.headers.get("Host", ""))
        return web.Response(body=PNG_BYTES, content_type="video/mp4")

    @routes.get("/metadata-redirect")
    async def metadata_redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/iam/security-credentials/")

    @routes.get("/redirect-to-png")
    async def redirect_to_png(request: web.Request) -> web.Response:
        raise web.HTTPFound("/png-labelled-mp4")

    @routes.get("/missing")
    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    @routes.get("/generated")
    async def generated(request: web.Request) -> web.StreamResponse:
        total = int(request.query["size"])
        announce = request.query.get("announce", "1") == "1"
        cut_at = int(request.query.get("cut_at", "0"))
        response = web.StreamResponse(headers={"Content-Type": "video/mp4"})
        if announce:
            response.content_length = total
        await response.prepare(request)
        sent = 0
        digest = hashlib.sha256()
        for chunk in generated_chunks(total, 256 * 1024):
            if cut_at and sent + len(chunk) > cut_at:
                # Drop the connection midway, as a provider's CDN failing mid-download would.
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(chunk)
            digest.update(chunk)
            sent += len(chunk)
        await response.write_eof()
        digests.append(digest.hexdigest())
        return response

    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Origin(port=port, hosts=hosts, digests=digests)
    await runner.cleanup()
