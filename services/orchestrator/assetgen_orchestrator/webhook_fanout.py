"""Turns asset events into webhook deliveries: one per endpoint and event, each with a job to send it.

A durable consumer reads the events stream (``assetgen.events.>``) in order. An event whose status
is one an endpoint asked for becomes a delivery row — its body fixed then: ``{"type", "timestamp",
"data": <the asset as the HTTP API shows it>}`` — and a message on the webhooks work queue
(``assetgen.jobs.webhook.<delivery id>``), which the sender (:mod:`.webhook_sender`) acts on. Events
are acknowledged only after their deliveries are recorded and their jobs stored, so a crash between
the two redelivers the event; the row exists then (one per endpoint, asset attempt and event), and
its job is published again under the same message id, which JetStream stores once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from typing import Any

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from assetgen_orchestrator.convert import asset_to_proto
from assetgen_orchestrator.jobs import EVENTS_STREAM, EVENTS_SUBJECTS
from assetgen_orchestrator.store import AssetStore
from assetgen_orchestrator.webhook_models import WebhookDeliveryRow
from assetgen_orchestrator.webhook_policy import event_type
from assetgen_orchestrator.webhooks import WebhookStore
from assetgen_runtime.codec import message_to_json
from assetgen_runtime.errors import NotFound
from assetgen_runtime.ids import new_id
from assetgen_runtime.jetstream import ensure_stream
from assetgen_runtime.jsontext import parse_json_object

__all__ = [
    "WEBHOOKS_STREAM",
    "WebhookFanout",
    "delivery_subject",
    "publish_delivery",
    "setup_webhook_stream",
]

logger = logging.getLogger(__name__)

WEBHOOKS_STREAM = "ASSETGEN_WEBHOOKS"
WEBHOOK_JOBS = "assetgen.jobs.webhook"
FANOUT_CONSUMER = "webhook-fanout-1"
_OLD_CONSUMERS = ("webhook-fanout",)
"""Earlier consumers of the fan-out (acknowledging all up to a message), deleted at start."""
_SEEN_MAX = 10_000


def delivery_subject(delivery_id: str) -> str:
    """The subject of a delivery's job message."""
    return f"{WEBHOOK_JOBS}.{delivery_id}"


async def setup_webhook_stream(js: JetStreamContext, *, replicas: int = 1) -> None:
    """Creates (or updates) the webhooks work queue: one message per delivery still to be sent."""
    await ensure_stream(
        js,
        StreamConfig(
            name=WEBHOOKS_STREAM,
            subjects=[f"{WEBHOOK_JOBS}.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=120.0,
            num_replicas=replicas,
        ),
    )


async def publish_delivery(js: JetStreamContext, delivery_id: str, *, message_id: str = "") -> None:
    """Stores a delivery's job (deduplicated by ``message_id``, default the delivery id)."""
    await js.publish(
        delivery_subject(delivery_id),
        delivery_id.encode(),
        stream=WEBHOOKS_STREAM,
        headers={"Nats-Msg-Id": message_id or delivery_id},
    )


class WebhookFanout:
    """Reads asset events and records the deliveries they make."""

    def __init__(self, js: JetStreamContext, assets: AssetStore, webhooks: WebhookStore) -> None:
        self._js = js
        self._assets = assets
        self._webhooks = webhooks
        # (asset, attempt, event) already fanned out here: progress events repeat a status.
        self._seen: OrderedDict[tuple[str, int, str], None] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Binds the durable consumer (new events from its creation on) and starts reading."""
        for old in _OLD_CONSUMERS:
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(EVENTS_STREAM, old)
        await self._js.add_consumer(
            EVENTS_STREAM,
            ConsumerConfig(
                durable_name=FANOUT_CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.NEW,
                ack_wait=60.0,
                max_deliver=-1,
                filter_subject=EVENTS_SUBJECTS,
            ),
        )
        subscription = await self._js.pull_subscribe_bind(durable=FANOUT_CONSUMER, stream=EVENTS_STREAM)
        self._task = asyncio.create_task(self._loop(subscription), name="webhook-fanout")

    async def stop(self) -> None:
        """Stops reading; an event not yet acknowledged is read again by the next reader."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            try:
                messages = await subscription.fetch(256, timeout=1.0)
            except (TimeoutError, NatsTimeoutError):
                continue
            except Exception:
                logger.exception("reading asset events for webhooks failed; retrying")
                await asyncio.sleep(1.0)  # back off from a broken connection, not to wait for state
                continue
            if not messages:
                continue
            try:
                for message in messages:
                    await self.handle(message.data, message.metadata.sequence.stream)
                    # Each on its own: with replicas sharing the consumer, acknowledging "all up to
                    # here" would also acknowledge events another replica has not handled yet.
                    await message.ack()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("fanning out asset events failed; they will be read again")
                await asyncio.sleep(1.0)  # back off from a failing database, not to wait for state

    async def handle(self, data: bytes, seq: int) -> None:
        """Records the deliveries one event makes (none for most) and publishes their jobs."""
        try:
            event = parse_json_object(data, "asset event")
        except Exception:
            return
        kind = event_type(str(event.get("status", "")))
        asset_id, attempt = str(event.get("asset_id", "")), int(event.get("attempt") or 1)
        key = (asset_id, attempt, kind)
        if not kind or key in self._seen or not await self._webhooks.any_enabled():
            return
        try:
            box = await self._assets.get_box(str(event.get("box_id", "")))
        except NotFound:
            return
        endpoints = await self._webhooks.endpoints_for(box.project_id, box.id, kind)
        if endpoints:
            payload = await self._payload(event, kind)
            if payload is None:
                return
            for endpoint in endpoints:
                delivery = WebhookDeliveryRow(
                    id=new_id("msg"),
                    webhook_id=endpoint.id,
                    asset_id=asset_id,
                    attempt=attempt,
                    event=kind,
                    seq=seq,
                    payload=payload,
                    next_attempt_at=None,
                )
                delivery_id = await self._webhooks.add_delivery(delivery)
                await publish_delivery(self._js, delivery_id)
        self._seen[key] = None
        if len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)

    async def _payload(self, event: dict[str, Any], kind: str) -> str | None:
        asset = await self._assets.find_asset(str(event["asset_id"]))
        if asset is None:
            return None
        # The row may have moved on since the event: the event's own state is what it reports.
        asset.status = str(event["status"])
        asset.attempt = int(event.get("attempt") or asset.attempt)
        asset.progress = float(event.get("progress") or 0.0)
        asset.error_message = str(event.get("error_message") or asset.error_message)
        data = asset_to_proto(asset)
        data.file_url = str(event.get("file_url") or "")
        body = {"type": kind, "timestamp": event.get("at", ""), "data": message_to_json(data)}
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
