"""Results the provider-adapter stores itself: inline bytes and downloads that need the provider's auth.

Plain result URLs go to storage's Ingest (the orchestrator calls it). Everything else is streamed here
into storage's client-streaming ``Upload``: bytes that arrived inline (base64, a ``data:`` URI, the raw
body of a poll, already capped by the engine) in fixed-size chunks, and downloads (OpenAI's
``/content``, Veo's file URI) straight from the provider's response through the SSRF guard, chunk by
chunk, so memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc
import httpx

from assetgen.v1 import common_pb2, storage_pb2, storage_pb2_grpc
from assetgen_provider_adapter.engine_types import Output
from assetgen_runtime.errors import Unavailable
from assetgen_runtime.netguard import FetchFailed, NetworkGuard, guarded_stream

__all__ = ["ResultStore", "StoreFailed"]

logger = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "video/mp4": "mp4"}


class StoreFailed(Unavailable):
    """A result could not be copied into storage (download or upload trouble); worth retrying."""


def _filename(asset_id: str, content_type: str) -> str:
    return f"{asset_id or 'result'}.{_EXTENSIONS.get(content_type, 'bin')}"


class ResultStore:
    """Copies outputs that need the adapter's help into the storage service."""

    def __init__(
        self,
        storage: storage_pb2_grpc.StorageServiceStub,
        client: httpx.AsyncClient,
        guard: NetworkGuard,
        *,
        download_timeout: float = 60.0,
        upload_timeout: float = 600.0,
        remember_seconds: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._client = client
        self._guard = guard
        self._download_timeout = download_timeout
        self._upload_timeout = upload_timeout
        self._remember = remember_seconds
        self._clock = clock
        self._inflight: dict[tuple[str, str], asyncio.Task[common_pb2.StoredObject]] = {}
        self._done: dict[tuple[str, str], tuple[float, common_pb2.StoredObject]] = {}

    async def store_once(
        self, key: tuple[str, str], output: Output, *, box_id: str, asset_id: str
    ) -> common_pb2.StoredObject:
        """Stores a task's result at most once per process, keyed by (asset id, task id).

        A large download can outlast the caller's deadline; the upload then carries on (shielded),
        and the caller's next poll waits for it or gets the object it produced instead of starting
        over. Remembered for ``remember_seconds``.
        """
        now = self._clock()
        for stale in [k for k, (expires, _) in self._done.items() if expires <= now]:
            del self._done[stale]
        if key in self._done:
            return self._done[key][1]
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self.store(output, box_id=box_id, asset_id=asset_id))
            self._inflight[key] = task
            task.add_done_callback(lambda finished: self._settle(key, finished))
        return await asyncio.shield(task)

    def _settle(self, key: tuple[str, str], task: asyncio.Task[common_pb2.StoredObject]) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled() and task.exception() is None:
            self._done[key] = (self._clock() + self._remember, task.result())

    async def close(self) -> None:
        """Cancels uploads still running (at shutdown); storage aborts their multipart uploads."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    async def store(self, output: Output, *, box_id: str, asset_id: str) -> common_pb2.StoredObject:
        """Streams ``output`` into ``box_id``; raises :class:`StoreFailed` when that does not work."""
        if output.kind == "inline":
            return await self._upload(self._inline(output.data), box_id, asset_id, output.content_type)
        try:
            async with guarded_stream(
                self._client,
                output.url,
                guard=self._guard,
                headers=output.headers,
                timeout=self._download_timeout,
            ) as response:
                content_type = output.content_type
                if content_type in ("", "from_header"):
                    content_type = response.headers.get("content-type", "").split(";")[0].strip()
                return await self._upload(response.aiter_bytes(_CHUNK), box_id, asset_id, content_type)
        except FetchFailed as exc:
            raise StoreFailed(f"downloading the result failed: {exc}") from None

    @staticmethod
    async def _inline(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), _CHUNK):
            yield data[start : start + _CHUNK]

    async def _upload(
        self, chunks: AsyncIterator[bytes], box_id: str, asset_id: str, content_type: str
    ) -> common_pb2.StoredObject:
        """Client-streams metadata then ``chunks``; an error while producing them cancels the call.

        grpc.aio would swallow an exception raised inside the request iterator and report CANCELLED,
        so the iterator's own error is captured and re-raised (storage aborts the multipart upload).
        """
        failure: list[BaseException] = []

        async def messages() -> AsyncIterator[storage_pb2.StorageUploadRequest]:
            try:
                yield storage_pb2.StorageUploadRequest(
                    metadata=storage_pb2.StorageUploadMetadata(
                        box_id=box_id,
                        asset_id=asset_id,
                        filename=_filename(asset_id, content_type),
                        content_type=content_type,
                    )
                )
                async for chunk in chunks:
                    if chunk:
                        yield storage_pb2.StorageUploadRequest(chunk=chunk)
            except BaseException as exc:
                failure.append(exc)
                raise

        call = self._storage.Upload(messages(), timeout=self._upload_timeout)
        try:
            stored: common_pb2.StoredObject = await call
        except grpc.aio.AioRpcError as exc:
            if failure:
                raise StoreFailed(f"reading the result failed: {failure[0]}") from None
            raise StoreFailed(f"storing the result failed: {exc.details() or exc.code().name}") from None
        except BaseException:
            call.cancel()
            raise
        logger.info(
            "result stored by the adapter",
            extra={"asset_id": asset_id, "key": stored.key, "size_bytes": stored.size_bytes},
        )
        return stored
