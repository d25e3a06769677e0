"""The gateway's HTTP edges that need no backend: CORS, auth before routing, body limits, health."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from assetgen_gateway.api import GatewayApi
from assetgen_gateway.auth import TokenSet
from assetgen_gateway.http_api import build_http_app

ALLOWED = "https://studio.example"


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    api = GatewayApi(None, None, None, timeout=1, max_upload_bytes=1024)  # type: ignore[arg-type]
    app = build_http_app(
        api,
        TokenSet(["secret-token"]),
        cors_origins=(ALLOWED,),
        max_json_bytes=64,
        max_upload_bytes=1024,
        readiness=lambda: True,
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_preflight_from_an_allowed_origin_needs_no_token(client: TestClient) -> None:
    response = await client.options(
        "/api/boxes/", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"}
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


async def test_other_origins_get_no_cors_headers(client: TestClient) -> None:
    response = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    allowed = await client.get("/healthz", headers={"Origin": ALLOWED})
    assert allowed.headers["Access-Control-Allow-Origin"] == ALLOWED


async def test_errors_carry_cors_headers_too(client: TestClient) -> None:
    response = await client.get("/api/boxes/", headers={"Origin": ALLOWED})
    assert response.status == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED


async def test_a_json_body_over_the_limit_is_413(client: TestClient) -> None:
    response = await client.post(
        "/api/boxes/",
        data=b'{"name": "' + b"x" * 200 + b'"}',
        headers={"Authorization": "Bearer secret-token"},
    )
    assert response.status == 413
    assert "larger than 64 bytes" in (await response.json())["error"]


async def test_probes_are_open(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
