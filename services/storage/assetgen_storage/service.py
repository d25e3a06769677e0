"""The StorageService servicer: upload, ingest, stat, delete and read URLs over the bucket."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator

import grpc
import httpx

from assetgen.v1 import common_pb2, storage_pb2, storage_pb2_grpc
from assetgen_runtime.errors import InvalidArgument, TooLarge
from assetgen_runtime.netguard import NetworkGuard, guarded_stream, redact_url
from assetgen_storage.bucket import Bucket, ObjectInfo
from assetgen_storage.keys import asset_prefix, check_key, check_owner
from assetgen_storage.settings import StorageSettings
from assetgen_storage.store import StoreRequest, store_stream

__all__ = ["StorageServicer"]

logger = logging.getLogger(__name__)


def _stored(info: ObjectInfo, url: str = "") -> common_pb2.StoredObject:
    return common_pb2.StoredObject(
        key=info.key, content_type=info.content_type, size_bytes=info.size_bytes, sha256=info.sha256, url=url
    )


async def _upload_chunks(
    messages: AsyncIterator[storage_pb2.StorageUploadRequest],
) -> AsyncGenerator[bytes, None]:
    async for message in messages:
        if message.WhichOneof("part") != "chunk":
            raise InvalidArgument("an upload carries its metadata once, in its first message only")
        yield message.chunk


class StorageServicer(storage_pb2_grpc.StorageServiceServicer):
    """Serves StorageService over one bucket, one HTTP client and one SSRF guard."""

    def __init__(
        self, settings: StorageSettings, bucket: Bucket, http: httpx.AsyncClient, guard: NetworkGuard
    ) -> None:
        self._settings = settings
        self._bucket = bucket
        self._http = http
        self._guard = guard

    async def _store(self, chunks: AsyncIterable[bytes], request: StoreRequest) -> common_pb2.StoredObject:
        info = await store_stream(self._bucket, chunks, request)
        return _stored(info, url=self._bucket.read_url(info.key))

    async def Upload(
        self,
        request_iterator: AsyncIterator[storage_pb2.StorageUploadRequest],
        context: grpc.aio.ServicerContext,
    ) -> common_pb2.StoredObject:
        messages = aiter(request_iterator)
        first = await anext(messages, None)
        if first is None or first.WhichOneof("part") != "metadata":
            raise InvalidArgument("an upload must start with a metadata message")
        metadata = first.metadata
        check_owner(metadata.box_id, metadata.asset_id)
        request = StoreRequest(
            box_id=metadata.box_id,
            asset_id=metadata.asset_id,
            declared_type=metadata.content_type,
            require_media=metadata.require_media,
            max_bytes=self._settings.max_object_bytes,
            source="upload",
        )
        async with contextlib.aclosing(_upload_chunks(messages)) as chunks:
            return await self._store(chunks, request)

    async def Ingest(
        self, request: storage_pb2.IngestRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.StoredObject:
        check_owner(request.box_id, request.asset_id)
        source = f"download of {redact_url(request.url)}" if request.url else "download"
        timeout = httpx.Timeout(self._settings.fetch_timeout_seconds)
        async with guarded_stream(
            self._http,
            request.url,
            guard=self._guard,
            max_redirects=self._settings.max_redirects,
            timeout=timeout,
        ) as response:
            limit = self._settings.max_object_bytes
            announced = response.headers.get("content-length", "")
            encoded = "content-encoding" in response.headers  # then the length is of the encoded body
            if limit and not encoded and announced.isdigit() and int(announced) > limit:
                raise TooLarge(
                    f"the {source} announces {announced} bytes, more than the {limit} byte limit "
                    "(ASSETGEN_MAX_OBJECT_BYTES)"
                )
            store_request = StoreRequest(
                box_id=request.box_id,
                asset_id=request.asset_id,
                declared_type=response.headers.get("content-type", ""),
                max_bytes=limit,
                source=source,
            )
            return await self._store(response.aiter_bytes(), store_request)

    async def Stat(
        self, request: storage_pb2.StatRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.StoredObject:
        return _stored(await self._bucket.stat(check_key(request.key)))

    async def Delete(
        self, request: storage_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.DeleteResponse:
        await self._bucket.delete(check_key(request.key))
        logger.info("object deleted", extra={"key": request.key})
        return storage_pb2.DeleteResponse()

    async def Prune(
        self, request: storage_pb2.PruneRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.PruneResponse:
        prefix = asset_prefix(request.box_id, request.asset_id)
        if request.keep_key and not check_key(request.keep_key).startswith(prefix):
            raise InvalidArgument(f"{request.keep_key!r} is not a file of asset {request.asset_id}")
        deleted = [key for key in await self._bucket.keys(prefix) if key != request.keep_key]
        for key in deleted:
            await self._bucket.delete(key)
            logger.info(
                "object pruned", extra={"key": key, "asset_id": request.asset_id, "kept": request.keep_key}
            )
        return storage_pb2.PruneResponse(deleted_keys=deleted)

    async def GetObjectUrls(
        self, request: storage_pb2.GetObjectUrlsRequest, context: grpc.aio.ServicerContext
    ) -> storage_pb2.GetObjectUrlsResponse:
        keys = [check_key(key) for key in dict.fromkeys(request.keys)]
        return storage_pb2.GetObjectUrlsResponse(urls={key: self._bucket.read_url(key) for key in keys})
