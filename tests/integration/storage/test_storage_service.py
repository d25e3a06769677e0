"""The storage service against real S3 servers: streaming, types, limits, URLs.

Every test runs twice: on SeaweedFS (the embedded default, signatures checked) and on moto's S3
server, an independent emulation of AWS S3, so the service relies only on what S3 implementations
share.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections.abc import AsyncIterator, Iterable, Iterator

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from minio.datatypes import Object
from storage_testkit import (
    MIB,
    PNG_BYTES,
    PUBLIC_LOOKING_HOST,
    Origin,
    StartStorage,
    StorageUnderTest,
    digest_of,
    generated_chunks,
    s3_client,
)

from assetgen.v1 import common_pb2, storage_pb2
from assetgen_dev.embedded import S3Server, binary, free_port, wait_for_port
from assetgen_dev.testing import eventually
from assetgen_runtime.errors import reason_of
from assetgen_storage.bucket import CACHE_CONTROL


@pytest.fixture(scope="module", params=["seaweedfs", "moto"])
def s3_server(
    request: pytest.FixtureRequest, s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[S3Server]:
    """The session's SeaweedFS, or a moto S3 server for this module."""
    if request.param == "seaweedfs":
        yield s3_server
        return
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [binary("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    moto = S3Server(
        process=process,
        url=f"http://127.0.0.1:{port}",
        log_path=log_path,
        access_key="moto-access",
        secret_key="moto-secret",
        verifies_signatures=False,
    )
    try:
        wait_for_port(port, process=process)
        yield moto
    finally:
        moto.stop()


def upload_messages(
    chunks: Iterable[bytes], *, content_type: str = "", require_media: bool = False, filename: str = "f"
) -> AsyncIterator[storage_pb2.StorageUploadRequest]:
    async def messages() -> AsyncIterator[storage_pb2.StorageUploadRequest]:
        yield storage_pb2.StorageUploadRequest(
            metadata=storage_pb2.StorageUploadMetadata(
                box_id="box_1",
                asset_id="ast_1",
                filename=filename,
                content_type=content_type,
                require_media=require_media,
            )
        )
        for chunk in chunks:
            yield storage_pb2.StorageUploadRequest(chunk=chunk)

    return messages()


async def s3_state(storage: StorageUnderTest) -> tuple[list[str], list[str]]:
    return await asyncio.to_thread(lambda: (storage.object_keys(), storage.pending_uploads()))


async def assert_nothing_left(storage: StorageUnderTest) -> None:
    """No object and no unfinished multipart upload in the bucket (abort is immediate, listing may lag)."""
    await eventually(
        lambda: s3_state(storage), lambda state: state == ([], []), timeout=10, what="empty bucket"
    )


async def assert_nothing_left_but(storage: StorageUnderTest, keys: list[str]) -> None:
    """Only ``keys`` in the bucket, and no unfinished multipart upload."""
    await eventually(
        lambda: s3_state(storage), lambda state: state == (keys, []), timeout=10, what="only these objects"
    )


def as_stat_describes(stored: common_pb2.StoredObject, *, sha256: bool = True) -> common_pb2.StoredObject:
    """``stored`` without its read URL (Stat makes none), and without its checksum if stored in parts."""
    described = common_pb2.StoredObject()
    described.CopyFrom(stored)
    described.ClearField("url")
    if not sha256:
        described.ClearField("sha256")
    return described


async def s3_info(storage: StorageUnderTest, key: str) -> Object:
    return await asyncio.to_thread(storage.s3.stat_object, storage.settings.s3_bucket, key)


async def s3_digest(storage: StorageUnderTest, key: str) -> str:
    response = await asyncio.to_thread(storage.s3.get_object, storage.settings.s3_bucket, key)
    try:
        return hashlib.sha256(response.read()).hexdigest()
    finally:
        response.close()
        response.release_conn()


async def test_health_is_serving_and_bucket_created_at_start(storage: StorageUnderTest) -> None:
    assert await asyncio.to_thread(storage.s3.bucket_exists, storage.settings.s3_bucket)
    health = health_pb2_grpc.HealthStub(storage.channel)
    for service in ("", "assetgen.v1.StorageService"):
        answer = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_mislabelled_upload_gets_its_true_type(storage: StorageUnderTest) -> None:
    stored = await storage.stub.Upload(
        upload_messages(
            [PNG_BYTES[:10], PNG_BYTES[10:]],
            content_type="image/jpeg",
            require_media=True,
            filename="photo.jpg",
        ),
        timeout=30,
    )
    assert stored.content_type == "image/png"
    assert stored.key.startswith("boxes/box_1/ast_1/") and stored.key.endswith(".png")
    assert stored.size_bytes == len(PNG_BYTES)
    assert stored.sha256 == hashlib.sha256(PNG_BYTES).hexdigest()
    described = await storage.stub.Stat(storage_pb2.StatRequest(key=stored.key), timeout=10)
    assert described == as_stat_describes(stored)
    info = await s3_info(storage, stored.key)
    assert info.content_type == "image/png"
    assert info.metadata["Cache-Control"] == CACHE_CONTROL
    assert info.metadata["x-amz-meta-sha256"] == stored.sha256


async def test_upload_of_non_media_is_refused_when_media_required(storage: StorageUnderTest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await storage.stub.Upload(
            upload_messages(
                [b"<html><script>alert(1)</script></html>"], content_type="image/png", require_media=True
            ),
            timeout=30,
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason_of(info.value) == "UNSUPPORTED_MEDIA_TYPE"
    assert "only images and videos" in (info.value.details() or "")
    await assert_nothing_left(storage)


async def test_unknown_bytes_are_kept_as_octet_stream(storage: StorageUnderTest) -> None:
    stored = await storage.stub.Upload(
        upload_messages([b"%PDF-1.7 not media"], content_type="text/html"), timeout=30
    )
    assert (stored.content_type, stored.key.rsplit(".", 1)[1]) == ("application/octet-stream", "bin")


async def test_multipart_upload_round_trips_byte_for_byte(storage: StorageUnderTest) -> None:
    size = 12 * MIB + 12345  # three parts of 5 MiB
    chunks = list(generated_chunks(size, 1 * MIB))
    stored = await storage.stub.Upload(upload_messages(chunks, content_type="video/mp4"), timeout=60)
    expected = hashlib.sha256(b"".join(chunks)).hexdigest()
    assert (stored.size_bytes, stored.sha256, stored.content_type) == (size, expected, "video/mp4")
    assert await s3_digest(storage, stored.key) == expected


@pytest.mark.parametrize(("extra_bytes", "requests"), [(0, "one PUT"), (1, "two parts")])
async def test_a_file_up_to_one_part_is_stored_in_one_put_with_its_checksum(
    storage: StorageUnderTest, extra_bytes: int, requests: str
) -> None:
    data = b"".join(generated_chunks(storage.settings.part_size_bytes + extra_bytes))
    stored = await storage.stub.Upload(upload_messages([data[: 3 * MIB], data[3 * MIB :]]), timeout=60)
    assert (stored.size_bytes, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    info = await s3_info(storage, stored.key)
    # S3 gives a single PUT's object the MD5 of its bytes as ETag, a multipart one "<hash>-<parts>".
    if requests == "one PUT":
        assert info.etag == hashlib.md5(data).hexdigest()
    else:
        assert info.etag.endswith("-2")
    assert (info.content_type, info.metadata["Cache-Control"]) == ("video/mp4", CACHE_CONTROL)
    # The checksum is in S3's metadata only when the object was stored in one PUT; Stat says so.
    described = await storage.stub.Stat(storage_pb2.StatRequest(key=stored.key), timeout=10)
    assert described == as_stat_describes(stored, sha256=requests == "one PUT")


async def test_parallel_parts_join_byte_for_byte(start_storage: StartStorage) -> None:
    storage = await start_storage(s3_parts_in_flight=3)
    size = 4 * 5 * MIB + 4321  # five parts, the last one short
    chunks = list(generated_chunks(size, 3 * MIB))  # messages straddling part ends
    stored = await storage.stub.Upload(upload_messages(chunks), timeout=60)
    expected = hashlib.sha256(b"".join(chunks)).hexdigest()
    assert (stored.size_bytes, stored.sha256, stored.content_type) == (size, expected, "video/mp4")
    assert await s3_digest(storage, stored.key) == expected
    info = await s3_info(storage, stored.key)
    assert info.etag.endswith("-5")
    assert (info.content_type, info.metadata["Cache-Control"]) == ("video/mp4", CACHE_CONTROL)
    await assert_nothing_left_but(storage, [stored.key])


async def test_upload_must_start_with_metadata(storage: StorageUnderTest) -> None:
    async def chunk_first() -> AsyncIterator[storage_pb2.StorageUploadRequest]:
        yield storage_pb2.StorageUploadRequest(chunk=PNG_BYTES)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await storage.stub.Upload(chunk_first(), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata" in (info.value.details() or "")


async def test_over_limit_upload_is_refused_and_leaves_nothing(start_storage: StartStorage) -> None:
    storage = await start_storage(max_object_bytes=7 * MIB)
    # The limit is crossed by the last message: a client still writing when the server ends the call
    # sees INTERNAL instead of the server's status (grpcio's asyncio client, grpc/grpc#36066).
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await storage.stub.Upload(upload_messages(generated_chunks(12 * MIB, 6 * MIB)), timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(info.value) == "TOO_LARGE"
    assert "7340032 byte limit" in (info.value.details() or "")
    await assert_nothing_left(storage)


async def test_cancelled_upload_aborts_and_leaves_nothing(storage: StorageUnderTest) -> None:
    half_sent = asyncio.Event()

    async def endless() -> AsyncIterator[storage_pb2.StorageUploadRequest]:
        async for message in upload_messages(generated_chunks(11 * MIB)):
            yield message
        half_sent.set()
        await asyncio.Event().wait()  # the client never finishes its stream; it cancels instead

    call = storage.stub.Upload(endless(), timeout=60)
    await asyncio.wait_for(half_sent.wait(), timeout=30)
    # Wait until the service has really started the multipart upload, so the abort is what is tested.
    await eventually(lambda: s3_state(storage), lambda state: state[1] != [], timeout=20, what="upload begun")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await assert_nothing_left(storage)


async def test_ingest_of_mislabelled_file_gets_its_true_type(
    storage: StorageUnderTest, origin: Origin
) -> None:
    stored = await storage.stub.Ingest(
        storage_pb2.IngestRequest(url=origin.url("/redirect-to-png"), box_id="box_1", asset_id="ast_2"),
        timeout=30,
    )
    assert stored.content_type == "image/png" and stored.key.endswith(".png")
    assert stored.sha256 == hashlib.sha256(PNG_BYTES).hexdigest()


async def test_ingest_multipart_matches_the_source(storage: StorageUnderTest, origin: Origin) -> None:
    size = 11 * MIB + 7
    stored = await storage.stub.Ingest(
        storage_pb2.IngestRequest(
            url=origin.url(f"/generated?size={size}&announce=0"), box_id="b", asset_id="a"
        ),
        timeout=60,
    )
    assert stored.size_bytes == size
    assert [stored.sha256] == origin.digests
    assert await s3_digest(storage, stored.key) == stored.sha256


async def test_ingest_cut_off_midway_leaves_no_object(storage: StorageUnderTest, origin: Origin) -> None:
    url = origin.url(f"/generated?size={20 * MIB}&cut_at={12 * MIB}")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await storage.stub.Ingest(storage_pb2.IngestRequest(url=url, box_id="b", asset_id="a"), timeout=60)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "broke off" in (info.value.details() or "")
    await assert_nothing_left(storage)


@pytest.mark.parametrize("announce", ["1", "0"])
async def test_over_limit_ingest_is_refused(
    start_storage: StartStorage, origin: Origin, announce: str
) -> None:
    storage = await start_storage(max_object_bytes=6 * MIB)
    url = origin.url(f"/generated?size={13 * MIB}&announce={announce}")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await storage.stub.Ingest(storage_pb2.IngestRequest(url=url, box_id="b", asset_id="a"), timeout=60)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert reason_of(info.value) == "TOO_LARGE"
    assert "6291456 byte limit" in (info.value.details() or "")
    await assert_nothing_left(storage)


async def test_ingest_of_missing_url_is_a_clear_error(storage: StorageUnderTest, origin: Origin) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await storage.stub.Ingest(
            storage_pb2.IngestRequest(url=origin.url("/missing?token=secret"), box_id="b", asset_id="a"),
            timeout=30,
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "HTTP 404" in (info.value.details() or "")
    assert "secret" not in (info.value.details() or "")


@pytest.mark.parametrize(
    "path_or_url",
    [
        "/metadata-redirect",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/x",
        "http://[::ffff:169.254.169.254]/x",
        "http://[fd00::1]/x",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
    ],
)
async def test_ssrf_targets_are_refused(storage: StorageUnderTest, origin: Origin, path_or_url: str) -> None:
    url = origin.url(path_or_url) if path_or_url.startswith("/") else path_or_url
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await storage.stub.Ingest(storage_pb2.IngestRequest(url=url, box_id="b", asset_id="a"), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "refusing to fetch" in (info.value.details() or "")
    await assert_nothing_left(storage)


async def test_loopback_refused_unless_allowed(start_storage: StartStorage, origin: Origin) -> None:
    closed = await start_storage(allowed=())
    for host in (PUBLIC_LOOKING_HOST, "localhost", "127.0.0.1"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await closed.stub.Ingest(
                storage_pb2.IngestRequest(
                    url=origin.url("/png-labelled-mp4", host), box_id="b", asset_id="a"
                ),
                timeout=30,
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "127.0.0.1 is loopback" in (info.value.details() or "")
    assert origin.hosts == []


async def test_allowed_network_is_reached_at_the_checked_address(
    storage: StorageUnderTest, origin: Origin
) -> None:
    stored = await storage.stub.Ingest(
        storage_pb2.IngestRequest(
            url=origin.url("/png-labelled-mp4", PUBLIC_LOOKING_HOST), box_id="b", asset_id="a"
        ),
        timeout=30,
    )
    assert stored.content_type == "image/png"
    # The connection went to the checked 127.0.0.1 while still naming the original host.
    assert origin.hosts == [f"{PUBLIC_LOOKING_HOST}:{origin.port}"]


async def test_presigned_url_downloads_the_object(start_storage: StartStorage, s3_server: S3Server) -> None:
    public = s3_server.url.replace("127.0.0.1", "localhost")
    storage = await start_storage(s3_public_endpoint=public, presign_expiry_seconds=600)
    stored = await storage.stub.Upload(upload_messages([PNG_BYTES]), timeout=30)
    first = await storage.stub.GetObjectUrls(storage_pb2.GetObjectUrlsRequest(keys=[stored.key]), timeout=10)
    url = first.urls[stored.key]
    assert url.startswith(f"{public}/{storage.settings.s3_bucket}/{stored.key}?")
    assert "X-Amz-Expires=600" in url
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        response = await client.get(url)
        assert response.status_code == 200
        assert response.content == PNG_BYTES
        assert response.headers["content-type"] == "image/png"
        assert response.headers["cache-control"] == CACHE_CONTROL
        if s3_server.verifies_signatures:
            tampered = await client.get(url.replace("X-Amz-Expires=600", "X-Amz-Expires=6000"))
            assert tampered.status_code == 403


async def test_stored_objects_come_with_a_url_that_reads_them(
    start_storage: StartStorage, s3_server: S3Server, origin: Origin
) -> None:
    public = s3_server.url.replace("127.0.0.1", "localhost")
    storage = await start_storage(s3_public_endpoint=public, presign_expiry_seconds=600)
    uploaded = await storage.stub.Upload(upload_messages([PNG_BYTES]), timeout=30)
    ingested = await storage.stub.Ingest(
        storage_pb2.IngestRequest(url=origin.url("/png-labelled-mp4"), box_id="b", asset_id="a"), timeout=30
    )
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        for stored in (uploaded, ingested):
            assert stored.url.startswith(f"{public}/{storage.settings.s3_bucket}/{stored.key}?")
            assert "X-Amz-Expires=600" in stored.url
            response = await client.get(stored.url)
            assert response.status_code == 200
            assert response.content == PNG_BYTES
            assert response.headers["content-type"] == "image/png"


async def test_public_base_url_mode(start_storage: StartStorage) -> None:
    storage = await start_storage(s3_public_base_url="https://cdn.example.com/assets/")
    keys = ["boxes/b/a/obj_1.png", "boxes/b/a/obj_2.mp4"]
    response = await storage.stub.GetObjectUrls(storage_pb2.GetObjectUrlsRequest(keys=keys), timeout=10)
    assert dict(response.urls) == {key: f"https://cdn.example.com/assets/{key}" for key in keys}
    stored = await storage.stub.Upload(upload_messages([PNG_BYTES]), timeout=30)
    assert stored.url == f"https://cdn.example.com/assets/{stored.key}"


async def test_delete_then_stat_is_not_found(storage: StorageUnderTest) -> None:
    stored = await storage.stub.Upload(upload_messages([PNG_BYTES]), timeout=30)
    await storage.stub.Delete(storage_pb2.DeleteRequest(key=stored.key), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await storage.stub.Stat(storage_pb2.StatRequest(key=stored.key), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    await storage.stub.Delete(storage_pb2.DeleteRequest(key=stored.key), timeout=10)  # missing: succeeds
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await storage.stub.Delete(storage_pb2.DeleteRequest(key="../etc/passwd"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_prune_deletes_an_assets_other_copies_and_nothing_else(storage: StorageUnderTest) -> None:
    """Copies a crash left unrecorded go; the asset's file and other assets' files stay."""
    kept, *stray = [await storage.stub.Upload(upload_messages([PNG_BYTES]), timeout=30) for _ in range(3)]

    async def other_asset() -> AsyncIterator[storage_pb2.StorageUploadRequest]:
        yield storage_pb2.StorageUploadRequest(
            metadata=storage_pb2.StorageUploadMetadata(box_id="box_1", asset_id="ast_10")
        )
        yield storage_pb2.StorageUploadRequest(chunk=PNG_BYTES)

    neighbour = await storage.stub.Upload(other_asset(), timeout=30)
    pruned = await storage.stub.Prune(
        storage_pb2.PruneRequest(box_id="box_1", asset_id="ast_1", keep_key=kept.key), timeout=10
    )
    assert sorted(pruned.deleted_keys) == sorted(copy.key for copy in stray)
    await assert_nothing_left_but(storage, sorted([kept.key, neighbour.key]))
    again = await storage.stub.Prune(
        storage_pb2.PruneRequest(box_id="box_1", asset_id="ast_1", keep_key=kept.key), timeout=10
    )
    assert list(again.deleted_keys) == []
    with pytest.raises(grpc.aio.AioRpcError) as info:  # another asset's file is never "kept" here
        await storage.stub.Prune(
            storage_pb2.PruneRequest(box_id="box_1", asset_id="ast_1", keep_key=neighbour.key), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_s3_client_helper_reaches_the_server(s3_server: S3Server) -> None:
    assert isinstance(s3_client(s3_server).list_buckets(), list)


def test_generated_chunks_are_reproducible_in_size() -> None:
    assert sum(len(chunk) for chunk in generated_chunks(3 * MIB + 5)) == 3 * MIB + 5
    assert len(digest_of(generated_chunks(10))) == 64
