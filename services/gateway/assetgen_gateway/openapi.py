"""The OpenAPI 3.1 document and the route table of the HTTP API, generated — never kept by hand.

Both come from the route table the gateway itself serves (``routes``: the protos' ``google.api.http``
annotations and the hand-routed upload, event-stream and WebSocket paths) and the request/response
message descriptors under ``assetgen_runtime.codec``'s JSON rules.

``python -m assetgen_gateway.openapi routes > services/gateway/ROUTES.md`` regenerates the route
table; ``python -m assetgen_gateway.openapi json`` prints the document.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from assetgen.v1 import common_pb2, gateway_pb2
from assetgen_gateway.access import REQUIRED_SCOPE
from assetgen_gateway.api import IDEMPOTENCY_KEY_CHARS, IDEMPOTENCY_KEY_MAX
from assetgen_gateway.message_schemas import MessageSchemas
from assetgen_gateway.routes import (
    ASSET_EVENTS_PATH,
    BOX_EVENTS_PATH,
    BOX_WEBSOCKET_PATH,
    CALLBACK_PATH,
    HEALTHZ_PATH,
    OPEN_PATHS,
    OPENAPI_PATH,
    READYZ_PATH,
    UPLOAD_PATH,
    HttpRoute,
    http_routes,
)

__all__ = ["Operation", "build_openapi", "operations", "routes_markdown"]

_PATH_PARAM = re.compile(r"\{(\w+)\}")
_ERROR_RESPONSES = {
    "400": "Invalid argument (bad JSON, unknown field, failed validation).",
    "401": "Missing, unknown or revoked bearer token (or an expired or misplaced watch token).",
    "402": "Budget exceeded: the estimate would take the project's or box's spend past its budget.",
    "403": "The key lacks the scope this needs (read, write or admin).",
    "404": "No such resource.",
    "409": "Conflict: already exists, or not allowed in the resource's current state.",
    "429": "Rate limited.",
    "503": "A dependency is unavailable; retry.",
    "504": "A dependency did not answer in time.",
    "500": "Internal error (details are logged, never returned).",
}
_STREAM_AUTH: list[dict[str, list[str]]] = [{"bearer": []}, {"queryToken": []}]


@dataclass(frozen=True)
class Operation:
    """One HTTP operation the gateway serves: method, path template, and its OpenAPI operation."""

    method: str
    path: str
    summary: str
    spec: dict[str, Any]
    source: str = "-"


def _words(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).capitalize()


def _path_parameter(name: str, description: str = "") -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        **({"description": description} if description else {}),
    }


def _responses(success: str, body: dict[str, Any], *codes: str) -> dict[str, Any]:
    responses: dict[str, Any] = {success: body}
    for code in ("400", "401", "403", *codes, "429", "500", "503", "504"):
        responses[code] = {"$ref": f"#/components/responses/E{code}"}
    return responses


def _rpc_operation(route: HttpRoute, schemas: MessageSchemas) -> Operation:
    request = route.rpc.input_type
    path_names = _PATH_PARAM.findall(route.path)
    parameters = [_path_parameter(name) for name in path_names]
    spec: dict[str, Any] = {"operationId": route.rpc.name, "summary": _words(route.rpc.name)}
    if route.body == "*":
        spec["requestBody"] = {
            "required": False,
            "content": {
                "application/json": {
                    "schema": schemas.message(request, skip=frozenset(path_names), nullable=True)
                }
            },
        }
    else:
        for field in request.fields:
            if field.name in path_names or field.is_repeated or field.type == FieldDescriptor.TYPE_MESSAGE:
                continue
            name, schema = schemas.field(field)
            parameters.append({"name": name, "in": "query", "required": False, "schema": schema})
    if parameters:
        spec["parameters"] = parameters
    if route.rpc.name == "Generate":
        spec["parameters"] = [
            *spec.get("parameters", []),
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {
                    "type": "string",
                    "maxLength": IDEMPOTENCY_KEY_MAX,
                    "pattern": f"^{IDEMPOTENCY_KEY_CHARS}*$",
                },
                "description": "A retry with the same key returns the first asset instead of a new one.",
            },
        ]
    success = {
        "description": _words(route.rpc.output_type.name),
        "content": {"application/json": {"schema": schemas.ref(route.rpc.output_type)}},
    }
    spend = ("402",) if route.rpc.name in ("Generate", "RetryAsset") else ()
    spec["responses"] = _responses(str(route.success_status), success, *spend, "404", "409")
    return Operation(route.method, route.path, spec["summary"], spec, f"rpc {route.rpc.name}")


def _hand_operations(schemas: MessageSchemas) -> list[Operation]:
    stream_parameters = [
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": "Resume after this event id (EventSource sends it by itself on reconnect).",
        },
        {
            "name": "after_sequence",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 0},
            "description": "Resume after this event id; 0 or absent starts with the current state.",
        },
    ]

    def sse(path: str, param: str, summary: str, description: str) -> Operation:
        spec: dict[str, Any] = {
            "operationId": "Watch" + ("Box" if param == "box_id" else "Asset") + "Events",
            "summary": summary,
            "description": description
            + " Each event is `id: <sequence>`, `event: asset`, `data: <AssetEvent JSON>`; "
            "comment lines keep idle connections open.",
            # Only a box's stream takes a watch token in the URL.
            "security": _STREAM_AUTH if param == "box_id" else [{"bearer": []}],
            "parameters": [_path_parameter(param), *stream_parameters],
            "responses": _responses(
                "200",
                {
                    "description": "A Server-Sent Events stream of AssetEvent.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "404",
            ),
        }
        return Operation("GET", path, summary, spec, "rpc " + spec["operationId"].removesuffix("Events"))

    upload: dict[str, Any] = {
        "operationId": "UploadFile",
        "summary": "Upload a file into a box",
        "description": "The bytes decide the media type; only images and videos are accepted.",
        "parameters": [_path_parameter("box_id")],
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "contentMediaType": "application/octet-stream"}
                        },
                        "required": ["file"],
                    }
                }
            },
        },
        "responses": _responses(
            "201",
            {
                "description": "The UPLOADED asset.",
                "content": {"application/json": {"schema": schemas.ref(common_pb2.Asset.DESCRIPTOR)}},
            },
            "404",
            "413",
            "415",
        ),
    }
    websocket: dict[str, Any] = {
        "operationId": "WatchBoxWebSocket",
        "summary": "Follow a box over a WebSocket",
        "description": "After the upgrade each text message is one AssetEvent as JSON (see the schema); "
        "`?after_sequence=` resumes after an event id.",
        "security": _STREAM_AUTH,
        "parameters": [_path_parameter("box_id"), stream_parameters[1]],
        "responses": {
            "101": {"description": "Switching to the WebSocket protocol; messages are AssetEvent JSON."},
            **_responses("200", {"description": "Not returned: the connection is upgraded."}, "404"),
        },
    }
    websocket["responses"].pop("200")
    callback: dict[str, Any] = {
        "operationId": "ProviderCallback",
        "summary": "Where providers call back",
        "description": "Not for API clients: the URL (with its token) is given to a provider with each "
        "task. A verified callback makes the task be polled at once; it never completes an asset itself.",
        "security": [],
        "parameters": [_path_parameter("token")],
        "requestBody": {"content": {"*/*": {"schema": {}}}},
        "responses": _responses(
            "200",
            {
                "description": "Taken: the task is polled now, or the callback repeats one already acted on.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "404",
            "413",
        ),
    }
    health: dict[str, Any] = {
        "security": [],
        "responses": {
            "200": {
                "description": "Serving.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }
    ready: dict[str, Any] = {
        "security": [],
        "responses": {
            **health["responses"],
            "503": {"description": "Starting: dependencies not connected yet."},
        },
    }
    openapi: dict[str, Any] = {
        "security": [],
        "responses": {
            "200": {
                "description": "This document.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    }
    return [
        Operation("POST", UPLOAD_PATH, upload["summary"], upload, "rpc Upload (multipart)"),
        sse(
            BOX_EVENTS_PATH,
            "box_id",
            "Follow a box's assets (Server-Sent Events)",
            "The current state of every asset first, then each change; the stream stays open.",
        ),
        sse(
            ASSET_EVENTS_PATH,
            "asset_id",
            "Follow one asset (Server-Sent Events)",
            "The asset's current state first, then each change; the stream ends after a terminal status.",
        ),
        Operation("GET", BOX_WEBSOCKET_PATH, websocket["summary"], websocket, "rpc WatchBox (WebSocket)"),
        Operation(
            "POST", CALLBACK_PATH, callback["summary"], callback, "provider callback (CallbackService)"
        ),
        Operation(
            "GET", HEALTHZ_PATH, "Liveness", {"operationId": "Healthz", "summary": "Liveness", **health}
        ),
        Operation(
            "GET", READYZ_PATH, "Readiness", {"operationId": "Readyz", "summary": "Readiness", **ready}
        ),
        Operation(
            "GET",
            OPENAPI_PATH,
            "This OpenAPI document",
            {"operationId": "OpenApi", "summary": "This OpenAPI document", **openapi},
        ),
    ]


def operations(schemas: MessageSchemas | None = None) -> list[Operation]:
    """Every HTTP operation the gateway serves, the RPC routes first, in declaration order."""
    schemas = schemas or MessageSchemas()
    return [_rpc_operation(route, schemas) for route in http_routes()] + _hand_operations(schemas)


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the HTTP API."""
    schemas = MessageSchemas()
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations(schemas):
        paths.setdefault(operation.path, {})[operation.method.lower()] = operation.spec
    schemas.ref(gateway_pb2.AssetEvent.DESCRIPTOR)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AssetGen API",
            "version": "v1",
            "description": "Generate images and videos with any AI provider and keep them as assets. "
            "Every path also answers with a trailing slash. The same API is served over gRPC "
            "(assetgen.v1.GatewayService).",
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "An API token."},
                "queryToken": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "A watch token (POST /api/boxes/{box_id}/watch-token) as ?token=, "
                    "on that box's events and WebSocket only; API keys are refused in URLs.",
                },
            },
            "responses": {
                f"E{code}": {
                    "description": text,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                }
                for code, text in {
                    **_ERROR_RESPONSES,
                    "413": "Too large.",
                    "415": "Unsupported media type.",
                }.items()
            },
        },
    }


def routes_markdown() -> str:
    """The route table of services/gateway/ROUTES.md."""
    lines = [
        "# HTTP routes of the gateway",
        "",
        "Generated from the gateway's own route list by "
        "`python -m assetgen_gateway.openapi routes > services/gateway/ROUTES.md`; a test fails when "
        "it is out of date. Every path also answers with a trailing slash. The full description is the "
        f"OpenAPI 3.1 document served at `{OPENAPI_PATH}`.",
        "",
        "| Method | Path | What | Served by | Auth (scope) |",
        "|---|---|---|---|---|",
    ]
    for operation in operations():
        spec = operation.spec
        if operation.path in OPEN_PATHS:
            auth = "none"
        elif operation.path == CALLBACK_PATH:
            auth = "the path's token and the provider's signature"
        elif spec.get("security") == _STREAM_AUTH:
            auth = "bearer or watch `?token=`"
        else:
            auth = "bearer"
        if operation.source.startswith("rpc "):
            auth += f" ({REQUIRED_SCOPE[operation.source.split()[1]].value})"
        cells = [operation.method, f"`{operation.path}`", operation.summary, operation.source, auth]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Prints the route table (``routes``) or the OpenAPI document (``json``)."""
    what = (sys.argv[1:] if argv is None else argv) or ["json"]
    if what[0] == "routes":
        sys.stdout.write(routes_markdown())
    else:
        sys.stdout.write(json.dumps(build_openapi(), indent=2) + "\n")


if __name__ == "__main__":
    main()
