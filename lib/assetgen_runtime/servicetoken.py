"""The service credential: a shared secret internal services require of every caller.

Orchestrator, provider-adapter and storage serve only callers that hold ``ASSETGEN_SERVICE_TOKEN``:
:class:`ServiceTokenInterceptor` refuses a call without metadata ``x-assetgen-service-token`` equal
to it (UNAUTHENTICATED), except health checks and reflection, which probes and grpcurl use without
it. Callers attach the token with :func:`token_interceptors` on the channels they open. An empty
token turns both sides off (tests and single-process fixtures).

Everything a caller puts in metadata (the orchestrator's ``x-assetgen-project``, set by the
gateway) is trusted only because the caller holds the credential: with the token set, only
credential holders can claim a project.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

__all__ = [
    "SERVICE_TOKEN_METADATA",
    "ServiceTokenInterceptor",
    "server_interceptors",
    "token_interceptors",
]

SERVICE_TOKEN_METADATA = "x-assetgen-service-token"
# Open to every caller: liveness/readiness probes and grpcurl's service listing.
_OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")


def _refuse(context: grpc.aio.ServicerContext, *_: Any) -> Awaitable[None]:
    return context.abort(grpc.StatusCode.UNAUTHENTICATED, "service credential missing or wrong")


async def _refuse_stream(request: Any, context: grpc.aio.ServicerContext) -> None:
    await _refuse(context)


async def _refuse_unary(request: Any, context: grpc.aio.ServicerContext) -> None:
    await _refuse(context)


class ServiceTokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call but health and reflection that does not carry the service token."""

    def __init__(self, token: str) -> None:
        self._token = token.encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        if method.startswith(_OPEN_PREFIXES) or self._holds_token(handler_call_details):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        # The refusing handler must match the method's kind, or gRPC cannot call it.
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(_refuse_stream)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(_refuse_stream)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(_refuse_unary)
        return grpc.unary_unary_rpc_method_handler(_refuse_unary)

    def _holds_token(self, details: grpc.HandlerCallDetails) -> bool:
        for key, value in details.invocation_metadata or ():
            if key == SERVICE_TOKEN_METADATA:
                presented = value.encode() if isinstance(value, str) else bytes(value)
                return hmac.compare_digest(presented, self._token)
        return False


def _with_token(details: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add(SERVICE_TOKEN_METADATA, token)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(client_call_details, self._token), request_iterator)


def token_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors adding the service token to every call of a channel (none if empty)."""
    if not token:
        return []
    return [_UnaryUnary(token), _UnaryStream(token), _StreamUnary(token), _StreamStream(token)]


def server_interceptors(token: str) -> list[grpc.aio.ServerInterceptor]:
    """The interceptor an internal service's server runs with ``token`` (none if empty)."""
    return [ServiceTokenInterceptor(token)] if token else []
