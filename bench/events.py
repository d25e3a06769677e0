"""What a benchmark learns from NATS: when each asset ended, from the orchestrator's own events."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json

from nats.aio.msg import Msg

__all__ = ["EventLog"]


def _epoch(iso: str) -> float:
    moment = dt.datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


class EventLog:
    """Every asset event seen on NATS: when each asset first reported COMPLETED or FAILED."""

    def __init__(self) -> None:
        self.completed: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.task_of: dict[str, str] = {}
        self._ended: list[str] = []  # in the order they ended, so a waiter reads only what is new
        self._changed = asyncio.Event()

    async def on_message(self, message: Msg) -> None:
        body = json.loads(message.data)
        if "status" not in body:
            return  # an admin event (assetgen.events.admin.*), about no asset's state
        asset_id = body["asset_id"]
        if body.get("external_task_id"):
            self.task_of[asset_id] = body["external_task_id"]
        if body["status"] == "COMPLETED" and asset_id not in self.completed:
            self.completed[asset_id] = _epoch(body["at"])
            self._ended.append(asset_id)
            self._changed.set()
        elif body["status"] in ("FAILED", "CANCELED") and asset_id not in self.failed:
            self.failed[asset_id] = body.get("error_message", "")
            self._ended.append(asset_id)
            self._changed.set()

    async def wait_finished(self, ids: set[str], *, timeout: float) -> bool:
        """Waits until every one of ``ids`` has ended; False if ``timeout`` passed first.

        Each wake-up looks only at the assets that ended since the last: the driver shares the
        cores with the system it measures, and rescanning 10,000 ids per event would cost it
        seconds of CPU while 10,000 tasks finish.
        """
        deadline = asyncio.get_running_loop().time() + timeout
        pending = {i for i in ids if i not in self.completed and i not in self.failed}
        seen = len(self._ended)
        while pending:
            self._changed.clear()
            pending.difference_update(self._ended[seen:])
            seen = len(self._ended)
            if not pending:
                break
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=min(remaining, 5.0))
        return True
