"""The WebhookService gRPC servicer: a project's webhook endpoints and their delivery log.

A project's caller (``x-assetgen-project``) reaches only its project's endpoints (another's answers
NOT_FOUND); an admin reaches all, and names the project of a new endpoint (default "default"),
unless it is for a box, whose project it then is.
"""

from __future__ import annotations

import datetime as dt
import uuid

from google.protobuf.timestamp_pb2 import Timestamp
from nats.js import JetStreamContext

from assetgen.v1 import gateway_pb2, orchestrator_pb2_grpc
from assetgen_orchestrator.access import AccessStore
from assetgen_orchestrator.models import DEFAULT_PROJECT_ID
from assetgen_orchestrator.scope import ProjectScope, caller_project
from assetgen_orchestrator.webhook_fanout import publish_delivery
from assetgen_orchestrator.webhook_models import DeliveryStatus, WebhookDeliveryRow, WebhookEndpointRow
from assetgen_orchestrator.webhooks import WebhookDestinations, WebhookStore, parse_events
from assetgen_runtime.errors import NotFound

__all__ = ["WebhookServicer", "delivery_to_proto", "endpoint_to_proto"]


def _timestamp(value: dt.datetime) -> Timestamp:
    stamp = Timestamp()
    # SQLite hands back naive datetimes; everything we store is UTC.
    stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
    return stamp


def endpoint_to_proto(
    endpoint: WebhookEndpointRow, *, with_secret: bool = False
) -> gateway_pb2.WebhookEndpoint:
    """The API's view of an endpoint; its secret only when it was just made."""
    return gateway_pb2.WebhookEndpoint(
        id=endpoint.id,
        url=endpoint.url,
        events=endpoint.event_types,
        box=endpoint.box_id or "",
        project=endpoint.project_id,
        enabled=endpoint.enabled,
        secret=endpoint.secret if with_secret else "",
        disabled_reason=endpoint.disabled_reason,
        created_at=_timestamp(endpoint.created_at),
    )


def delivery_to_proto(delivery: WebhookDeliveryRow) -> gateway_pb2.WebhookDelivery:
    """The API's view of a delivery (its log entry)."""
    pending = delivery.status == DeliveryStatus.PENDING
    return gateway_pb2.WebhookDelivery(
        id=delivery.id,
        event=delivery.event,
        asset=delivery.asset_id,
        status=delivery.status,
        attempts=delivery.attempts,
        last_status_code=delivery.last_status_code,
        next_attempt_at=_timestamp(delivery.next_attempt_at or delivery.created_at) if pending else None,
        webhook=delivery.webhook_id,
        created_at=_timestamp(delivery.created_at),
        last_error=delivery.last_error,
    )


class WebhookServicer(orchestrator_pb2_grpc.WebhookServiceServicer):
    """Webhook endpoints over gRPC, on :class:`WebhookStore`."""

    def __init__(
        self,
        webhooks: WebhookStore,
        destinations: WebhookDestinations,
        scope: ProjectScope,
        access: AccessStore,
        js: JetStreamContext,
    ) -> None:
        self._webhooks = webhooks
        self._destinations = destinations
        self._scope = scope
        self._access = access
        self._js = js

    async def _endpoint(self, endpoint_id: str, context: object) -> WebhookEndpointRow:
        return await self._webhooks.get_endpoint(endpoint_id, caller_project(context))

    async def CreateWebhook(
        self, request: gateway_pb2.CreateWebhookRequest, context: object
    ) -> gateway_pb2.WebhookEndpoint:
        events = parse_events(request.events, default_all=True)
        url = await self._destinations.check(request.url)
        box_id: str | None = None
        if request.box:
            box = await self._scope.box(request.box, context)
            project_id, box_id = box.project_id, box.id
        elif caller_project(context):
            project_id = caller_project(context)
        else:
            project_id = (await self._access.get_project(request.project or DEFAULT_PROJECT_ID)).id
        endpoint = await self._webhooks.create_endpoint(project_id, box_id, url, events)
        return endpoint_to_proto(endpoint, with_secret=True)

    async def ListWebhooks(
        self, request: gateway_pb2.ListWebhooksRequest, context: object
    ) -> gateway_pb2.ListWebhooksResponse:
        endpoints = await self._webhooks.list_endpoints(caller_project(context))
        return gateway_pb2.ListWebhooksResponse(items=[endpoint_to_proto(endpoint) for endpoint in endpoints])

    async def GetWebhook(
        self, request: gateway_pb2.GetWebhookRequest, context: object
    ) -> gateway_pb2.WebhookEndpoint:
        return endpoint_to_proto(await self._endpoint(request.id, context))

    async def UpdateWebhook(
        self, request: gateway_pb2.UpdateWebhookRequest, context: object
    ) -> gateway_pb2.WebhookEndpoint:
        endpoint = await self._endpoint(request.id, context)
        values: dict[str, object] = {}
        if request.HasField("url"):
            values["url"] = await self._destinations.check(request.url)
        if request.events:
            values["events"] = parse_events(request.events, default_all=False)
        if request.HasField("enabled"):
            values["enabled"] = request.enabled
        if values:
            endpoint = await self._webhooks.update_endpoint(endpoint, **values)
        return endpoint_to_proto(endpoint)

    async def DeleteWebhook(
        self, request: gateway_pb2.DeleteWebhookRequest, context: object
    ) -> gateway_pb2.DeleteWebhookResponse:
        endpoint = await self._endpoint(request.id, context)
        await self._webhooks.delete_endpoint(endpoint.id)
        return gateway_pb2.DeleteWebhookResponse()

    async def ListWebhookDeliveries(
        self, request: gateway_pb2.ListWebhookDeliveriesRequest, context: object
    ) -> gateway_pb2.ListWebhookDeliveriesResponse:
        endpoint = await self._endpoint(request.id, context)
        page = await self._webhooks.list_deliveries(endpoint.id, request.page_size, request.cursor)
        return gateway_pb2.ListWebhookDeliveriesResponse(
            items=[delivery_to_proto(delivery) for delivery in page.items], next_cursor=page.next_cursor
        )

    async def RedeliverWebhook(
        self, request: gateway_pb2.RedeliverWebhookRequest, context: object
    ) -> gateway_pb2.WebhookDelivery:
        endpoint = await self._endpoint(request.id, context)
        delivery = await self._webhooks.get_delivery(request.delivery_id)
        if delivery is None or delivery.webhook_id != endpoint.id:
            raise NotFound(f"delivery {request.delivery_id!r} not found")
        delivery = await self._webhooks.reopen(delivery)
        # A message id of its own: the delivery's first job may still be in the duplicate window.
        await publish_delivery(self._js, delivery.id, message_id=f"{delivery.id}.{uuid.uuid4().hex}")
        return delivery_to_proto(delivery)
