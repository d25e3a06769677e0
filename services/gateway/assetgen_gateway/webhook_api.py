"""The public RPCs of webhook endpoints, part of the GatewayService (and where provider callbacks go).

Endpoints and their deliveries live in the orchestrator (``WebhookService``), which confines a
project's caller to its project (the caller's project travels as on every orchestrator call).
"""

from __future__ import annotations

from assetgen.v1 import gateway_pb2, orchestrator_pb2_grpc
from assetgen_runtime.errors import Unavailable

__all__ = ["WebhookRpcs"]


class WebhookRpcs:
    """Webhook endpoints; mixed into ``GatewayApi``, which sets these attributes."""

    _webhooks: orchestrator_pb2_grpc.WebhookServiceStub | None
    _callbacks: orchestrator_pb2_grpc.CallbackServiceStub | None
    _timeout: float

    def callback_stub(self) -> orchestrator_pb2_grpc.CallbackServiceStub | None:
        """Where provider callbacks go (the orchestrator's CallbackService), if configured."""
        return self._callbacks

    @property
    def rpc_timeout(self) -> float:
        """The deadline of a call to an internal service."""
        return self._timeout

    def _require_webhooks(self) -> orchestrator_pb2_grpc.WebhookServiceStub:
        if self._webhooks is None:
            raise Unavailable("webhooks are not configured on this gateway")
        return self._webhooks

    async def CreateWebhook(
        self, request: gateway_pb2.CreateWebhookRequest, context: object
    ) -> gateway_pb2.WebhookEndpoint:
        return await self._require_webhooks().CreateWebhook(request, timeout=self._timeout)

    async def ListWebhooks(
        self, request: gateway_pb2.ListWebhooksRequest, context: object
    ) -> gateway_pb2.ListWebhooksResponse:
        return await self._require_webhooks().ListWebhooks(request, timeout=self._timeout)

    async def GetWebhook(
        self, request: gateway_pb2.GetWebhookRequest, context: object
    ) -> gateway_pb2.WebhookEndpoint:
        return await self._require_webhooks().GetWebhook(request, timeout=self._timeout)

    async def UpdateWebhook(
        self, request: gateway_pb2.UpdateWebhookRequest, context: object
    ) -> gateway_pb2.WebhookEndpoint:
        return await self._require_webhooks().UpdateWebhook(request, timeout=self._timeout)

    async def DeleteWebhook(
        self, request: gateway_pb2.DeleteWebhookRequest, context: object
    ) -> gateway_pb2.DeleteWebhookResponse:
        return await self._require_webhooks().DeleteWebhook(request, timeout=self._timeout)

    async def ListWebhookDeliveries(
        self, request: gateway_pb2.ListWebhookDeliveriesRequest, context: object
    ) -> gateway_pb2.ListWebhookDeliveriesResponse:
        return await self._require_webhooks().ListWebhookDeliveries(request, timeout=self._timeout)

    async def RedeliverWebhook(
        self, request: gateway_pb2.RedeliverWebhookRequest, context: object
    ) -> gateway_pb2.WebhookDelivery:
        return await self._require_webhooks().RedeliverWebhook(request, timeout=self._timeout)
