"""The adapter's part in provider callbacks: checking one, and keeping providers' webhook secrets.

Mixed into the ``ProviderAdapterServicer``, which sets these attributes. A callback is checked
against its model's profile (``webhook`` section) and its provider's secret; the answer names the
task, and the caller (the orchestrator) decides what follows: a poll, never a result.
"""

from __future__ import annotations

import json
import logging
import time

import grpc
from prometheus_client import Counter

from assetgen.v1 import provider_adapter_pb2
from assetgen_provider_adapter.callbacks import CALLBACK_MARK, CallbackRefused, JwksCache, verify_callback
from assetgen_provider_adapter.catalog import Catalog, ResolvedModel
from assetgen_provider_adapter.engine import ProviderEngine, handle_variables
from assetgen_provider_adapter.paths import evaluate
from assetgen_provider_adapter.webhook_secrets import WebhookSecrets
from assetgen_runtime.errors import AssetGenError, FailedPrecondition, InvalidArgument, Unavailable

__all__ = ["CALLBACKS", "CallbackRpcs"]

logger = logging.getLogger(__name__)

_TOLD_SECRET_TTL = 3600.0

CALLBACKS = Counter(
    "assetgen_provider_callbacks_total",
    "Provider callbacks checked, by provider and outcome: verified (signature checked), unsigned "
    "(the profile's callbacks carry none), handshake (a challenge echoed) or refused.",
    ["provider", "outcome"],
)


class CallbackRpcs:
    """VerifyCallback; mixed into the servicer."""

    _catalog: Catalog
    _engine: ProviderEngine
    _webhook_secrets: WebhookSecrets | None
    _jwks: JwksCache | None

    async def _provider_secret(self, resolved: ResolvedModel) -> str:
        """The webhook secret the provider tells (its profile's ``verify.secret_url``), kept an hour."""
        spec = resolved.target.profile.webhook
        assert spec is not None and spec.secret_request is not None
        cache: dict[str, tuple[float, str]] = self.__dict__.setdefault("_told_secrets", {})
        cached = cache.get(resolved.provider.id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            document = await self._engine.fetch_document(resolved.target, spec.secret_request)
        except AssetGenError as exc:
            logger.warning("could not ask the provider for its webhook secret: %s", exc)
            return ""
        found = evaluate(spec.secret_path, document) if spec.secret_path is not None else document
        secret = found if isinstance(found, str) else ""
        cache[resolved.provider.id] = (time.monotonic() + _TOLD_SECRET_TTL, secret)
        return secret

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
        if not secret and spec.secret_request is not None:
            secret = await self._provider_secret(resolved)
        try:
            checked = await verify_callback(
                spec, secret, dict(request.headers), request.body, keys=self._jwks
            )
        except CallbackRefused as exc:
            CALLBACKS.labels(provider, "refused").inc()
            logger.warning("provider callback refused: %s", exc, extra={"provider": provider})
            raise
        if checked.reply:
            CALLBACKS.labels(provider, "handshake").inc()
        else:
            CALLBACKS.labels(provider, "verified" if checked.verified else "unsigned").inc()
        return provider_adapter_pb2.VerifyCallbackResponse(
            task_id=checked.task_id,
            verified=checked.verified,
            provider=provider,
            reply=checked.reply,
            passed_over=checked.passed_over,
            handle_json=_adopted_handle(resolved, request.variables_json),
        )


def _adopted_handle(resolved: ResolvedModel, variables_json: str) -> str:
    """The handle of a task adopted by its callback: what the submit's own answer would have kept."""
    if not variables_json:
        return ""
    try:
        variables = json.loads(variables_json)
    except ValueError:
        raise InvalidArgument("variables_json is not JSON") from None
    if not isinstance(variables, dict):
        raise InvalidArgument("variables_json is not a JSON object")
    kept = handle_variables(resolved.target.profile, variables, resolved.model.api_endpoint)
    return json.dumps({**kept, CALLBACK_MARK: 1})
