"""Sends webhook deliveries: one job message per delivery on the webhooks work queue.

Each delivery of the job runs one try: the body recorded by the fan-out, signed afresh
(:mod:`.webhook_signing`), POSTed with a timeout through the egress guard. A 2xx answer delivers it;
410 Gone turns its endpoint off; anything else (or no answer) is tried again after the next delay of
the schedule (:mod:`.webhook_policy`), the job NAKed with that delay, so the schedule lives in
JetStream and survives any restart. Deliveries of one asset to one endpoint go in the order of
their events: a delivery waits while an earlier one is pending. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time

import httpx
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from assetgen_orchestrator.jobs import Done, Later, Outcome
from assetgen_orchestrator.models import utcnow
from assetgen_orchestrator.webhook_fanout import WEBHOOK_JOBS, WEBHOOKS_STREAM
from assetgen_orchestrator.webhook_metrics import WEBHOOK_DELIVERIES
from assetgen_orchestrator.webhook_models import DeliveryStatus, WebhookDeliveryRow, WebhookEndpointRow
from assetgen_orchestrator.webhook_policy import next_retry_delay
from assetgen_orchestrator.webhook_signing import signature_headers
from assetgen_orchestrator.webhooks import WebhookStore
from assetgen_runtime.errors import NotFound
from assetgen_runtime.netguard import FetchRefused, redact_url

__all__ = ["WebhookSender"]

logger = logging.getLogger(__name__)

SENDER_CONSUMER = "webhook-sender"
USER_AGENT = "AssetGen-Webhooks/1"
# While an earlier delivery of the same asset is being tried, look again this soon.
_ORDER_WAIT_MIN = 0.2
_ORDER_WAIT_MAX = 30.0
_ERROR_TEXT_MAX = 300


class WebhookSender:
    """Pulls delivery jobs and makes one try of each."""

    def __init__(
        self,
        js: JetStreamContext,
        webhooks: WebhookStore,
        client: httpx.AsyncClient,
        *,
        schedule: tuple[float, ...],
        timeout: float,
        concurrency: int = 32,
    ) -> None:
        self._js = js
        self._webhooks = webhooks
        self._client = client
        self._schedule = schedule
        self._timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._sending: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Binds the durable consumer and starts pulling."""
        await self._js.add_consumer(
            WEBHOOKS_STREAM,
            ConsumerConfig(
                durable_name=SENDER_CONSUMER,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                # Longer than a try can take, so a try in progress is not handed to another sender.
                ack_wait=max(60.0, self._timeout * 3),
                max_deliver=-1,
                filter_subject=f"{WEBHOOK_JOBS}.>",
            ),
        )
        subscription = await self._js.pull_subscribe_bind(durable=SENDER_CONSUMER, stream=WEBHOOKS_STREAM)
        self._loop_task = asyncio.create_task(self._loop(subscription), name="webhook-sender")

    async def stop(self, timeout: float) -> None:
        """Stops pulling and waits up to ``timeout`` for tries in progress; others are redelivered."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _loop(self, subscription: JetStreamContext.PullSubscription) -> None:
        while True:
            free = self._concurrency - len(self._tasks)
            if free <= 0:
                await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await subscription.fetch(free, timeout=1.0)
            except (TimeoutError, NatsTimeoutError):
                continue
            except Exception:
                logger.exception("fetching webhook deliveries failed; retrying")
                await asyncio.sleep(1.0)  # back off from a broken connection, not to wait for state
                continue
            for message in messages:
                task = asyncio.create_task(self._run(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, message: Msg) -> None:
        delivery_id = message.data.decode(errors="replace")
        try:
            outcome = await self.step(delivery_id)
        except Exception:
            logger.exception("webhook delivery step failed", extra={"delivery_id": delivery_id})
            outcome = Later(5.0)
        with contextlib.suppress(Exception):
            if isinstance(outcome, Later):
                await message.nak(delay=max(outcome.delay, 0.0))
            else:
                await message.ack()

    async def step(self, delivery_id: str) -> Outcome:
        """One try of a delivery if it is due and first in its asset's order; what to do with its job."""
        delivery = await self._webhooks.get_delivery(delivery_id)
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return Done()
        try:
            endpoint = await self._webhooks.get_endpoint(delivery.webhook_id)
        except NotFound:
            return Done()
        if not endpoint.enabled:
            await self._webhooks.record_try(
                delivery, status=DeliveryStatus.FAILED, last_error="the endpoint is disabled"
            )
            WEBHOOK_DELIVERIES.labels("dropped").inc()
            return Done()
        earlier = await self._webhooks.earlier_pending(delivery)
        if earlier is not None:
            wait = _seconds_until(earlier.next_attempt_at)
            return Later(min(max(wait, _ORDER_WAIT_MIN), _ORDER_WAIT_MAX))
        due_in = _seconds_until(delivery.next_attempt_at)
        if due_in > 0.05:
            return Later(due_in)  # a job redelivered early (after a restart): its time has not come
        if delivery.id in self._sending:
            return Later(self._timeout)
        self._sending.add(delivery.id)
        try:
            async with self._slots:
                return await self._try(endpoint, delivery)
        finally:
            self._sending.discard(delivery.id)

    async def _try(self, endpoint: WebhookEndpointRow, delivery: WebhookDeliveryRow) -> Outcome:
        body = delivery.payload.encode()
        headers = signature_headers(endpoint.secret, delivery.id, int(time.time()), body)
        headers |= {"content-type": "application/json", "user-agent": USER_AGENT}
        status, error = 0, ""
        try:
            response = await self._client.post(
                endpoint.url, content=body, headers=headers, timeout=self._timeout
            )
            status = response.status_code
            if not 200 <= status < 300:
                error = f"answered {status}"
        except FetchRefused as exc:
            error = str(exc)
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        error = error[:_ERROR_TEXT_MAX]
        if 200 <= status < 300:
            await self._webhooks.record_try(
                delivery,
                status=DeliveryStatus.DELIVERED,
                last_status_code=status,
                last_error="",
                next_attempt_at=None,
            )
            WEBHOOK_DELIVERIES.labels("delivered").inc()
            return Done()
        if status == 410:
            reason = f"{redact_url(endpoint.url)} answered 410 Gone"
            await self._webhooks.disable_endpoint(endpoint.id, reason)
            await self._webhooks.record_try(
                delivery,
                status=DeliveryStatus.FAILED,
                last_status_code=status,
                last_error=reason,
                next_attempt_at=None,
            )
            WEBHOOK_DELIVERIES.labels("gone").inc()
            logger.warning("webhook endpoint disabled: %s", reason, extra={"webhook_id": endpoint.id})
            return Done()
        delay = next_retry_delay(self._schedule, delivery.attempts + 1)
        if delay is None:
            await self._webhooks.record_try(
                delivery,
                status=DeliveryStatus.FAILED,
                last_status_code=status,
                last_error=error,
                next_attempt_at=None,
            )
            WEBHOOK_DELIVERIES.labels("failed").inc()
            return Done()
        await self._webhooks.record_try(
            delivery,
            last_status_code=status,
            last_error=error,
            next_attempt_at=utcnow() + dt.timedelta(seconds=delay),
        )
        WEBHOOK_DELIVERIES.labels("retried").inc()
        return Later(delay)


def _seconds_until(moment: dt.datetime | None) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; everything we store is UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return (moment - utcnow()).total_seconds()
