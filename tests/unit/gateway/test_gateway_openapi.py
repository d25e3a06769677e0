"""The generated OpenAPI document: valid 3.1, the app's exact routes, and schemas that match codec's JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from assetgen.v1 import common_pb2, gateway_pb2
from assetgen_gateway.api import GatewayApi
from assetgen_gateway.auth import TokenSet
from assetgen_gateway.console import is_console_resource
from assetgen_gateway.http_api import build_http_app
from assetgen_gateway.openapi import build_openapi, routes_markdown
from assetgen_gateway.routes import OPENAPI_PATH, http_routes
from assetgen_runtime.codec import message_to_json

ROUTES_MD = Path(__file__).resolve().parents[3] / "services" / "gateway" / "ROUTES.md"


def _app() -> web.Application:
    api = GatewayApi(None, None, None, timeout=1, max_upload_bytes=1)  # type: ignore[arg-type]
    return build_http_app(
        api,
        TokenSet(["t"]),
        cors_origins=(),
        max_json_bytes=1024,
        max_upload_bytes=1024,
        readiness=lambda: True,
    )


def _validator(document: dict[str, Any], name: str) -> Draft202012Validator:
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    )


def test_the_document_is_valid_openapi_3_1() -> None:
    document = build_openapi()
    validate(document)
    assert document["openapi"] == "3.1.0"


def test_its_paths_are_exactly_the_apps_routes() -> None:
    served = set()
    for route in _app().router.routes():
        if route.method == "HEAD":
            continue  # aiohttp adds HEAD to every GET by itself
        if is_console_resource(route.resource):
            continue  # the web console's pages and files are not part of the API
        served.add((route.method, route.resource.canonical.rstrip("/")))  # type: ignore[union-attr]
    documented = {
        (method.upper(), path)
        for path, operations in build_openapi()["paths"].items()
        for method in operations
    }
    assert documented == served


def test_every_annotated_rpc_is_an_operation() -> None:
    operation_ids = {
        operation["operationId"]
        for operations in build_openapi()["paths"].values()
        for operation in operations.values()
    }
    assert {route.rpc.name for route in http_routes()} <= operation_ids
    assert len(operation_ids) == sum(len(ops) for ops in build_openapi()["paths"].values())


def test_routes_md_is_up_to_date() -> None:
    assert ROUTES_MD.read_text() == routes_markdown(), (
        "services/gateway/ROUTES.md is stale; regenerate it with "
        "`python -m assetgen_gateway.openapi routes > services/gateway/ROUTES.md`"
    )


def test_schemas_follow_the_codec_rules() -> None:
    document = build_openapi()
    asset = document["components"]["schemas"]["Asset"]["properties"]
    assert "config" in asset and "config_json" not in asset
    assert asset["size_bytes"]["type"] == "integer"
    assert asset["status"] == {"$ref": "#/components/schemas/AssetStatus"}
    status = document["components"]["schemas"]["AssetStatus"]
    assert "PENDING" in status["enum"] and None in status["enum"] and "UNSPECIFIED" not in status["enum"]
    generate = document["paths"]["/api/boxes/{box_id}/generate"]["post"]
    body = generate["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert "box_id" not in body and "config" in body  # the path parameter is not in the body
    listing = document["paths"]["/api/boxes/{box_id}/assets"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"box_id", "status", "source_type", "cursor"}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "Asset",
            common_pb2.Asset(
                id="ast_1",
                box="box_1",
                status=common_pb2.ASSET_STATUS_COMPLETED,
                source_type=common_pb2.SOURCE_TYPE_GENERATED,
                size_bytes=2**40,
                progress=0.5,
                config_json='{"duration": "8"}',
            ),
        ),
        ("Asset", common_pb2.Asset(id="ast_2")),
        ("Model", common_pb2.Model(name="m", model_type=common_pb2.MODEL_TYPE_VIDEO, variables=["prompt"])),
        (
            "AssetEvent",
            gateway_pb2.AssetEvent(asset_id="a", status=common_pb2.ASSET_STATUS_PENDING, sequence=3),
        ),
        ("ListBoxesResponse", gateway_pb2.ListBoxesResponse(items=[common_pb2.Box(id="b", name="n")])),
    ],
)
def test_real_json_validates_against_the_schemas(name: str, message: Any) -> None:
    if name == "ListBoxesResponse":
        message.items[0].created_at.FromSeconds(1_700_000_000)
    _validator(build_openapi(), name).validate(message_to_json(message))


def test_a_schema_rejects_json_the_codec_never_writes() -> None:
    validator = _validator(build_openapi(), "Asset")
    assert not validator.is_valid({"id": "x", "status": "ASSET_STATUS_PENDING"})
    assert not validator.is_valid({"id": "x", "config_json": "{}"})


async def test_the_document_is_served_without_a_token() -> None:
    async with TestClient(TestServer(_app())) as client:
        response = await client.get(OPENAPI_PATH)
        assert response.status == 200
        assert await response.json() == build_openapi()
        assert (await client.get("/api/boxes")).status == 401
