"""The web console as the gateway serves it: open pages with a strict policy, versioned files cached
for long, and the API behind them unchanged (still asking for a token)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from assetgen_gateway.api import GatewayApi
from assetgen_gateway.auth import TokenSet
from assetgen_gateway.console import CONSOLE_DIR, content_security_policy, load_console_files
from assetgen_gateway.http_api import build_http_app

MEDIA_ORIGIN = "https://files.example"


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    api = GatewayApi(None, None, None, timeout=1, max_upload_bytes=1024)  # type: ignore[arg-type]
    app = build_http_app(
        api,
        TokenSet(["secret-token"]),
        cors_origins=(),
        max_json_bytes=1024,
        max_upload_bytes=1024,
        readiness=lambda: True,
        console_media_origins=(MEDIA_ORIGIN,),
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _policy(header: str) -> dict[str, list[str]]:
    return {name: values for name, *values in (part.split() for part in header.split(";"))}


@pytest.mark.parametrize("path", ["/", "/boxes", "/boxes/abc123", "/boxes/abc123/", "/admin"])
async def test_every_page_is_the_console_without_a_token(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 200
    assert response.content_type == "text/html"
    assert response.headers["Cache-Control"] == "no-cache"
    assert '<script type="module"' in await response.text()


async def test_pages_name_the_current_version_of_the_files(client: TestClient) -> None:
    page = await (await client.get("/")).text()
    version = load_console_files().version
    scripts = re.findall(r'src="(/console/[^"]+)"', page)
    assert scripts == [f"/console/{version}/app.js"]
    response = await client.get(scripts[0])
    assert response.status == 200
    assert response.content_type == "text/javascript"
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "__CONSOLE_VERSION__" not in page


async def test_a_file_of_another_version_is_served_but_not_kept(client: TestClient) -> None:
    response = await client.get("/console/0123456789abcdef/app.css")
    assert response.status == 200
    assert response.content_type == "text/css"
    assert response.headers["Cache-Control"] == "no-cache"


async def test_an_unknown_file_is_404(client: TestClient) -> None:
    version = load_console_files().version
    assert (await client.get(f"/console/{version}/nope.js")).status == 404


async def test_the_policy_allows_nothing_inline_or_foreign(client: TestClient) -> None:
    policy = _policy((await client.get("/boxes/x")).headers["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", MEDIA_ORIGIN]
    assert policy["media-src"] == ["'self'", MEDIA_ORIGIN]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]


def test_without_media_origins_media_may_come_from_any_web_origin() -> None:
    policy = _policy(content_security_policy(()))
    assert policy["img-src"] == ["'self'", "http:", "https:"]
    assert policy["script-src"] == ["'self'"]


def test_the_console_has_no_inline_script_or_style_and_loads_nothing_from_outside() -> None:
    for path in CONSOLE_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), f"{path.name} has an inline script"
        assert "<style" not in text and " style=" not in text, f"{path.name} has an inline style"
        assert not re.search(r"""(?:src|href|from|import)\s*=?\s*["'](?:https?:)?//""", text), (
            f"{path.name} loads something from outside"
        )


def test_every_module_the_console_imports_is_served() -> None:
    files = load_console_files().files
    for name, body in files.items():
        if name.endswith(".js"):
            for imported in re.findall(rb'from "\./([\w.-]+)"', body):
                assert imported.decode() in files, f"{name} imports {imported.decode()}, which is not served"


async def test_the_api_still_asks_for_a_token(client: TestClient) -> None:
    assert (await client.get("/api/boxes/")).status == 401
    assert (await client.get("/nothing-here")).status == 401
    assert (await client.get("/healthz")).status == 200


def test_the_files_are_package_data() -> None:
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["*"]
    suffixes = {path.suffix for path in CONSOLE_DIR.iterdir()}
    assert suffixes <= {pattern.removeprefix("*") for pattern in patterns}
