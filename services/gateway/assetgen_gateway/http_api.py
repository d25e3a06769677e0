"""HTTP/JSON face of the GatewayService, derived from the protos' ``google.api.http`` annotations.

Every annotated RPC becomes a route (with and without a trailing slash, as the seed's Django routes
had); path parameters, the query string and the JSON body fill the request message through
``codec``. What the annotations can't express — multipart upload, Server-Sent Events and the
WebSocket of live status — is routed here by hand, to the same servicer. Errors are
``{"error": "..."}`` with the HTTP status of their gRPC code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import BodyPartReader, web
from google.api import annotations_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from prometheus_client import Counter, Histogram

from assetgen.v1 import gateway_pb2
from assetgen_gateway.api import GatewayApi, MetadataContext
from assetgen_gateway.auth import TokenSet
from assetgen_runtime.codec import message_from_json, message_to_json
from assetgen_runtime.errors import AssetGenError, InvalidArgument, TooLarge, http_status, reason_of

__all__ = [
    "ASSET_EVENTS_PATH",
    "BOX_EVENTS_PATH",
    "BOX_WEBSOCKET_PATH",
    "OPENAPI_PATH",
    "OPEN_PATHS",
    "STREAM_PATHS",
    "UPLOAD_PATH",
    "HttpRoute",
    "build_http_app",
    "http_routes",
]

logger = logging.getLogger(__name__)

GATEWAY_SERVICE: ServiceDescriptor = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]
# The OpenAPI document is open too: it describes the API and holds no data.
OPENAPI_PATH = "/api/openapi.json"
OPEN_PATHS = frozenset({"/healthz", "/readyz", OPENAPI_PATH})
_UPLOAD_CHUNK = 1024 * 1024
# Hand-routed paths (each also with a trailing slash): the upload, and the live-status streams.
UPLOAD_PATH = "/api/boxes/{box_id}/upload"
BOX_EVENTS_PATH = "/api/boxes/{box_id}/events"
ASSET_EVENTS_PATH = "/api/assets/{asset_id}/events"
BOX_WEBSOCKET_PATH = "/ws/boxes/{box_id}"
STREAM_PATHS = frozenset({BOX_EVENTS_PATH, ASSET_EVENTS_PATH, BOX_WEBSOCKET_PATH})
_END = object()
_CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, Last-Event-ID"
_API_KEY = web.AppKey("api", GatewayApi)
_HEARTBEAT_KEY = web.AppKey("heartbeat", float)


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP route of an RPC: verb, path template, which part of the request the body fills."""

    method: str
    path: str
    body: str
    rpc: MethodDescriptor

    @property
    def success_status(self) -> int:
        """201 for creations, 202 for accepted work (generate), 200 otherwise."""
        if self.rpc.name in ("Generate", "RetryAsset"):
            return 202
        return 201 if self.rpc.name.startswith("Create") else 200


def http_routes(service: ServiceDescriptor = GATEWAY_SERVICE) -> list[HttpRoute]:
    """The routes the protos declare, in declaration order."""
    routes = []
    for rpc in service.methods:
        rule = rpc.GetOptions().Extensions[annotations_pb2.http]
        pattern = rule.WhichOneof("pattern")
        if pattern is None or pattern == "custom":
            continue
        routes.append(HttpRoute(method=pattern.upper(), path=getattr(rule, pattern), body=rule.body, rpc=rpc))
    return routes


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(value, ensure_ascii=False), status=status, content_type="application/json"
    )


def _metadata(request: web.Request) -> MetadataContext:
    return MetadataContext((key, value) for key, value in request.headers.items())


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
async def _metrics_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
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
async def _errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise
    except AssetGenError as exc:
        return _error(http_status(exc.code, exc.reason), exc.message)
    except grpc.aio.AioRpcError as exc:
        status = http_status(exc.code(), reason_of(exc))
        if status >= 500 and exc.code() not in (
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        ):
            logger.error("internal service error: %s %s", exc.code().name, exc.details())
            return _error(500, "internal error")
        return _error(status, exc.details() or exc.code().name.lower())
    except Exception:
        logger.exception("unhandled error serving %s %s", request.method, request.path)
        return _error(500, "internal error")


def _auth_middleware(tokens: TokenSet) -> Any:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method != "OPTIONS" and request.path not in OPEN_PATHS:
            header = request.headers.get("Authorization")
            query_token = request.query.get("token")
            if not header and query_token and _is_stream_route(request):
                header = f"Bearer {query_token}"
            tokens.check_header(header)
        return await handler(request)

    return middleware


def _is_stream_route(request: web.Request) -> bool:
    # Browsers can't set headers on EventSource or WebSocket, so only these routes take ?token=.
    resource = getattr(request.match_info.route, "resource", None)
    return resource is not None and resource.canonical.rstrip("/") in STREAM_PATHS


def _cors_middleware(origins: tuple[str, ...]) -> Any:
    allowed = set(origins)

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
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
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
        return response

    return middleware


def _rpc_handler(api: GatewayApi, route: HttpRoute, max_json_bytes: int) -> Any:
    request_class: type[Message] = getattr(gateway_pb2, route.rpc.input_type.name)
    call = getattr(api, route.rpc.name)

    async def handle(request: web.Request) -> web.Response:
        values: dict[str, Any] = {}
        if route.body == "*":
            if request.content_length and request.content_length > max_json_bytes:
                raise TooLarge(f"request body is larger than {max_json_bytes} bytes")
            raw = await request.read()
            if raw.strip():
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise InvalidArgument(f"request body is not valid JSON: {exc}") from None
                if not isinstance(body, dict):
                    raise InvalidArgument("request body must be a JSON object")
                values.update(body)
        else:
            values.update(request.query)
        values.update(request.match_info)
        message = message_from_json(request_class(), values)
        response = await call(message, _metadata(request))
        return _json(message_to_json(response), status=route.success_status)

    return handle


def _upload_handler(api: GatewayApi, max_upload_bytes: int) -> Any:
    async def handle(request: web.Request) -> web.Response:
        if request.content_length and request.content_length > max_upload_bytes + 64 * 1024:
            raise TooLarge(f"file is larger than the {max_upload_bytes} byte limit")
        if not request.content_type.startswith("multipart/"):
            raise InvalidArgument('upload must be multipart/form-data with a "file" field')
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                raise InvalidArgument('multipart body has no "file" field')
            if isinstance(part, BodyPartReader) and part.name == "file":
                break
            await part.release()

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await part.read_chunk(_UPLOAD_CHUNK):
                yield chunk

        asset = await api.upload_stream(
            request.match_info["box_id"],
            part.filename or "",
            part.headers.get("Content-Type", ""),
            chunks(),
        )
        return _json(message_to_json(asset), status=201)

    return handle


def _after_sequence(value: str | None) -> int:
    if not value:
        return 0
    try:
        sequence = int(value)
    except ValueError:
        raise InvalidArgument(f"event id must be a non-negative integer, not {value!r}") from None
    if sequence < 0:
        raise InvalidArgument(f"event id must be a non-negative integer, not {value!r}")
    return sequence


def _open_watch(api: GatewayApi, request: web.Request) -> AsyncIterator[gateway_pb2.AssetEvent | None]:
    after = _after_sequence(request.headers.get("Last-Event-ID") or request.query.get("after_sequence"))
    if "asset_id" in request.match_info:
        return api.watch_asset(request.match_info["asset_id"], after)
    return api.watch_box(request.match_info["box_id"], after)


async def _first(events: AsyncIterator[Any]) -> Any:
    """The stream's first item, so that a refusal (404, 401…) is still an ordinary JSON response."""
    try:
        return await anext(events, _END)
    except BaseException:
        await events.aclose()  # type: ignore[attr-defined]
        raise


def _sse_frame(event: gateway_pb2.AssetEvent) -> bytes:
    data = json.dumps(message_to_json(event), ensure_ascii=False)
    return f"id: {event.sequence}\nevent: asset\ndata: {data}\n\n".encode()


async def _sse_handler(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``id`` is the stream sequence, so EventSource's reconnect resumes exactly."""
    api: GatewayApi = request.app[_API_KEY]
    events = _open_watch(api, request)
    item = await _first(events)
    if item is _END:
        # Nothing will ever come (resumed after the terminal event): 204 tells EventSource to stop.
        return web.Response(status=204)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    try:
        while item is not _END:
            await response.write(b": keep-alive\n\n" if item is None else _sse_frame(item))
            item = await anext(events, _END)
    except ConnectionError:
        pass  # the client went away
    except AssetGenError as exc:
        # Headers are gone; the error travels as an event and the client's reconnect retries.
        await response.write(f"event: error\ndata: {json.dumps({'error': exc.message})}\n\n".encode())
    except Exception:
        logger.exception("event stream failed")
        await response.write(b'event: error\ndata: {"error": "internal error"}\n\n')
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    return response


async def _websocket_handler(request: web.Request) -> web.StreamResponse:
    """A WebSocket sending each event as a JSON text message; ``?after_sequence=`` resumes."""
    api: GatewayApi = request.app[_API_KEY]
    events = _open_watch(api, request)
    item = await _first(events)
    socket = web.WebSocketResponse(heartbeat=request.app[_HEARTBEAT_KEY])
    await socket.prepare(request)

    async def pump() -> None:
        current = item
        try:
            while current is not _END:
                if current is not None:
                    await socket.send_str(json.dumps(message_to_json(current), ensure_ascii=False))
                current = await anext(events, _END)
        except ConnectionError:
            pass  # the client went away
        except AssetGenError as exc:
            await socket.send_str(json.dumps({"error": exc.message}))
        except Exception:
            logger.exception("event WebSocket failed")
            await socket.send_str(json.dumps({"error": "internal error"}))
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            await socket.close()

    sender = asyncio.create_task(pump())
    try:
        async for _message in socket:
            pass  # nothing to read from clients; the loop ends when they close
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await sender
    return socket


def build_http_app(
    api: GatewayApi,
    tokens: TokenSet,
    *,
    cors_origins: tuple[str, ...],
    max_json_bytes: int,
    max_upload_bytes: int,
    readiness: Callable[[], bool],
    heartbeat: float = 15.0,
) -> web.Application:
    """The aiohttp application serving the whole public HTTP API."""
    app = web.Application(
        middlewares=[
            _metrics_middleware,
            _cors_middleware(cors_origins),
            _errors_middleware,
            _auth_middleware(tokens),
        ],
        client_max_size=max_json_bytes,
    )
    for route in http_routes():
        handler = _rpc_handler(api, route, max_json_bytes)
        for path in (route.path, route.path + "/"):
            app.router.add_route(route.method, path, handler)
    upload = _upload_handler(api, max_upload_bytes)
    for path in (UPLOAD_PATH, UPLOAD_PATH + "/"):
        app.router.add_post(path, upload)
    app[_API_KEY] = api
    app[_HEARTBEAT_KEY] = heartbeat
    for template in (BOX_EVENTS_PATH, ASSET_EVENTS_PATH):
        for path in (template, template + "/"):
            app.router.add_get(path, _sse_handler)
    for path in (BOX_WEBSOCKET_PATH, BOX_WEBSOCKET_PATH + "/"):
        app.router.add_get(path, _websocket_handler)

    async def healthz(request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ready = readiness()
        return _json({"status": "ready" if ready else "starting"}, status=200 if ready else 503)

    # Imported here: the document is generated from this module's routes.
    from assetgen_gateway.openapi import build_openapi

    document = json.dumps(build_openapi(), ensure_ascii=False).encode()

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get(OPENAPI_PATH, openapi)
    return app
