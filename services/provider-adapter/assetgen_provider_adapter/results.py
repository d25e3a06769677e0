"""Results the provider-adapter stores itself: inline bytes and downloads that need the provider's auth.

Plain result URLs go to storage's Ingest (the orchestrator calls it). Everything else is streamed here
into storage's client-streaming ``Upload``: bytes that arrived inline (base64, a ``data:`` URI, the raw
body of a poll, already capped by the engine) in fixed-size chunks, and downloads (OpenAI's
``/content``, Veo's file URI) straight from the provider's response through the SSRF guard, chunk by
chunk, so memory stays bounded whatever the file's size.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import httpx

from assetgen.v1 import common_pb2, storage_pb2, storage_pb2_grpc
from assetgen_provider_adapter.engine import Output
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
    ) -> None:
        self._storage = storage
        self._client = client
        self._guard = guard
        self._download_timeout = download_timeout
        self._upload_timeout = upload_timeout

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
