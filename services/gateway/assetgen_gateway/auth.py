"""Bearer-token authentication for the public API, over gRPC metadata and HTTP headers."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import grpc

from assetgen_runtime.errors import Unauthenticated
from assetgen_runtime.handlers import rewrap

__all__ = ["AuthInterceptor", "TokenSet", "load_tokens"]

# Probes and grpcurl's discovery must work without a token.
_OPEN_GRPC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


class TokenSet:
    """The accepted API tokens; checks compare in constant time against every token."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = [token.encode() for token in tokens if token]
        if not self._tokens:
            raise ValueError("no API tokens configured (ASSETGEN_API_TOKENS or ASSETGEN_API_TOKEN_FILE)")

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is one of ours, without leaking which or how much matched."""
        candidate = token.encode()
        matched = False
        for known in self._tokens:
            matched |= hmac.compare_digest(candidate, known)
        return matched

    def check_header(self, authorization: str | None) -> None:
        """Raises Unauthenticated unless ``authorization`` is ``Bearer <accepted token>``."""
        if not authorization:
            raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not self.accepts(token.strip()):
            raise Unauthenticated("invalid bearer token")


def load_tokens(tokens: Iterable[str], token_file: str) -> TokenSet:
    """Tokens from the settings plus one per line of ``token_file`` (if given)."""
    collected = list(tokens)
    if token_file:
        collected += [line.strip() for line in Path(token_file).read_text().splitlines() if line.strip()]
    return TokenSet(collected)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every RPC but health and reflection without a valid ``authorization`` metadata."""

    def __init__(self, tokens: TokenSet) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(_OPEN_GRPC_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        try:
            self._tokens.check_header(metadata.get("authorization"))
        except Unauthenticated as exc:
            return _deny(handler, exc.message)
        return handler


def _deny(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that refuses the call before reading anything."""

    async def abort(request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    async def abort_stream(request: object, context: grpc.aio.ServicerContext):  # type: ignore[no-untyped-def]
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        yield  # pragma: no cover - makes this an async generator, as streaming handlers are

    return rewrap(handler, unary=lambda _: abort, streaming=lambda _: abort_stream)
