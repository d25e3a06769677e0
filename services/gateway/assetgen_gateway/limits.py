"""Limits per caller: how many of one kind of thing a key may have going at once on this gateway.

Counted per gateway replica (a key's watchers spread over replicas each meet the limit there),
which bounds what one key can hold of a replica's connections and memory.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import TypeVar

from assetgen_runtime.errors import RateLimited

__all__ = ["PerKeyLimit"]

T = TypeVar("T")


class PerKeyLimit:
    """At most ``limit`` concurrent holders per key; the next one is refused with RateLimited (429)."""

    def __init__(self, what: str, limit: int, setting: str) -> None:
        self._what = what
        self._limit = limit
        self._setting = setting
        self._held: Counter[str] = Counter()

    def held(self, key_id: str) -> int:
        """How many ``key_id`` holds now."""
        return self._held[key_id]

    @contextlib.contextmanager
    def hold(self, key_id: str) -> Iterator[None]:
        """Holds one for the body; RateLimited if ``key_id`` already holds ``limit``."""
        if self._limit > 0 and self._held[key_id] >= self._limit:
            raise RateLimited(
                f"too many {self._what} for this key (at most {self._limit}, {self._setting}); "
                "close one and try again"
            )
        self._held[key_id] += 1
        try:
            yield
        finally:
            self._held[key_id] -= 1
            if not self._held[key_id]:
                del self._held[key_id]

    async def holding(self, key_id: str, items: AsyncIterator[T]) -> AsyncIterator[T]:
        """``items``, holding one for ``key_id`` while they run; closes ``items`` however it ends."""
        try:
            with self.hold(key_id):
                async for item in items:
                    yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]
