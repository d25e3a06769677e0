"""HTTP/JSON face of the GatewayService: the aiohttp app, assembled from its parts.

Every RPC route of ``routes.http_routes()`` (the protos' ``google.api.http`` annotations) is served
here; path parameters, the query string and the JSON body fill the request message through
``assetgen_runtime.codec``. The hand-routed upload (``upload``) and live-status streams
(``streams``) reach the same servicer; ``middleware`` wraps them all.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from google.protobuf.message import Message

from assetgen.v1 import gateway_pb2
from assetgen_gateway.access import authorized, current_caller
from assetgen_gateway.api import GatewayApi, MetadataContext
from assetgen_gateway.auth import Authenticator, TokenSet
from assetgen_gateway.callback_route import callback_handler
from assetgen_gateway.console import add_console
from assetgen_gateway.middleware import (
    auth_middleware,
    cors_middleware,
    errors_middleware,
    metrics_middleware,
)
from assetgen_gateway.openapi import build_openapi
from assetgen_gateway.request_text import refuse_nul_characters
from assetgen_gateway.responses import json_response
from assetgen_gateway.routes import (
    ASSET_EVENTS_PATH,
    BOX_EVENTS_PATH,
    BOX_WEBSOCKET_PATH,
    CALLBACK_PATH,
    HEALTHZ_PATH,
    OPENAPI_PATH,
    READYZ_PATH,
    UPLOAD_PATH,
    HttpRoute,
    http_routes,
    served_paths,
)
from assetgen_gateway.streams import sse_handler, websocket_handler
from assetgen_gateway.upload import upload_handler
from assetgen_gateway.watch_tokens import WatchTokenSigner
from assetgen_runtime.codec import message_from_json, message_to_json
from assetgen_runtime.errors import InvalidArgument, TooLarge
from assetgen_runtime.jsontext import NotAJsonObject, parse_json_object

__all__ = ["build_http_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _metadata(request: web.Request) -> MetadataContext:
    return MetadataContext((key, value) for key, value in request.headers.items())


def _rpc_handler(api: GatewayApi, route: HttpRoute, max_json_bytes: int) -> Any:
    request_class: type[Message] = getattr(gateway_pb2, route.rpc.input_type.name)
    call = getattr(api, route.rpc.name)

    async def handle(request: web.Request) -> web.Response:
        values: dict[str, Any] = {}
        if route.body == "*":
            if request.content_length and request.content_length > max_json_bytes:
                raise TooLarge(f"request body is larger than {max_json_bytes} bytes")
            try:
                values.update(parse_json_object(await request.read(), "request body", blank={}))
            except NotAJsonObject as exc:
                raise InvalidArgument(str(exc)) from None
        else:
            values.update(request.query)
        values.update(request.match_info)
        message = refuse_nul_characters(message_from_json(request_class(), values))
        response = await call(message, _metadata(request))
        return json_response(message_to_json(response), status=route.success_status)

    return handle


def _guarded(rpc: str, handler: Handler) -> Handler:
    """``handler``, run only if the request's caller has the scope ``rpc`` needs."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        with authorized(current_caller(), rpc, request.match_info.get("id", "")):
            return await handler(request)

    return guarded


def build_http_app(
    api: GatewayApi,
    tokens: TokenSet | Authenticator,
    *,
    watch_tokens: WatchTokenSigner | None = None,
    cors_origins: tuple[str, ...],
    max_json_bytes: int,
    max_upload_bytes: int,
    readiness: Callable[[], bool],
    heartbeat: float = 15.0,
    console_media_origins: tuple[str, ...] = (),
) -> web.Application:
    """The aiohttp application serving the whole public HTTP API, and the web console at ``/``.

    ``tokens`` as a bare TokenSet accepts its bootstrap tokens only (no API keys); without
    ``watch_tokens`` watch tokens are checked with a secret of this app's own.
    """
    authenticator = tokens if isinstance(tokens, Authenticator) else Authenticator(tokens, None)
    signer = watch_tokens or WatchTokenSigner(secrets.token_bytes(32), 900)
    app = web.Application(
        middlewares=[
            metrics_middleware,
            cors_middleware(cors_origins),
            errors_middleware,
            auth_middleware(authenticator, signer),
        ],
        client_max_size=max_json_bytes,
    )
    for route in http_routes():
        handler = _guarded(route.rpc.name, _rpc_handler(api, route, max_json_bytes))
        for path in served_paths(route.path):
            app.router.add_route(route.method, path, handler)
    upload = _guarded("Upload", upload_handler(api, max_upload_bytes))
    for path in served_paths(UPLOAD_PATH):
        app.router.add_post(path, upload)
    for template, rpc in ((BOX_EVENTS_PATH, "WatchBox"), (ASSET_EVENTS_PATH, "WatchAsset")):
        events = _guarded(rpc, sse_handler(api))
        for path in served_paths(template):
            app.router.add_get(path, events)
    callback = callback_handler(api.callback_stub, api.rpc_timeout)
    for path in served_paths(CALLBACK_PATH):
        app.router.add_post(path, callback)
    websocket = _guarded("WatchBox", websocket_handler(api, heartbeat))
    for path in served_paths(BOX_WEBSOCKET_PATH):
        app.router.add_get(path, websocket)

    async def healthz(request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        ready = readiness()
        return json_response({"status": "ready" if ready else "starting"}, status=200 if ready else 503)

    document = json.dumps(build_openapi(), ensure_ascii=False).encode()

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get(HEALTHZ_PATH, healthz)
    app.router.add_get(READYZ_PATH, readyz)
    app.router.add_get(OPENAPI_PATH, openapi)
    add_console(app, media_origins=console_media_origins)
    return app
