"""A bounded byte pipe from the event loop (writer) to a worker thread (reader), for streaming into S3.

The MinIO client reads its upload from a blocking file-like object in a thread; the bytes arrive on the
event loop. :class:`ChunkPipe` joins the two with a buffer bounded in bytes, so however large the object,
memory holds at most the buffer plus the part the reader is assembling.
"""

from __future__ import annotations

import asyncio
import collections
import threading

__all__ = ["ChunkPipe", "PipeClosed"]


class PipeClosed(Exception):
    """The reader stopped (the upload ended or failed) while the writer still had bytes."""


class ChunkPipe:
    """Async ``write`` on the loop, blocking ``read`` in one thread; ``close``/``fail`` end the stream."""

    def __init__(self, limit_bytes: int) -> None:
        self._limit = limit_bytes
        self._loop = asyncio.get_running_loop()
        self._chunks: collections.deque[memoryview] = collections.deque()
        self._buffered = 0
        self._eof = False
        self._error: BaseException | None = None
        self._reader_done = False
        self._lock = threading.Lock()
        self._readable = threading.Condition(self._lock)
        self._writable = asyncio.Event()

    # --- writer side, on the event loop ---

    async def write(self, data: bytes) -> None:
        """Queues ``data``, waiting while the buffer is full; PipeClosed once the reader is gone."""
        if not data:
            return
        while True:
            with self._lock:
                if self._reader_done:
                    raise PipeClosed("the reader stopped")
                if self._buffered < self._limit:
                    self._chunks.append(memoryview(data))
                    self._buffered += len(data)
                    self._readable.notify()
                    return
                self._writable.clear()
            await self._writable.wait()

    def close(self) -> None:
        """Marks the end of the stream: the reader sees EOF once it drained the buffer."""
        with self._lock:
            self._eof = True
            self._readable.notify_all()

    def fail(self, error: BaseException) -> None:
        """Makes the reader's next ``read`` raise ``error``, so the upload aborts instead of completing."""
        with self._lock:
            if self._error is None:
                self._error = error
            self._chunks.clear()
            self._buffered = 0
            self._readable.notify_all()

    # --- reader side, in the worker thread ---

    def read(self, size: int = -1) -> bytes:
        """Blocks until ``size`` bytes (all, if negative) or EOF are there; raises the writer's failure."""
        parts: list[memoryview] = []
        wanted = size if size >= 0 else None
        got = 0
        with self._readable:
            while wanted is None or got < wanted:
                if self._error is not None:
                    raise self._error
                if not self._chunks:
                    if self._eof:
                        break
                    self._readable.wait()
                    continue
                chunk = self._chunks.popleft()
                if wanted is not None and len(chunk) > wanted - got:
                    self._chunks.appendleft(chunk[wanted - got :])
                    chunk = chunk[: wanted - got]
                parts.append(chunk)
                got += len(chunk)
                self._buffered -= len(chunk)
                self._loop.call_soon_threadsafe(self._writable.set)
            if self._error is not None:
                raise self._error
        return b"".join(parts)

    def reader_done(self) -> None:
        """Called by the reader's thread when it stops reading, for good; wakes a waiting writer."""
        with self._lock:
            self._reader_done = True
        try:
            self._loop.call_soon_threadsafe(self._writable.set)
        except RuntimeError:
            pass  # the loop already closed: no writer left to wake
