"""The adapter's part in provider callbacks: checking one, and keeping providers' webhook secrets.

Mixed into the ``ProviderAdapterServicer``, which sets these attributes. A callback is checked
against its model's profile (``webhook`` section) and its provider's secret; the answer names the
task, and the caller (the orchestrator) decides what follows: a poll, never a result.
"""

from __future__ import annotations

import logging

import grpc
from prometheus_client import Counter

from assetgen.v1 import provider_adapter_pb2
from assetgen_provider_adapter.callbacks import CallbackRefused, JwksCache, verify_callback
from assetgen_provider_adapter.catalog import Catalog
from assetgen_provider_adapter.webhook_secrets import WebhookSecrets
from assetgen_runtime.errors import FailedPrecondition, Unavailable

__all__ = ["CALLBACKS", "CallbackRpcs"]

logger = logging.getLogger(__name__)

CALLBACKS = Counter(
    "assetgen_provider_callbacks_total",
    "Provider callbacks checked, by provider and outcome: verified (signature checked), unsigned "
    "(the profile's callbacks carry none) or refused.",
    ["provider", "outcome"],
)


class CallbackRpcs:
    """VerifyCallback; mixed into the servicer."""

    _catalog: Catalog
    _webhook_secrets: WebhookSecrets | None
    _jwks: JwksCache | None

    async def VerifyCallback(
        self, request: provider_adapter_pb2.VerifyCallbackRequest, context: grpc.aio.ServicerContext
    ) -> provider_adapter_pb2.VerifyCallbackResponse:
        if self._webhook_secrets is None or self._jwks is None:
            raise Unavailable("provider callbacks are not configured on this adapter")
        resolved = await self._catalog.resolve(request.model)
        spec = resolved.target.profile.webhook
        provider = resolved.provider.name
        if spec is None:
            raise FailedPrecondition(f"provider {provider} does not call back (its profile has no webhook)")
        secret = await self._webhook_secrets.get(resolved.provider.id)
        try:
            task_id, verified = await verify_callback(
                spec, secret, dict(request.headers), request.body, keys=self._jwks
            )
        except CallbackRefused as exc:
            CALLBACKS.labels(provider, "refused").inc()
            logger.warning("provider callback refused: %s", exc, extra={"provider": provider})
            raise
        CALLBACKS.labels(provider, "verified" if verified else "unsigned").inc()
        return provider_adapter_pb2.VerifyCallbackResponse(
            task_id=task_id, verified=verified, provider=provider
        )
