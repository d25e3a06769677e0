"""ResultStore: inline results streamed to storage in chunks, at most once per task per process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Generator
from typing import Any

import httpx
import pytest

from assetgen.v1 import common_pb2, storage_pb2
from assetgen_provider_adapter.engine import Output
from assetgen_provider_adapter.results import ResultStore
from assetgen_runtime.netguard import NetworkGuard


class _Call:
    def __init__(self, awaitable: Any) -> None:
        self._awaitable = awaitable

    def __await__(self) -> Generator[Any, None, common_pb2.StoredObject]:
        return self._awaitable.__await__()  # type: ignore[no-any-return]

    def cancel(self) -> None:
        pass


class FakeStorage:
    """Collects every upload; ``gate`` holds uploads until the test opens it."""

    def __init__(self) -> None:
        self.uploads: list[tuple[storage_pb2.StorageUploadMetadata, bytes, int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    def Upload(self, messages: AsyncIterator[storage_pb2.StorageUploadRequest], timeout: float) -> _Call:
        async def run() -> common_pb2.StoredObject:
            metadata, chunks = None, []
            async for message in messages:
                if message.HasField("metadata"):
                    metadata = message.metadata
                else:
                    chunks.append(message.chunk)
            await self.gate.wait()
            assert metadata is not None
            self.uploads.append((metadata, b"".join(chunks), len(chunks)))
            return common_pb2.StoredObject(
                key=f"boxes/{metadata.box_id}/{len(self.uploads)}", size_bytes=len(b"".join(chunks))
            )

        return _Call(run())


def _store(storage: FakeStorage) -> ResultStore:
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(404)))
    return ResultStore(storage, client, NetworkGuard())  # type: ignore[arg-type]


async def test_inline_bytes_go_in_bounded_chunks_with_metadata() -> None:
    storage = FakeStorage()
    data = bytes(range(256)) * 4096  # 1 MiB
    stored = await _store(storage).store(
        Output(kind="inline", content_type="image/png", data=data), box_id="box_1", asset_id="ast_1"
    )
    [(metadata, received, chunks)] = storage.uploads
    assert received == data and chunks == 4 and stored.size_bytes == len(data)
    assert (metadata.box_id, metadata.asset_id, metadata.filename) == ("box_1", "ast_1", "ast_1.png")
    assert metadata.require_media is False


async def test_a_repeated_poll_reuses_the_upload_even_after_its_caller_gave_up() -> None:
    storage = FakeStorage()
    store = _store(storage)
    output = Output(kind="inline", content_type="video/mp4", data=b"x" * 10)
    storage.gate.clear()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(store.store_once(("a", "t"), output, box_id="b", asset_id="a"), 0.05)
    waiting = asyncio.ensure_future(store.store_once(("a", "t"), output, box_id="b", asset_id="a"))
    storage.gate.set()
    first = await waiting
    again = await store.store_once(("a", "t"), output, box_id="b", asset_id="a")
    assert len(storage.uploads) == 1 and first.key == again.key
    other = await store.store_once(("a", "t2"), output, box_id="b", asset_id="a")
    assert len(storage.uploads) == 2 and other.key != first.key


async def test_close_cancels_uploads_still_running() -> None:
    storage = FakeStorage()
    store = _store(storage)
    storage.gate.clear()
    pending = asyncio.ensure_future(
        store.store_once(("a", "t"), Output(kind="inline", data=b"x"), box_id="b", asset_id="a")
    )
    await asyncio.sleep(0)
    await store.close()
    with pytest.raises(asyncio.CancelledError):
        await pending
    assert storage.uploads == []
