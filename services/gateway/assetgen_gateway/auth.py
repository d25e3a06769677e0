"""Bearer authentication for the public API, over gRPC metadata and HTTP headers.

A bearer is one of the bootstrap tokens of the settings (``ASSETGEN_API_TOKENS``, the token file,
the one ``make run`` prints), which are ``admin``, or an API key, which the orchestrator checks
(``AccessService.AuthenticateKey``). A key's answer is cached for ``ASSETGEN_KEY_CACHE_SECONDS``: a
key revoked through this gateway is refused at once, through another replica within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc

from assetgen.v1 import orchestrator_pb2, orchestrator_pb2_grpc
from assetgen_gateway.access import Caller, authorized, use_caller
from assetgen_runtime.errors import AssetGenError, Unauthenticated, to_rpc_error
from assetgen_runtime.handlers import StreamBehavior, UnaryBehavior, rewrap
from assetgen_runtime.scopes import Scope

__all__ = ["AuthInterceptor", "Authenticator", "TokenSet", "load_tokens"]

# Probes and grpcurl's discovery must work without a token.
_OPEN_GRPC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_CACHE_MAX = 10_000


class TokenSet:
    """The bootstrap tokens; checks compare in constant time against every token."""

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


def load_tokens(tokens: Iterable[str], token_file: str) -> TokenSet:
    """Tokens from the settings plus one per line of ``token_file`` (if given)."""
    collected = list(tokens)
    if token_file:
        collected += [line.strip() for line in Path(token_file).read_text().splitlines() if line.strip()]
    return TokenSet(collected)


def bearer(authorization: str | None) -> str:
    """The token of ``Bearer <token>``; Unauthenticated when missing or of another scheme."""
    if not authorization:
        raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("invalid bearer token")
    return token.strip()


class Authenticator:
    """Turns a bearer token into its ``Caller``: bootstrap tokens here, API keys by the orchestrator."""

    def __init__(
        self,
        tokens: TokenSet,
        access: orchestrator_pb2_grpc.AccessServiceStub | None,
        *,
        cache_seconds: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        self._tokens = tokens
        self._access = access
        self._cache_seconds = cache_seconds
        self._timeout = timeout
        self._cache: dict[str, tuple[Caller | None, float]] = {}

    async def authenticate(self, authorization: str | None) -> Caller:
        """The caller presenting ``authorization``; Unauthenticated for an unknown or revoked key."""
        token = bearer(authorization)
        fingerprint = hashlib.sha256(token.encode()).hexdigest()
        if self._tokens.accepts(token):
            return Caller(key_id=f"bootstrap:{fingerprint[:12]}", project="", scopes=(Scope.ADMIN.value,))
        now = time.monotonic()
        cached = self._cache.get(fingerprint)
        if cached is not None and cached[1] > now:
            caller = cached[0]
        else:
            caller = await self._ask(token)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[fingerprint] = (caller, now + self._cache_seconds)
        if caller is None:
            raise Unauthenticated("invalid bearer token")
        return caller

    async def _ask(self, token: str) -> Caller | None:
        if self._access is None:
            return None
        try:
            key = await self._access.AuthenticateKey(
                orchestrator_pb2.AuthenticateKeyRequest(key=token), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return None
            raise
        return Caller(key_id=key.id, project=key.project, scopes=tuple(key.scopes))

    def forget_key(self, key_id: str) -> None:
        """Drops what is cached of ``key_id`` (it was revoked here), so it is refused at once."""
        for fingerprint, (caller, _) in list(self._cache.items()):
            if caller is not None and caller.key_id == key_id:
                del self._cache[fingerprint]


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every RPC but health and reflection and checks the scope it requires."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(_OPEN_GRPC_PREFIXES):
            return handler
        rpc = method.rpartition("/")[2]
        metadata = dict(handler_call_details.invocation_metadata or ())
        authorization = metadata.get("authorization")
        authenticate = self._authenticator.authenticate

        def unary(behavior: UnaryBehavior) -> UnaryBehavior:
            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    caller = await authenticate(authorization)
                except (AssetGenError, grpc.aio.AioRpcError) as exc:
                    await _abort(context, exc)
                use_caller(caller)
                try:
                    with authorized(caller, rpc, _target(request)):
                        return await behavior(request, context)
                except AssetGenError as exc:
                    await _abort(context, exc)

            return call

        def streaming(behavior: StreamBehavior) -> StreamBehavior:
            async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    caller = await authenticate(authorization)
                    with authorized(caller, rpc):
                        pass
                except (AssetGenError, grpc.aio.AioRpcError) as exc:
                    await _abort(context, exc)
                use_caller(caller)
                async for item in behavior(request, context):
                    yield item

            return call

        return rewrap(handler, unary=unary, streaming=streaming)


def _target(request: Any) -> str:
    """What an admin RPC acts on, for its audit line: the request's id or name, if it has one."""
    return str(getattr(request, "id", "") or getattr(request, "name", "") or "")


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    code, details, _ = to_rpc_error(exc)
    await context.abort(code, details)
