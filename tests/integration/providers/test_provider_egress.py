"""Provider egress over HTTP: destinations the fetch guard refuses are refused when a provider or model
is stored and when a provider's answer points there, and a stored key stays bound to its destination.

The stack allows loopback (127.0.0.0/8, where the fakes listen) and nothing else private. No test
connects beyond the machine: the guard refuses 10.x and 169.254.x before any connection is made.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web

from assetgen_dev.fake_providers.base import serve
from assetgen_dev.stack import WholeStackFactory
from assetgen_dev.testing import eventually

KEY = "egress-key"


@dataclass
class Env:
    http: httpx.AsyncClient
    kie_url: str  # a kie-shaped provider whose result redirects into 10.0.0.0/8
    replicate_url: str  # a replicate-shaped provider whose status URL is in 10.0.0.0/8


def _kie_app() -> web.Application:
    async def create_task(request: web.Request) -> web.Response:
        return web.json_response({"code": 200, "msg": "success", "data": {"taskId": "t1"}})

    async def record_info(request: web.Request) -> web.Response:
        url = f"{request.url.origin()}/files/t1.png"
        data = {
            "taskId": "t1",
            "state": "success",
            "resultJson": f'{{"resultUrls": ["{url}"]}}',
            "failCode": "",
            "failMsg": "",
        }
        return web.json_response({"code": 200, "message": "success", "data": data})

    async def result(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://10.0.0.1/t1.png")

    app = web.Application()
    app.router.add_post("/api/v1/jobs/createTask", create_task)
    app.router.add_get("/api/v1/jobs/recordInfo", record_info)
    app.router.add_get("/files/t1.png", result)
    return app


def _replicate_app() -> web.Application:
    async def predict(request: web.Request) -> web.Response:
        urls = {
            "get": "http://10.0.0.1/v1/predictions/p1",
            "cancel": "http://10.0.0.1/v1/predictions/p1/cancel",
        }
        return web.json_response({"id": "p1", "status": "starting", "urls": urls}, status=201)

    app = web.Application()
    app.router.add_post("/v1/predictions", predict)
    return app


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    kie_runner, kie_url = await serve(_kie_app())
    replicate_runner, replicate_url = await serve(_replicate_app())
    try:
        async with whole_stack(tmp_path_factory.mktemp("egress")) as system:
            yield Env(http=system.http, kie_url=kie_url, replicate_url=replicate_url)
    finally:
        await kie_runner.cleanup()
        await replicate_runner.cleanup()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def _create_provider(env: Env, base_url: str, **fields: Any) -> httpx.Response:
    body = {"name": _name("eg"), "preset": "kie-ai", "base_url": base_url, "api_key": KEY, **fields}
    return await env.http.post("/api/providers/", json=body)


@pytest.mark.parametrize(
    ("base_url", "rule"),
    [
        ("http://169.254.169.254", "base_url: 169.254.169.254 is link-local (metadata) and not allowed"),
        ("http://10.0.0.1", "base_url: 10.0.0.1 is private and not allowed"),
        ("http://[::1]:8080", "base_url: ::1 is loopback and not allowed"),
        ("http://100.64.0.7", "base_url: 100.64.0.7 is shared address space (CGNAT) and not allowed"),
        ("http://[64:ff9b::a9fe:a9fe]", "which is link-local (metadata)"),
    ],
)
async def test_provider_pointing_at_a_refused_address_is_refused(env: Env, base_url: str, rule: str) -> None:
    response = await _create_provider(env, base_url)
    assert response.status_code == 400 and rule in response.json()["error"], response.text

    provider = (await _create_provider(env, env.kie_url)).json()["name"]
    moved = await env.http.patch(f"/api/providers/{provider}/", json={"base_url": base_url, "api_key": KEY})
    assert moved.status_code == 400 and rule in moved.json()["error"], moved.text


async def test_model_endpoint_into_a_private_range_is_refused(env: Env) -> None:
    provider = (await _create_provider(env, env.kie_url)).json()["name"]
    body = {
        "provider": provider,
        "name": _name("eg-m"),
        "model_type": "IMAGE",
        "request_schema": {"model": "x", "input": {"prompt": "{{prompt}}"}},
        "api_endpoint": "http://192.168.1.20/api/v1/jobs/createTask",
    }
    response = await env.http.post("/api/models/", json=body)
    assert response.status_code == 400
    assert "api_endpoint: 192.168.1.20 is private and not allowed" in response.json()["error"]

    created = await env.http.post("/api/models/", json={**body, "api_endpoint": ""})
    assert created.status_code == 201, created.text
    patched = await env.http.patch(
        f"/api/models/{body['name']}/", json={"api_endpoint": "http://169.254.169.254/latest/meta-data"}
    )
    assert patched.status_code == 400 and "link-local (metadata)" in patched.json()["error"]


async def _generate(env: Env, model: str) -> dict[str, Any]:
    box = (await env.http.post("/api/boxes/", json={"name": "egress"})).json()["id"]
    response = await env.http.post(f"/api/boxes/{box}/generate/", json={"model": model, "prompt": "a fox"})
    assert response.status_code == 202, response.text
    asset_id = response.json()["id"]

    async def read() -> dict[str, Any]:
        return dict((await env.http.get(f"/api/assets/{asset_id}/")).json())

    return await eventually(
        read, lambda a: a["status"] in ("COMPLETED", "FAILED"), timeout=60, what="terminal"
    )


async def test_a_result_redirecting_into_a_private_address_fails_the_asset_with_the_reason(env: Env) -> None:
    provider = (await _create_provider(env, env.kie_url)).json()["name"]
    model = _name("eg-m")
    schema = {"model": "x/img", "input": {"prompt": "{{prompt}}"}}
    created = await env.http.post(
        "/api/models/",
        json={"provider": provider, "name": model, "model_type": "IMAGE", "request_schema": schema},
    )
    assert created.status_code == 201, created.text
    asset = await _generate(env, model)
    assert asset["status"] == "FAILED"
    assert "address 10.0.0.1 is private" in asset["error_message"], asset["error_message"]


async def test_a_status_url_into_a_private_address_fails_the_asset_with_the_reason(env: Env) -> None:
    created = await env.http.post(
        "/api/providers/",
        json={"name": _name("eg-r"), "preset": "replicate", "base_url": env.replicate_url, "api_key": KEY},
    )
    assert created.status_code == 201, created.text
    model = _name("eg-m")
    schema = {"version": "owner/name", "input": {"prompt": "{{prompt}}"}}
    response = await env.http.post(
        "/api/models/",
        json={
            "provider": created.json()["name"],
            "name": model,
            "model_type": "IMAGE",
            "request_schema": schema,
        },
    )
    assert response.status_code == 201, response.text
    asset = await _generate(env, model)
    assert asset["status"] == "FAILED"
    assert "address 10.0.0.1 is private" in asset["error_message"], asset["error_message"]


async def test_a_base_url_change_needs_the_key_again(env: Env) -> None:
    provider = (await _create_provider(env, env.kie_url)).json()["name"]
    elsewhere = env.kie_url.replace("127.0.0.1", "127.0.0.2")
    refused = await env.http.patch(f"/api/providers/{provider}/", json={"base_url": elsewhere})
    assert refused.status_code == 400 and "needs the API key again" in refused.json()["error"]
    assert (await env.http.get(f"/api/providers/{provider}/")).json()["base_url"] == env.kie_url

    same_origin = await env.http.patch(f"/api/providers/{provider}/", json={"base_url": env.kie_url + "/"})
    assert same_origin.status_code == 200, same_origin.text
    accepted = await env.http.patch(
        f"/api/providers/{provider}/", json={"base_url": elsewhere, "api_key": KEY}
    )
    assert accepted.status_code == 200 and accepted.json()["base_url"] == elsewhere


async def test_a_profile_sending_the_key_to_new_hosts_needs_the_key_again(env: Env) -> None:
    provider = (await _create_provider(env, env.kie_url)).json()["name"]
    profile = (await env.http.get("/api/presets/")).json()
    kie = next(item for item in profile["items"] if item["name"] == "kie-ai")
    data = kie["profile"]
    data["auth"] = {**data["auth"], "hosts": ["attacker.example"]}
    refused = await env.http.patch(f"/api/providers/{provider}/", json={"profile": data})
    assert refused.status_code == 400 and "auth.hosts" in refused.json()["error"], refused.text
    accepted = await env.http.patch(f"/api/providers/{provider}/", json={"profile": data, "api_key": KEY})
    assert accepted.status_code == 200, accepted.text


async def test_an_env_key_reference_is_bound_to_its_provider(env: Env) -> None:
    reference = f"env:ASSETGEN_PROVIDER_KEY_EGRESS_{uuid.uuid4().hex[:6].upper()}"
    first = await _create_provider(env, env.kie_url, api_key="", api_key_ref=reference)
    assert first.status_code == 201, first.text
    second = await _create_provider(env, env.kie_url, api_key="", api_key_ref=reference)
    assert second.status_code == 400 and "belongs to provider" in second.json()["error"], second.text

    other = (await _create_provider(env, env.kie_url)).json()["name"]
    taken = await env.http.patch(f"/api/providers/{other}/", json={"api_key_ref": reference})
    assert taken.status_code == 400 and "belongs to provider" in taken.json()["error"]
    again = await env.http.patch(f"/api/providers/{first.json()['name']}/", json={"api_key_ref": reference})
    assert again.status_code == 200, again.text
