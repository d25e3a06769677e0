"""The orchestrator's domain metrics: polls, transitions, assets by status, oldest in-flight age."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge

from assetgen_orchestrator.models import Status
from assetgen_orchestrator.store import AssetStore

__all__ = ["ASSETS", "OLDEST_IN_FLIGHT", "POLLS", "SPEND", "TRANSITIONS", "start_gauge_refresh"]

logger = logging.getLogger(__name__)

POLLS = Counter("assetgen_polls_total", "Provider status polls made, by model.", ["model"])
TRANSITIONS = Counter("assetgen_asset_transitions_total", "Assets reaching a terminal status.", ["status"])
ASSETS = Gauge("assetgen_assets", "Assets by status, from the database (refreshed periodically).", ["status"])
SPEND = Counter(
    "assetgen_spend",
    "What settled generations were charged (the cost ledger's charges), by project id, model and currency.",
    ["project", "model", "currency"],
)
OLDEST_IN_FLIGHT = Gauge(
    "assetgen_oldest_in_flight_seconds", "Age of the oldest asset not yet terminal, by model.", ["model"]
)


def start_gauge_refresh(store: AssetStore, interval: float = 15.0) -> Callable[[], Awaitable[None]]:
    """Refreshes the database-backed gauges every ``interval`` seconds; returns the stop function."""

    async def refresh_forever() -> None:
        while True:
            try:
                counts = await store.status_counts()
                for status in Status:
                    ASSETS.labels(status.value).set(counts.get(status.value, 0))
                OLDEST_IN_FLIGHT.clear()
                for model, age in (await store.oldest_in_flight()).items():
                    OLDEST_IN_FLIGHT.labels(model or "(upload)").set(age)
            except Exception as exc:
                logger.warning("could not refresh asset gauges: %s", exc)
            await asyncio.sleep(interval)

    task = asyncio.create_task(refresh_forever(), name="asset-gauges")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop
