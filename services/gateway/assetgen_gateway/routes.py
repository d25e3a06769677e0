"""Where the HTTP API lives: path constants and the route table of the GatewayService.

The one part both the HTTP app (``http_api``) and the OpenAPI generator (``openapi``) read, so
neither imports the other. The RPC routes come from the protos' ``google.api.http`` annotations;
what the annotations can't express — multipart upload, Server-Sent Events, the WebSocket of live
status — has its path constant here and its handler in ``upload`` / ``streams``.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.api import annotations_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from assetgen.v1 import gateway_pb2

__all__ = [
    "ASSET_EVENTS_PATH",
    "BOX_EVENTS_PATH",
    "BOX_WEBSOCKET_PATH",
    "CALLBACK_PATH",
    "CALLBACK_PREFIX",
    "GATEWAY_SERVICE",
    "HEALTHZ_PATH",
    "OPENAPI_PATH",
    "OPEN_PATHS",
    "READYZ_PATH",
    "STREAM_PATHS",
    "UPLOAD_PATH",
    "HttpRoute",
    "http_routes",
    "served_paths",
]

GATEWAY_SERVICE: ServiceDescriptor = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"]
HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"
OPENAPI_PATH = "/api/openapi.json"
# The OpenAPI document is open too: it describes the API and holds no data.
OPEN_PATHS = frozenset({HEALTHZ_PATH, READYZ_PATH, OPENAPI_PATH})
# Hand-routed paths: the upload, and the live-status streams.
UPLOAD_PATH = "/api/boxes/{box_id}/upload"
BOX_EVENTS_PATH = "/api/boxes/{box_id}/events"
ASSET_EVENTS_PATH = "/api/assets/{asset_id}/events"
BOX_WEBSOCKET_PATH = "/ws/boxes/{box_id}"
# Browsers can't set headers on EventSource or WebSocket, so only these paths take ?token=: a watch
# token for that box (never an API key).
STREAM_PATHS = frozenset({BOX_EVENTS_PATH, BOX_WEBSOCKET_PATH})
# Providers call back here without a bearer token: the path's token and their signature vouch.
CALLBACK_PATH = "/api/callbacks/{token}"
CALLBACK_PREFIX = "/api/callbacks/"


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


def served_paths(template: str) -> tuple[str, str]:
    """The paths a template is served at: as declared and with a trailing slash.

    The Django routes of the REST API that AssetGen replaced answered both, and clients rely on it.
    """
    return template, template + "/"
