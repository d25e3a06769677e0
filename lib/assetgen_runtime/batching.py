"""Turns many concurrent single calls into one batch call (the "data loader" pattern).

Coroutines that call :meth:`Batcher.load` in the same event-loop iteration share one call of the
batch function, made in the next iteration. Work that arrives together — the job messages of one
JetStream fetch, say — therefore costs one database query or one RPC instead of one each, and a
lone call waits for nothing but one loop iteration. With a ``linger``, a batch also gathers the
calls of the next ``linger`` seconds: work that trickles in (polls due at 170 a second arrive one or
two per fetch) is batched too, at the price of that much latency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Batcher"]

K = TypeVar("K")
V = TypeVar("V")

BatchFunction = Callable[[list[K]], Awaitable[Sequence[V | BaseException]]]


class Batcher(Generic[K, V]):
    """Collects ``load(key)`` calls and answers them from one ``fetch(keys)`` per batch.

    ``fetch`` returns one result per key, in order; a result that is an exception is raised to
    that key's caller alone, and an exception raised by ``fetch`` itself reaches every caller of
    the batch. A caller cancelled while waiting does not cancel the batch.
    """

    def __init__(self, fetch: BatchFunction[K, V], *, max_batch: int = 100, linger: float = 0.0) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if linger < 0:
            raise ValueError("linger must not be negative")
        self._fetch = fetch
        self._max_batch = max_batch
        self._linger = linger
        self._pending: list[tuple[K, asyncio.Future[V]]] = []
        self._scheduled = False
        self._running: set[asyncio.Task[None]] = set()

    async def load(self, key: K) -> V:
        """The result for ``key``, fetched together with the other keys asked for meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._pending.append((key, future))
        if len(self._pending) >= self._max_batch:
            self._dispatch()
        elif not self._scheduled:
            self._scheduled = True
            if self._linger:
                loop.call_later(self._linger, self._dispatch)
            else:
                loop.call_soon(self._dispatch)
        return await future

    def _dispatch(self) -> None:
        self._scheduled = False
        while self._pending:
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[K, asyncio.Future[V]]]) -> None:
        try:
            results = await self._fetch([key for key, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} keys")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
