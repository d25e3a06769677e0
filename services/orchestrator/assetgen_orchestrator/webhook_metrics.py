"""Metrics of outbound webhooks: deliveries by outcome, and how long the oldest pending one has waited."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import Counter, Gauge

from assetgen_orchestrator.models import utcnow
from assetgen_orchestrator.webhooks import WebhookStore

__all__ = ["OLDEST_PENDING_DELIVERY", "WEBHOOK_DELIVERIES", "start_webhook_gauge_refresh"]

logger = logging.getLogger(__name__)

WEBHOOK_DELIVERIES = Counter(
    "assetgen_webhook_deliveries_total",
    "Webhook delivery tries by outcome: delivered, retried, failed (schedule spent), gone (410, "
    "endpoint disabled), dropped (endpoint disabled before the try).",
    ["outcome"],
)
OLDEST_PENDING_DELIVERY = Gauge(
    "assetgen_webhook_oldest_pending_seconds",
    "Age of the oldest webhook delivery not yet delivered or given up (0: none pending).",
)


def start_webhook_gauge_refresh(
    webhooks: WebhookStore, interval: float = 15.0
) -> Callable[[], Awaitable[None]]:
    """Refreshes the pending-delivery gauge every ``interval`` seconds; returns the stop function."""

    async def refresh_forever() -> None:
        while True:
            try:
                oldest = await webhooks.oldest_pending_created_at()
                OLDEST_PENDING_DELIVERY.set((utcnow() - oldest).total_seconds() if oldest else 0.0)
            except Exception as exc:
                logger.warning("could not refresh webhook gauges: %s", exc)
            await asyncio.sleep(interval)

    task = asyncio.create_task(refresh_forever(), name="webhook-gauges")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop
