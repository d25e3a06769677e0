"""Turns many concurrent single calls into one batch call (the "data loader" pattern).

Coroutines that call :meth:`Batcher.load` in the same event-loop iteration share one call of the
batch function, made in the next iteration. Work that arrives together — the job messages of one
JetStream fetch, say — therefore costs one database query or one RPC instead of one each, and a
lone call waits for nothing but one loop iteration. With a ``linger``, a batch also gathers the
calls of the next ``linger`` seconds: work that trickles in (at low poll rates due jobs leave
JetStream one or two per fetch) is batched too, at the price of that much latency. How much each
saves is measured in bench/README.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

__all__ = ["GROUP_COMMIT_LINGER", "Batcher", "GroupCommit"]

K = TypeVar("K")
V = TypeVar("V")
W = TypeVar("W")

GROUP_COMMIT_LINGER = 0.010
"""Seconds a write waits for company (``ASSETGEN_DB_WRITE_LINGER_MS``): long enough to gather the
writes of the steps that run together, which is what makes grouping pay, and short enough that no step
notices the wait. Chosen by ``make bench`` throughput runs (bench/README.md, bench/HISTORY.md)."""

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


class GroupCommit(Generic[W, V]):
    """Commits writes made within ``linger`` seconds of each other together: "group commit".

    ``together(writes)`` writes several of one shape (``shape(write)``) in one statement and
    returns one result per write, in order; ``alone(write)`` writes one the usual way, which is
    also how a lone write goes, since a group statement usually costs more for one row. Writes of
    different shapes go in separate statements at once. A second write of the same ``key(write)``
    goes in a later statement than the first, so that writes to one row apply in the order made.
    If a group statement fails, its writes are each made alone, so one write the database refuses
    fails only its own caller.
    """

    def __init__(
        self,
        *,
        together: Callable[[list[W]], Awaitable[Sequence[V]]],
        alone: Callable[[W], Awaitable[V]],
        key: Callable[[W], Hashable],
        shape: Callable[[W], Hashable] = lambda _: None,
        linger: float,
        max_batch: int = 200,
    ) -> None:
        self._together = together
        self._alone = alone
        self._key = key
        self._shape = shape
        self._batcher: Batcher[W, V] = Batcher(self._commit, max_batch=max_batch, linger=linger)

    async def write(self, write: W) -> V:
        """``write``'s result, once the statement that carried it has run."""
        return await self._batcher.load(write)

    async def _commit(self, writes: list[W]) -> list[V | BaseException]:
        results: list[V | BaseException] = [None] * len(writes)  # type: ignore[list-item]
        for round_ in _rounds([self._key(write) for write in writes]):
            groups: dict[Hashable, list[int]] = {}
            for index in round_:
                groups.setdefault(self._shape(writes[index]), []).append(index)
            outcomes = await asyncio.gather(*(self._group([writes[i] for i in g]) for g in groups.values()))
            for group, outcome in zip(groups.values(), outcomes, strict=True):
                for index, result in zip(group, outcome, strict=True):
                    results[index] = result
        return results

    async def _group(self, writes: list[W]) -> Sequence[V | BaseException]:
        if len(writes) > 1:
            try:
                return await self._together(writes)
            except Exception:
                pass  # each alone, below: only the refused write fails
        return await asyncio.gather(*(self._alone(write) for write in writes), return_exceptions=True)


def _rounds(keys: Sequence[Hashable]) -> list[list[int]]:
    """Indexes of ``keys`` in rounds where no key repeats: a key's n-th occurrence is in round n."""
    rounds: list[list[int]] = []
    seen: dict[Hashable, int] = {}
    for index, key in enumerate(keys):
        number = seen[key] = seen.get(key, -1) + 1
        if number == len(rounds):
            rounds.append([])
        rounds[number].append(index)
    return rounds
