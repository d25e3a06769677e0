"""Streams a file of unknown length into the bucket: sniffs its type, hashes, counts and caps it on the way.

Both the upload and the ingest RPC end here, so a client-streamed file and a downloaded one are stored,
limited and verified the same way. Anything that stops the stream midway (a download cut off, the size
limit, a cancelled call, S3 failing) aborts the multipart upload, so no partial object is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass

from prometheus_client import Counter

from assetgen_runtime.errors import TooLarge, Unavailable, UnsupportedMediaType
from assetgen_storage.bucket import Bucket, ObjectInfo
from assetgen_storage.keys import new_object_key
from assetgen_storage.media import SNIFF_BYTES, MediaType, resolve_media
from assetgen_storage.pipe import ChunkPipe, PipeClosed

__all__ = ["StoreRequest", "store_stream"]

logger = logging.getLogger(__name__)

STORED_BYTES = Counter(
    "assetgen_stored_bytes_total", "Bytes written into the bucket, by media kind.", ["kind"]
)
STORED_OBJECTS = Counter(
    "assetgen_stored_objects_total", "Objects written into the bucket, by media kind.", ["kind"]
)


class _StreamAbandoned(Exception):
    """Handed to the upload thread when the caller went away, so MinIO aborts the multipart upload."""


@dataclass(frozen=True)
class StoreRequest:
    """Where a stream goes and what it may be."""

    box_id: str
    asset_id: str
    declared_type: str = ""
    require_media: bool = False
    max_bytes: int = 0
    source: str = "upload"


async def _peek(chunks: AsyncIterator[bytes], size: int) -> list[bytes]:
    """Reads chunks until ``size`` bytes (or the end) are in hand, for sniffing before the upload starts."""
    head: list[bytes] = []
    got = 0
    while got < size:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            break
        head.append(chunk)
        got += len(chunk)
    return head


def _too_large(request: StoreRequest) -> TooLarge:
    return TooLarge(
        f"the {request.source} is larger than the {request.max_bytes} byte limit (ASSETGEN_MAX_OBJECT_BYTES)"
    )


async def _await_thread(task: asyncio.Future[None]) -> None:
    """Waits for ``task`` (a thread's work) to finish even if cancelled meanwhile, without raising."""
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task})  # unlike awaiting it, neither raises its error nor cancels it
    if not task.cancelled():
        task.exception()  # mark retrieved: the caller reports the cause


async def store_stream(
    bucket: Bucket, chunks: AsyncIterable[bytes], request: StoreRequest, *, buffer_bytes: int
) -> ObjectInfo:
    """Stores ``chunks`` under a fresh key; returns the key, sniffed type, size and SHA-256."""
    iterator = aiter(chunks)
    head = await _peek(iterator, SNIFF_BYTES)
    media: MediaType = resolve_media(b"".join(head)[:SNIFF_BYTES], request.declared_type)
    if request.require_media and not media.is_media:
        claimed = f" (declared {request.declared_type})" if request.declared_type else ""
        raise UnsupportedMediaType(
            f"only images and videos can be uploaded; the bytes are not a PNG, JPEG, GIF, WebP, AVIF, "
            f"MP4, QuickTime, WebM or Matroska file{claimed}"
        )
    key = new_object_key(request.box_id, request.asset_id, media.extension)
    log_fields = {"key": key, "box_id": request.box_id, "asset_id": request.asset_id}
    if request.declared_type and request.declared_type.split(";")[0].strip().lower() != media.content_type:
        logger.info(
            "declared type differs from the bytes",
            extra={**log_fields, "declared": request.declared_type, "detected": media.content_type},
        )

    pipe = ChunkPipe(buffer_bytes)
    upload = asyncio.create_task(bucket.put_stream(key, pipe, content_type=media.content_type))
    digest = hashlib.sha256()
    size = 0
    try:
        try:
            async with contextlib.aclosing(_chain(head, iterator)) as stream:
                async for chunk in stream:
                    size += len(chunk)
                    if request.max_bytes and size > request.max_bytes:
                        raise _too_large(request)
                    digest.update(chunk)
                    await pipe.write(chunk)
            pipe.close()
        except PipeClosed:
            # The upload stopped by itself (S3 failed): its error is the one to report.
            await _await_thread(upload)
            raise _upload_error(upload) from None
        await asyncio.shield(upload)
        await bucket.seal(key, content_type=media.content_type, sha256=digest.hexdigest())
    except BaseException as exc:
        await _clean_up(bucket, key, pipe, upload, exc)
        raise
    logger.info("object stored", extra={**log_fields, "size_bytes": size, "content_type": media.content_type})
    STORED_BYTES.labels(media.content_type.split("/")[0]).inc(size)
    STORED_OBJECTS.labels(media.content_type.split("/")[0]).inc()
    return ObjectInfo(key=key, content_type=media.content_type, size_bytes=size, sha256=digest.hexdigest())


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncGenerator[bytes, None]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


def _upload_error(upload: asyncio.Task[None]) -> BaseException:
    if not upload.cancelled() and (error := upload.exception()) is not None:
        return error
    return Unavailable("the upload to S3 stopped before the end of the stream")


async def _clean_up(
    bucket: Bucket, key: str, pipe: ChunkPipe, upload: asyncio.Task[None], cause: BaseException
) -> None:
    """Leaves nothing behind: aborts an unfinished upload, deletes an object that was completed."""
    if not upload.done():
        pipe.fail(_StreamAbandoned(f"stream abandoned: {cause!r}"))
        await _await_thread(upload)
    if upload.cancelled() or upload.exception() is not None:
        return  # MinIO aborted the multipart upload (or never started one)
    # The object is complete but its stream failed afterwards (checksum not recorded, call cancelled).
    delete = asyncio.ensure_future(bucket.delete(key))
    await _await_thread(delete)
    if not delete.cancelled() and delete.exception() is not None:
        error = str(delete.exception())
        logger.error("could not delete an unfinished object", extra={"key": key, "error": error})
