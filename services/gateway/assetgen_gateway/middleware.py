"""The middlewares every HTTP request passes, outermost first: metrics, CORS, errors, auth.

Auth only authenticates (the caller of the request); each route checks the scope its RPC needs.

Errors become ``{"error": "..."}`` with the HTTP status of their gRPC code (``assetgen_runtime.errors``
holds the table); internal details are logged, never returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from prometheus_client import Counter, Histogram

from assetgen_gateway.access import Caller, use_caller
from assetgen_gateway.auth import Authenticator
from assetgen_gateway.console import is_console_route
from assetgen_gateway.responses import error_response
from assetgen_gateway.routes import CALLBACK_PREFIX, OPEN_PATHS, STREAM_PATHS
from assetgen_gateway.watch_tokens import WatchTokenSigner
from assetgen_runtime.errors import AssetGenError, Unauthenticated, http_status, reason_of
from assetgen_runtime.scopes import Scope

__all__ = [
    "HTTP_LATENCY",
    "HTTP_REQUESTS",
    "auth_middleware",
    "cors_middleware",
    "errors_middleware",
    "metrics_middleware",
]

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID"
_CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"

HTTP_REQUESTS = Counter(
    "assetgen_http_requests_total",
    "HTTP requests served, by method, route and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "assetgen_http_request_seconds",
    "Time to answer an HTTP request (whole stream for events).",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts and times each request under its route template."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    # The route template, not the path: ids would make every request its own series.
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    finally:
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()
        HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - started)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turns every refusal and failure into the JSON error response."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = error_response(exc.status, exc.reason)
            # A 405 names the methods the path does answer (RFC 9110).
            if "Allow" in exc.headers:
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        raise
    except AssetGenError as exc:
        return error_response(http_status(exc.code, exc.reason), exc.message)
    except grpc.aio.AioRpcError as exc:
        status = http_status(exc.code(), reason_of(exc))
        if status >= 500 and exc.code() not in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        ):
            logger.error("internal service error: %s %s", exc.code().name, exc.details())
            return error_response(500, "internal error")
        return error_response(status, exc.details() or exc.code().name.lower())
    except Exception:
        logger.exception("unhandled error serving %s %s", request.method, request.path)
        return error_response(500, "internal error")


def auth_middleware(authenticator: Authenticator, watch_tokens: WatchTokenSigner) -> Any:
    """Authenticates every path but the open ones, the console's, and CORS preflights.

    The caller comes from the bearer header, or on a box's stream routes from a watch token in
    ``?token=``; an API key in the URL is refused, as is any ``?token=`` elsewhere.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            request.method != "OPTIONS"
            and request.path not in OPEN_PATHS
            and not request.path.startswith(CALLBACK_PREFIX)
            and not is_console_route(request)
        ):
            header = request.headers.get("Authorization")
            query_token = request.query.get("token")
            if not header and query_token:
                use_caller(_watcher(request, query_token, watch_tokens))
            else:
                use_caller(await authenticator.authenticate(header))
        return await handler(request)

    return middleware


def _watcher(request: web.Request, token: str, watch_tokens: WatchTokenSigner) -> Caller:
    """The caller a watch token in the URL stands for, on the one box it names."""
    if not _is_stream_route(request):
        raise Unauthenticated(
            "?token= takes a watch token, on a box's events and WebSocket routes only; "
            "send API keys as Authorization: Bearer"
        )
    grant = watch_tokens.verify(token, request.match_info["box_id"])
    return Caller(
        key_id=grant.key_id, project=grant.project, scopes=(Scope.READ.value,), watch_box=grant.box_id
    )


def _is_stream_route(request: web.Request) -> bool:
    resource = getattr(request.match_info.route, "resource", None)
    return resource is not None and resource.canonical.rstrip("/") in STREAM_PATHS


def cors_middleware(origins: tuple[str, ...]) -> Any:
    """Answers preflights and marks responses for the allowed origins (``*`` allows any)."""
    allowed = set(origins)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        permitted = origin and ("*" in allowed or origin in allowed)
        if request.method == "OPTIONS" and permitted:
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        if permitted:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Allow-Headers"] = _CORS_HEADERS
            response.headers["Access-Control-Allow-Methods"] = _CORS_METHODS
        return response

    return middleware
