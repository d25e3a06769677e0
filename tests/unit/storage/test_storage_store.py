"""The streaming store over an in-process bucket: one PUT when a file fits a part, else parallel parts.

The fake bucket records every S3 request the store makes, so each test says exactly which requests a
stream turns into, and what is cleaned up when it fails.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest
from minio.datatypes import Part

from assetgen_runtime.errors import TooLarge, Unavailable
from assetgen_storage.bucket import Bucket
from assetgen_storage.store import StoreRequest, store_stream

PNG_HEAD = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
REQUEST = StoreRequest(box_id="box_1", asset_id="ast_1")


class FakeBucket:
    """Records requests. Parts are held in flight until ``parts_in_flight`` of them are (or the
    ``expected_parts``-th began), so a store that sent fewer at once would stall, and one that sent
    more would be seen doing so."""

    def __init__(
        self,
        *,
        part_bytes: int = 10,
        parts_in_flight: int = 2,
        expected_parts: int = 0,
        failing_part: int = 0,
    ) -> None:
        self.part_bytes = part_bytes
        self.parts_in_flight = parts_in_flight
        self.expected_parts = expected_parts
        self.failing_part = failing_part
        self.requests: list[tuple[Any, ...]] = []
        self.begun = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.held = asyncio.Event()
        self.put_started = asyncio.Event()
        self.put_gate = asyncio.Event()
        self.put_gate.set()

    async def put(self, key: str, data: bytes, *, content_type: str, sha256: str) -> None:
        self.requests.append(("put", data, content_type, sha256))
        self.put_started.set()
        await self.put_gate.wait()

    async def begin_upload(self, key: str, *, content_type: str) -> str:
        self.requests.append(("begin", content_type))
        return "upload-1"

    async def upload_part(self, key: str, upload_id: str, number: int, data: bytes | bytearray) -> Part:
        self.begun += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        held = self.held
        if self.in_flight == self.parts_in_flight or self.begun == self.expected_parts:
            held.set()
            self.held = asyncio.Event()
        try:
            # Bounded, so a store that never sends enough parts at once fails its test instead of hanging it.
            await asyncio.wait_for(held.wait(), timeout=2)
            # Read at the end, as S3 reads the buffer until the request is over: reuse before would show.
            self.requests.append(("part", number, bytes(data)))
            if number == self.failing_part:
                raise Unavailable("S3 at test is unavailable")
            return Part(number, f"etag-{number}")
        finally:
            self.in_flight -= 1

    async def complete_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        self.requests.append(("complete", [(part.part_number, part.etag) for part in parts]))

    async def abort_upload(self, key: str, upload_id: str) -> None:
        self.requests.append(("abort", upload_id))

    async def delete(self, key: str) -> None:
        self.requests.append(("delete",))

    def kinds(self) -> list[str]:
        return [request[0] for request in self.requests]


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def store(bucket: FakeBucket, chunks: AsyncIterator[bytes], request: StoreRequest = REQUEST) -> Any:
    fake: Any = bucket  # stands in for a Bucket: the same methods, no S3 behind them
    stored_bucket: Bucket = fake
    return await asyncio.wait_for(store_stream(stored_bucket, chunks, request), timeout=5)


def parts_of(requests: Iterable[tuple[Any, ...]]) -> list[bytes]:
    return [request[2] for request in sorted(r for r in requests if r[0] == "part")]


async def test_a_file_up_to_one_part_is_one_put_with_type_and_checksum() -> None:
    data = PNG_HEAD + b"x" * 6  # 22 bytes: exactly one part
    bucket = FakeBucket(part_bytes=len(data))
    info = await store(bucket, chunks_of(data, 5))
    digest = hashlib.sha256(data).hexdigest()
    assert bucket.requests == [("put", data, "image/png", digest)]
    assert (info.content_type, info.size_bytes, info.sha256) == ("image/png", len(data), digest)


async def test_one_byte_past_a_part_makes_a_multipart_upload_typed_at_its_start() -> None:
    data = PNG_HEAD + b"x" * 7  # 23 bytes: a part of 22 and one byte
    bucket = FakeBucket(part_bytes=22, parts_in_flight=1)
    info = await store(bucket, chunks_of(data, 4))
    assert bucket.requests == [
        ("begin", "image/png"),
        ("part", 1, data[:22]),
        ("part", 2, data[22:]),
        ("complete", [(1, "etag-1"), (2, "etag-2")]),
    ]
    assert info.sha256 == hashlib.sha256(data).hexdigest()


async def test_parts_travel_in_parallel_up_to_the_limit_and_join_in_order() -> None:
    data = PNG_HEAD + bytes(range(256)) * 3  # 784 bytes: seven parts of 100, then 84
    bucket = FakeBucket(part_bytes=100, parts_in_flight=3, expected_parts=8)
    # Chunks larger than a part and straddling part ends: the cut must still be exact.
    info = await store(bucket, chunks_of(data, 130))
    assert bucket.most_in_flight == 3
    assert parts_of(bucket.requests) == [data[start : start + 100] for start in range(0, len(data), 100)]
    assert bucket.requests[-1] == ("complete", [(n, f"etag-{n}") for n in range(1, 9)])
    assert (info.size_bytes, info.sha256) == (len(data), hashlib.sha256(data).hexdigest())


async def test_a_failed_part_aborts_the_upload_and_is_the_error() -> None:
    bucket = FakeBucket(part_bytes=10, parts_in_flight=2, failing_part=2)
    with pytest.raises(Unavailable, match="unavailable"):
        await store(bucket, chunks_of(PNG_HEAD + b"x" * 100, 7))
    assert "complete" not in bucket.kinds()
    assert bucket.kinds()[-1] == "abort"
    assert bucket.in_flight == 0  # aborted only once every part had ended


async def test_the_size_limit_aborts_a_started_upload() -> None:
    bucket = FakeBucket(part_bytes=10, parts_in_flight=1)
    request = StoreRequest(box_id="box_1", asset_id="ast_1", max_bytes=35, source="download")
    with pytest.raises(TooLarge, match="35 byte limit"):
        await store(bucket, chunks_of(PNG_HEAD + b"x" * 100, 8), request)
    assert bucket.kinds() == ["begin", "part", "part", "part", "abort"]


async def test_a_call_cancelled_while_its_put_runs_deletes_the_object_afterwards() -> None:
    bucket = FakeBucket(part_bytes=100)
    bucket.put_gate.clear()
    storing = asyncio.ensure_future(store(bucket, chunks_of(PNG_HEAD, 4)))
    await asyncio.wait_for(bucket.put_started.wait(), timeout=5)
    storing.cancel()
    bucket.put_gate.set()  # the PUT (a thread S3 cannot be told to stop) succeeds after all
    with pytest.raises(asyncio.CancelledError):
        await storing
    assert bucket.kinds() == ["put", "delete"]
