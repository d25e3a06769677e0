"""Projects, scoped API keys, watch tokens and limits per key, through the real stack over HTTP and gRPC.

Two projects, alpha and beta, each with a read, a write and an admin key: a project's key sees only
its project (another's box or asset is 404, lists are filtered), a missing scope is 403, a revoked
key 401; a watch token opens only its box's streams, until it expires; a key's 33rd watcher is 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import httpx
import pytest

from assetgen.v1 import gateway_pb2, gateway_pb2_grpc
from assetgen_dev.demo_provider import demo_provider
from assetgen_dev.stack import WholeStack, WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_gateway.main import GatewayService
from assetgen_gateway.main import run_server as run_gateway
from assetgen_gateway.settings import GatewaySettings

PROVIDER_KEY = "projects-provider-key"
IMAGE_SCHEMA = {"model": "demo/image", "input": {"prompt": "{{prompt}}"}}
TERMINAL = ("COMPLETED", "FAILED", "CANCELED")


@dataclass
class Project:
    """A project and an HTTP client per key of it."""

    id: str
    name: str
    keys: dict[str, str]
    key_ids: dict[str, str]

    def client(self, env: Env, scope: str) -> httpx.AsyncClient:
        return _client(env, self.keys[scope])


@dataclass
class Env:
    system: WholeStack
    alpha: Project
    beta: Project
    alpha_box: str
    alpha_asset: str

    @property
    def admin(self) -> httpx.AsyncClient:
        return self.system.http


def _client(env: Env | WholeStack, token: str) -> httpx.AsyncClient:
    system = env.system if isinstance(env, Env) else env
    return httpx.AsyncClient(
        base_url=system.stack.http_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


async def _project(system: WholeStack, name: str) -> Project:
    created = await system.http.post("/api/projects/", json={"name": name})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == name and body["id"]
    keys, key_ids = {}, {}
    for scope in ("read", "write", "admin"):
        response = await system.http.post(
            "/api/keys/", json={"name": f"{name}-{scope}", "project": name, "scopes": [scope]}
        )
        assert response.status_code == 201, response.text
        key = response.json()
        assert key["key"].startswith("agk_") and key["project"] == body["id"] and key["scopes"] == [scope]
        keys[scope], key_ids[scope] = key["key"], key["id"]
    return Project(body["id"], name, keys, key_ids)


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    provider = demo_provider(PROVIDER_KEY, delay=0.2)
    async with whole_stack(tmp_path_factory.mktemp("projects"), fakes=[provider]) as system:
        await system.add_provider("kie", provider)
        await system.add_model("kie", "img", "IMAGE", IMAGE_SCHEMA)
        alpha, beta = await _project(system, "alpha"), await _project(system, "beta")
        async with _client(system, alpha.keys["write"]) as writer:
            box = await writer.post("/api/boxes/", json={"name": "alpha's box"})
            assert box.status_code == 201, box.text
            assert box.json()["project"] == alpha.id
            asset = await writer.post(
                f"/api/boxes/{box.json()['id']}/generate/", json={"model": "img", "prompt": "x"}
            )
            assert asset.status_code == 202, asset.text
            await eventually(
                lambda: writer.get(f"/api/assets/{asset.json()['id']}/"),
                lambda answer: answer.json()["status"] in TERMINAL,
                what="the asset to finish",
            )
        yield Env(system, alpha, beta, box.json()["id"], asset.json()["id"])


async def test_a_project_key_sees_only_its_project(env: Env) -> None:
    box, asset = env.alpha_box, env.alpha_asset
    async with env.beta.client(env, "write") as beta, env.alpha.client(env, "read") as alpha:
        for path in (
            f"/api/boxes/{box}/",
            f"/api/assets/{asset}/",
            f"/api/assets/{asset}/history/",
            f"/api/boxes/{box}/assets/",
            f"/api/boxes/{box}/events/",
            f"/api/assets/{asset}/events/",
        ):
            refused = await beta.get(path)
            assert refused.status_code == 404, (path, refused.text)
            assert refused.json()["error"]
            if not path.endswith("/events/"):
                assert (await alpha.get(path)).status_code == 200, path
        generate = {"model": "img", "prompt": "x"}
        for method, path, body in (
            ("PATCH", f"/api/boxes/{box}/", {"name": "taken"}),
            ("POST", f"/api/assets/{asset}/retry/", {}),
            ("POST", f"/api/assets/{asset}/cancel/", {}),
            ("DELETE", f"/api/assets/{asset}/", None),
            ("DELETE", f"/api/boxes/{box}/", None),
            ("POST", f"/api/boxes/{box}/generate/", generate),
            ("POST", f"/api/boxes/{box}/watch-token/", {}),
        ):
            refused = await beta.request(method, path, json=body)
            assert refused.status_code == 404, (method, path, refused.text)
        upload = await beta.post(
            f"/api/boxes/{box}/upload/", files={"file": ("a.png", b"\x89PNG", "image/png")}
        )
        assert upload.status_code == 404
        # Another project's asset is no parent either.
        child = await beta.post(
            f"/api/boxes/{await _box(beta)}/generate/",
            json={"model": "img", "prompt": "y", "parent_asset": asset},
        )
        assert child.status_code == 400 and "not found" in child.json()["error"]
        listed = {
            item["id"] for item in (await beta.get("/api/boxes/", params={"page_size": 500})).json()["items"]
        }
        assert box not in listed
        assert box in {item["id"] for item in (await alpha.get("/api/boxes/")).json()["items"]}
    everything = (await env.admin.get("/api/boxes/", params={"page_size": 500})).json()["items"]
    assert {env.alpha.id, env.beta.id} <= {item["project"] for item in everything}
    async with env.beta.client(env, "admin") as beta_admin:
        # An admin key reaches every project.
        assert (await beta_admin.get(f"/api/boxes/{box}/")).status_code == 200


async def test_isolation_and_scopes_hold_over_grpc(env: Env) -> None:
    async with grpc.aio.insecure_channel(env.system.stack.grpc_address) as channel:
        api = gateway_pb2_grpc.GatewayServiceStub(channel)

        def as_key(project: Project, scope: str) -> list[tuple[str, str]]:
            return [("authorization", f"Bearer {project.keys[scope]}")]

        with pytest.raises(grpc.aio.AioRpcError) as other:
            await api.GetBox(gateway_pb2.GetBoxRequest(id=env.alpha_box), metadata=as_key(env.beta, "read"))
        assert other.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as watched:
            async for _ in api.WatchBox(
                gateway_pb2.WatchBoxRequest(box_id=env.alpha_box), metadata=as_key(env.beta, "read")
            ):
                pass
        assert watched.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as scoped:
            await api.CreateBox(gateway_pb2.CreateBoxRequest(name="no"), metadata=as_key(env.alpha, "read"))
        assert scoped.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as keys:
            await api.ListApiKeys(gateway_pb2.ListApiKeysRequest(), metadata=as_key(env.alpha, "write"))
        assert keys.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await api.ListBoxes(
                gateway_pb2.ListBoxesRequest(), metadata=[("authorization", "Bearer agk_nope")]
            )
        assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
        own = await api.GetBox(
            gateway_pb2.GetBoxRequest(id=env.alpha_box), metadata=as_key(env.alpha, "read")
        )
        assert own.project == env.alpha.id
        listed = await api.ListBoxes(gateway_pb2.ListBoxesRequest(), metadata=as_key(env.beta, "read"))
        assert env.alpha_box not in {box.id for box in listed.items}
        created = await api.CreateBox(
            gateway_pb2.CreateBoxRequest(name="over grpc"), metadata=as_key(env.beta, "write")
        )
        assert created.project == env.beta.id


async def test_each_scope_allows_what_it_names_and_no_more(env: Env) -> None:
    async with (
        env.alpha.client(env, "read") as reader,
        env.alpha.client(env, "write") as writer,
        env.alpha.client(env, "admin") as admin,
    ):
        assert (await reader.get("/api/models/")).status_code == 200
        assert (await reader.get("/api/presets/")).status_code == 200
        assert (await reader.get(f"/api/assets/{env.alpha_asset}/history/")).status_code == 200
        for method, path, body in (
            ("POST", "/api/boxes/", {"name": "no"}),
            ("DELETE", f"/api/boxes/{env.alpha_box}/", None),
            ("POST", f"/api/boxes/{env.alpha_box}/generate/", {"model": "img", "prompt": "no"}),
        ):
            refused = await reader.request(method, path, json=body)
            assert refused.status_code == 403, (method, path, refused.text)
            assert "write" in refused.json()["error"]
        refused_upload = await reader.post(
            f"/api/boxes/{env.alpha_box}/upload/", files={"file": ("a.png", b"\x89PNG", "image/png")}
        )
        assert refused_upload.status_code == 403
        for method, path, body in (
            ("GET", "/api/providers/", None),
            ("POST", "/api/models/", {"provider": "kie", "name": "m", "model_type": "IMAGE"}),
            ("GET", "/api/projects/", None),
            ("POST", "/api/keys/", {"name": "k", "project": "alpha", "scopes": ["admin"]}),
            ("GET", "/api/keys/", None),
        ):
            refused = await writer.request(method, path, json=body)
            assert refused.status_code == 403, (method, path, refused.text)
            assert "admin" in refused.json()["error"]
        box = await writer.post("/api/boxes/", json={"name": "written"})
        assert box.status_code == 201 and box.json()["project"] == env.alpha.id
        # A project's key creates boxes in its own project only; an admin names any project.
        assert (await writer.post("/api/boxes/", json={"name": "x", "project": "beta"})).status_code == 403
        assert (await writer.post("/api/boxes/", json={"name": "x", "project": "alpha"})).status_code == 201
        placed = await admin.post("/api/boxes/", json={"name": "for beta", "project": "beta"})
        assert placed.status_code == 201 and placed.json()["project"] == env.beta.id
        assert (await env.admin.post("/api/boxes/", json={"name": "plain"})).json()["project"] == "default"
        assert (await env.admin.post("/api/boxes/", json={"name": "x", "project": "nope"})).status_code == 404
        assert (await admin.get("/api/keys/")).status_code == 200


async def test_projects_are_managed_by_admins(env: Env) -> None:
    http = env.admin
    created = await http.post("/api/projects/", json={"name": "gamma"})
    assert created.status_code == 201
    project = created.json()
    assert (await http.post("/api/projects/", json={"name": "gamma"})).status_code == 409
    assert (await http.post("/api/projects/", json={"name": "Not Valid!"})).status_code == 400
    names = [item["name"] for item in (await http.get("/api/projects/")).json()["items"]]
    assert {"default", "alpha", "beta", "gamma"} <= set(names) and names == sorted(names)
    assert (await http.get(f"/api/projects/{project['id']}/")).json()["name"] == "gamma"
    assert (await http.get("/api/projects/gamma/")).json()["id"] == project["id"]
    renamed = await http.patch(f"/api/projects/{project['id']}/", json={"name": "gamma-2"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "gamma-2"
    box = await http.post("/api/boxes/", json={"name": "in gamma", "project": "gamma-2"})
    assert box.status_code == 201
    refused = await http.delete(f"/api/projects/{project['id']}/")
    assert refused.status_code == 409 and "boxes" in refused.json()["error"]
    assert (await http.delete(f"/api/boxes/{box.json()['id']}/")).status_code == 200
    assert (await http.delete(f"/api/projects/{project['id']}/")).status_code == 200
    assert (await http.get(f"/api/projects/{project['id']}/")).status_code == 404
    assert (await http.delete("/api/projects/default/")).status_code == 409


async def test_keys_are_listed_without_secrets_and_refused_once_revoked(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="assetgen.audit")
    created = await env.admin.post(
        "/api/keys/", json={"name": "ci", "project": "beta", "scopes": ["read", "write"]}
    )
    assert created.status_code == 201
    key = created.json()
    assert set(key) >= {"key", "id", "project", "scopes"} and key["scopes"] == ["read", "write"]
    assert (
        await env.admin.post("/api/keys/", json={"name": "x", "project": "beta", "scopes": ["root"]})
    ).status_code == 400
    listed = (await env.admin.get("/api/keys/")).json()["items"]
    assert key["id"] in {item["id"] for item in listed}
    assert all(not item["key"] for item in listed)
    assert key["key"] not in json.dumps(listed)
    only_beta = (await env.admin.get("/api/keys/", params={"project": "beta"})).json()["items"]
    assert {item["project"] for item in only_beta} == {env.beta.id}
    async with (
        _client(env, key["key"]) as user,
        grpc.aio.insecure_channel(env.system.stack.grpc_address) as channel,
    ):
        api = gateway_pb2_grpc.GatewayServiceStub(channel)
        metadata = [("authorization", f"Bearer {key['key']}")]
        assert (await user.get("/api/boxes/")).status_code == 200
        await api.ListBoxes(gateway_pb2.ListBoxesRequest(), metadata=metadata)
        assert (await env.admin.delete(f"/api/keys/{key['id']}/")).status_code == 200
        revoked = await user.get("/api/boxes/")
        assert revoked.status_code == 401 and revoked.json()["error"]
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.ListBoxes(gateway_pb2.ListBoxesRequest(), metadata=metadata)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    revoked_at = {
        item["id"]: item["revoked_at"] for item in (await env.admin.get("/api/keys/")).json()["items"]
    }
    assert revoked_at[key["id"]]
    assert (await env.admin.delete("/api/keys/key_missing/")).status_code == 404
    # Every admin action leaves an audit line naming the acting key, never a secret.
    lines = [record for record in caplog.records if record.name == "assetgen.audit"]
    actions = {(record.action, record.outcome) for record in lines}  # type: ignore[attr-defined]
    assert {("CreateApiKey", "ok"), ("DeleteApiKey", "ok"), ("DeleteApiKey", "not_found")} <= actions
    assert all(record.key_id.startswith("bootstrap:") for record in lines)  # type: ignore[attr-defined]
    assert env.system.stack.token not in caplog.text and key["key"] not in caplog.text


async def _box(client: httpx.AsyncClient) -> str:
    response = await client.post("/api/boxes/", json={"name": "box"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _watch_token(client: httpx.AsyncClient, box: str) -> dict[str, Any]:
    response = await client.post(f"/api/boxes/{box}/watch-token/")
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _stream_status(base_url: str, path: str, **params: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as anonymous:
        async with anonymous.stream("GET", path, params=params) as response:
            return response.status_code


async def test_a_watch_token_opens_its_box_streams_only(env: Env) -> None:
    url = env.system.stack.http_url
    async with env.alpha.client(env, "read") as reader, env.alpha.client(env, "write") as writer:
        other_box = await _box(writer)
        granted = await _watch_token(reader, env.alpha_box)
        token = granted["token"]
        assert granted["expires_at"]
        assert await _stream_status(url, f"/api/boxes/{env.alpha_box}/events/", token=token) == 200
        assert await _stream_status(url, f"/api/boxes/{other_box}/events/", token=token) == 401
        assert await _stream_status(url, f"/api/assets/{env.alpha_asset}/events/", token=token) == 401
        assert await _stream_status(url, f"/api/boxes/{env.alpha_box}/", token=token) == 401
        # Full API keys are refused in URLs, project keys and bootstrap tokens alike.
        for key in (env.alpha.keys["read"], env.system.stack.token):
            assert await _stream_status(url, f"/api/boxes/{env.alpha_box}/events/", token=key) == 401
        # The token is no bearer token either.
        async with _client(env, token) as holder:
            assert (await holder.get(f"/api/boxes/{env.alpha_box}/")).status_code == 401
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"{url}/ws/boxes/{env.alpha_box}/?token={token}") as socket:
                first = json.loads((await socket.receive(timeout=30)).data)
                assert first["box_id"] == env.alpha_box and first["snapshot"]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(f"{url}/ws/boxes/{other_box}/?token={token}")
            assert refused.value.status == 401


@contextlib.asynccontextmanager
async def _second_gateway(env: Env, **settings: Any) -> AsyncIterator[GatewayService]:
    """Another gateway replica of the same stack, with its own settings."""
    storage, adapter, orchestrator = env.system.stack.services[:3]
    gateway = await run_gateway(
        GatewaySettings(
            orchestrator_addr=f"127.0.0.1:{orchestrator.port}",
            provider_adapter_addr=f"127.0.0.1:{adapter.port}",
            storage_addr=f"127.0.0.1:{storage.port}",
            nats_url=env.system.nats.url,
            api_tokens=(env.system.stack.token,),
            **settings,
        ),
        port=0,
        http_port=0,
    )
    try:
        yield gateway
    finally:
        await gateway.stop()


async def test_an_expired_watch_token_is_refused_and_replicas_share_the_secret(env: Env) -> None:
    async with (
        _second_gateway(env, watch_token_secret="shared", watch_token_ttl_seconds=1.0) as short,
        _second_gateway(env, watch_token_secret="shared") as sibling,
    ):
        short_url, sibling_url = (
            f"http://127.0.0.1:{short.http_port}",
            f"http://127.0.0.1:{sibling.http_port}",
        )
        async with httpx.AsyncClient(
            base_url=short_url, headers={"Authorization": f"Bearer {env.alpha.keys['read']}"}, timeout=30
        ) as reader:
            token = (await _watch_token(reader, env.alpha_box))["token"]
        path = f"/api/boxes/{env.alpha_box}/events/"
        assert await _stream_status(sibling_url, path, token=token) == 200
        await eventually(
            lambda: _stream_status(short_url, path, token=token),
            lambda status: status == 401,
            timeout=10,
            what="the watch token to expire",
        )
        assert await _stream_status(sibling_url, path, token=token) == 401


async def test_the_33rd_watcher_of_a_key_is_refused(env: Env) -> None:
    created = await env.admin.post(
        "/api/keys/", json={"name": "many", "project": "alpha", "scopes": ["read"]}
    )
    key = created.json()["key"]
    path = f"/api/boxes/{env.alpha_box}/events/"
    async with contextlib.AsyncExitStack() as streams, _client(env, key) as watcher:
        for _ in range(32):
            response = await streams.enter_async_context(watcher.stream("GET", path))
            assert response.status_code == 200
        refused = await watcher.get(path)
        assert refused.status_code == 429 and "ASSETGEN_MAX_WATCHERS_PER_KEY" in refused.json()["error"]
        async with grpc.aio.insecure_channel(env.system.stack.grpc_address) as channel:
            api = gateway_pb2_grpc.GatewayServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as exhausted:
                async for _ in api.WatchBox(
                    gateway_pb2.WatchBoxRequest(box_id=env.alpha_box),
                    metadata=[("authorization", f"Bearer {key}")],
                ):
                    pass
            assert exhausted.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        # Another key is not affected.
        async with env.alpha.client(env, "read") as other:
            async with other.stream("GET", path) as response:
                assert response.status_code == 200

    # Closed streams free their places (each is noticed at its next write, a heartbeat at the latest).
    async def one_more() -> int:
        async with _client(env, key) as watcher, watcher.stream("GET", path) as response:
            return response.status_code

    await eventually(one_more, lambda status: status == 200, timeout=60, interval=0.5, what="a free place")


async def test_uploads_in_flight_per_key_are_limited(env: Env) -> None:
    async with _second_gateway(env, max_uploads_per_key=1) as gateway:
        release = asyncio.Event()
        authorization = f"Bearer {env.alpha.keys['write']}"

        async def held_upload() -> AsyncIterator[gateway_pb2.UploadRequest]:
            metadata = gateway_pb2.UploadMetadata(
                box_id=env.alpha_box, filename="a.png", content_type="image/png"
            )
            yield gateway_pb2.UploadRequest(metadata=metadata)
            await release.wait()

        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{gateway.port}") as channel,
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{gateway.http_port}",
                headers={"Authorization": authorization},
                timeout=30,
            ) as http,
        ):
            api = gateway_pb2_grpc.GatewayServiceStub(channel)

            def start_held() -> asyncio.Future[Any]:
                return asyncio.ensure_future(
                    api.Upload(held_upload(), metadata=[("authorization", authorization)])
                )

            async def second() -> httpx.Response:
                files = {"file": ("b.png", b"\x89PNG", "image/png")}
                return await http.post(f"/api/boxes/{env.alpha_box}/upload/", files=files)

            held = [start_held()]

            async def another_while_held() -> httpx.Response:
                if held[-1].done():  # it came while the previous probe held the place: try again
                    held.append(start_held())
                # A probe right away could take the place before the held upload reaches it.
                await asyncio.wait([held[-1]], timeout=0.5)
                return await second()

            try:
                refused = await eventually(
                    another_while_held, lambda response: response.status_code == 429, what="429"
                )
                assert "ASSETGEN_MAX_UPLOADS_PER_KEY" in refused.json()["error"]
            finally:
                release.set()
                for upload in held:
                    with contextlib.suppress(grpc.aio.AioRpcError):
                        await upload  # an empty file is no media: refused, and its place is free again
            assert (await second()).status_code != 429


async def test_asset_history_pages(env: Env) -> None:
    path = f"/api/assets/{env.alpha_asset}/history/"
    whole = (await env.admin.get(path)).json()
    assert len(whole["items"]) >= 3 and whole["next_cursor"] == ""
    seen: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = (await env.admin.get(path, params={"page_size": 1, "cursor": cursor})).json()
        assert len(page["items"]) == 1
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == whole["items"]
    assert (await env.admin.get(path, params={"cursor": "nope"})).status_code == 400
