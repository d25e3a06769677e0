"""Streams a file of unknown length into the bucket: sniffs its type, hashes, counts and caps it on the way.

Both the upload and the ingest RPC end here, so a client-streamed file and a downloaded one are stored,
limited and verified the same way. A file that fits in one part is stored with one PUT that carries its
type and SHA-256. A larger one becomes a multipart upload: its type (known from the first bytes) is set
when the upload begins, a few parts travel at once, and its SHA-256, known only after the last byte, goes
to the caller alone (writing it into S3's metadata would mean copying the whole object). Anything that
stops the stream midway (a download cut off, the size limit, a cancelled call, S3 failing) aborts the
multipart upload, and an object completed for a call that fails after all is deleted, so nothing is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from minio.datatypes import Part
from prometheus_client import Counter

from assetgen_runtime.errors import TooLarge, Unavailable, UnsupportedMediaType
from assetgen_storage.bucket import Bucket, ObjectInfo
from assetgen_storage.keys import new_object_key
from assetgen_storage.media import SNIFF_BYTES, MediaType, resolve_media

__all__ = ["StoreRequest", "store_stream"]

logger = logging.getLogger(__name__)

STORED_BYTES = Counter(
    "assetgen_stored_bytes_total", "Bytes written into the bucket, by media kind.", ["kind"]
)
STORED_OBJECTS = Counter(
    "assetgen_stored_objects_total", "Objects written into the bucket, by media kind.", ["kind"]
)


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


async def _settle(work: asyncio.Future[Any]) -> None:
    """Waits for ``work`` (S3 calls in a thread, which cannot be stopped) to end, even if cancelled meanwhile.

    Neither raises its error nor cancels it, so the caller can then clean up by what really happened.
    """
    while not work.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({work})
    if not work.cancelled():
        work.exception()  # mark retrieved: the caller reports the cause


def _succeeded(work: asyncio.Future[Any]) -> bool:
    return work.done() and not work.cancelled() and work.exception() is None


async def _run_quietly(cleanup: Awaitable[None], failure: str, key: str) -> None:
    """Runs ``cleanup`` to its end, cancelled or not; logs ``failure`` instead of raising."""
    work = asyncio.ensure_future(cleanup)
    await _settle(work)
    if not _succeeded(work):
        error = "cancelled" if work.cancelled() else str(work.exception())
        logger.error(failure, extra={"key": key, "error": error})


class _Parts:
    """Cuts a stream of chunks into parts of exactly ``size`` bytes, copied into reusable buffers.

    A part is handed out only once a byte past it arrived, so what is left at the end (:meth:`rest`) is
    the last part, and a file of at most ``size`` bytes is never cut. The first buffer grows with the
    file; later ones have the part's size and come back through :meth:`recycle` once sent: fresh memory
    for every part (mapped on its own, see ``main``) costs more CPU in page faults than the copy itself.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._part = bytearray()
        self._filled = 0
        self._spare: list[bytearray] = []

    def add(self, chunk: bytes) -> Iterator[bytearray]:
        """Buffers ``chunk``, yielding each part it completes (usually none).

        The caller sends a part before asking for the next, so a buffer for the bytes that follow is
        taken only then, when a part sent earlier may have come back.
        """
        view = memoryview(chunk)
        while view:
            if self._filled == self._size:
                yield self._part
                self._part = self._spare.pop() if self._spare else bytearray(self._size)
                self._filled = 0
            taken = min(len(view), self._size - self._filled)
            # Overwrites a reused buffer in place; extends the first one, which is never longer than this.
            self._part[self._filled : self._filled + taken] = view[:taken]
            self._filled += taken
            view = view[taken:]

    def recycle(self, part: bytearray) -> None:
        """Takes back a part that S3 no longer reads, to fill it again."""
        self._spare.append(part)

    def rest(self) -> bytes:
        """The bytes not handed out: the whole file if it fits in one part, else its last part."""
        return bytes(memoryview(self._part)[: self._filled])


class _MultipartUpload:
    """A multipart upload under way: begun at once, its parts sent in threads, a few at a time.

    Memory stays bounded: a part waits for a free slot before it is sent, so at most
    ``bucket.parts_in_flight`` parts are in S3 threads while the stream fills the next one. A sent part's
    buffer goes to ``recycle``.
    """

    def __init__(
        self, bucket: Bucket, key: str, *, content_type: str, recycle: Callable[[bytearray], None]
    ) -> None:
        self._bucket = bucket
        self._key = key
        self._recycle = recycle
        self._begun = asyncio.ensure_future(bucket.begin_upload(key, content_type=content_type))
        self._slots = asyncio.Semaphore(bucket.parts_in_flight)
        self._sending: set[asyncio.Future[Part]] = set()
        self._sent: list[Part] = []
        self._count = 0
        self._failure: BaseException | None = None

    async def send(self, data: bytes | bytearray) -> None:
        """Sends the next part once a slot is free; raises what made an earlier part fail."""
        upload_id = await asyncio.shield(self._begun)
        await self._slots.acquire()
        if self._failure is not None:
            self._slots.release()
            raise self._failure
        self._count += 1
        sending = asyncio.ensure_future(self._bucket.upload_part(self._key, upload_id, self._count, data))
        self._sending.add(sending)
        sending.add_done_callback(functools.partial(self._part_done, data))

    def _part_done(self, data: bytes | bytearray, sending: asyncio.Future[Part]) -> None:
        self._sending.discard(sending)
        self._slots.release()
        if sending.cancelled():
            # The thread may still be reading the buffer: it is not reused.
            self._failure = self._failure or Unavailable("a part upload to S3 was cancelled")
            return
        if isinstance(data, bytearray):
            self._recycle(data)
        if (error := sending.exception()) is not None:
            self._failure = self._failure or error
        else:
            self._sent.append(sending.result())

    async def complete(self) -> None:
        """Waits for the parts in flight, then joins every part into the object."""
        upload_id = await asyncio.shield(self._begun)
        if self._sending:
            await asyncio.wait(set(self._sending))
        if self._failure is not None:
            raise self._failure
        parts = sorted(self._sent, key=lambda part: part.part_number)
        await self._bucket.complete_upload(self._key, upload_id, parts)

    async def abort(self) -> None:
        """Waits for the requests in flight, then discards the upload and its parts; logs, never raises."""
        await _settle(self._begun)
        if not _succeeded(self._begun):
            return  # no upload began
        while self._sending:
            await _settle(next(iter(self._sending)))
        aborting = self._bucket.abort_upload(self._key, self._begun.result())
        await _run_quietly(aborting, "could not abort an unfinished upload", self._key)


async def store_stream(bucket: Bucket, chunks: AsyncIterable[bytes], request: StoreRequest) -> ObjectInfo:
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

    parts = _Parts(bucket.part_bytes)
    upload: _MultipartUpload | None = None
    stored: asyncio.Future[None] | None = None
    digest = hashlib.sha256()
    size = 0
    try:
        async with contextlib.aclosing(_chain(head, iterator)) as stream:
            async for chunk in stream:
                size += len(chunk)
                if request.max_bytes and size > request.max_bytes:
                    raise _too_large(request)
                digest.update(chunk)
                for part in parts.add(chunk):
                    if upload is None:
                        upload = _MultipartUpload(
                            bucket, key, content_type=media.content_type, recycle=parts.recycle
                        )
                    await upload.send(part)
        if upload is None:
            put = bucket.put(key, parts.rest(), content_type=media.content_type, sha256=digest.hexdigest())
            stored = asyncio.ensure_future(put)
        else:
            await upload.send(parts.rest())
            stored = asyncio.ensure_future(upload.complete())
        # Shielded: a cancelled call still learns whether the object came to be, and deletes it if so.
        await asyncio.shield(stored)
    except BaseException:
        await _clean_up(bucket, key, upload, stored)
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


async def _clean_up(
    bucket: Bucket, key: str, upload: _MultipartUpload | None, stored: asyncio.Future[None] | None
) -> None:
    """Leaves nothing behind: deletes an object that was completed, else aborts an unfinished upload."""
    if stored is not None:
        await _settle(stored)
        if _succeeded(stored):
            await _run_quietly(bucket.delete(key), "could not delete an unfinished object", key)
            return
    if upload is not None:
        await upload.abort()
