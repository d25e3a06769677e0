"""Signed events out: a project's webhook endpoints and their Standard Webhooks deliveries, through the
real stack over HTTP.

Deliveries are checked with the ``standardwebhooks`` library (the spec's reference implementation),
never with our own signing code; the retry schedule is shortened to seconds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from standardwebhooks import Webhook

from assetgen_dev.demo_provider import demo_provider
from assetgen_dev.embedded import S3Server
from assetgen_dev.stack import WholeStack, WholeStackFactory, start_stack
from assetgen_dev.testing import eventually
from assetgen_dev.webhook_receiver import Received, WebhookReceiver

PROVIDER_KEY = "webhooks-provider-key"
IMAGE_SCHEMA = {"model": "demo/image", "input": {"prompt": "{{prompt}}"}}
OVERRIDES: dict[str, object] = {
    "webhook_retry_schedule": "1s,1s,1s",
    "webhook_allowed_networks": ("127.0.0.0/8",),
}


@dataclass
class Env:
    system: WholeStack
    box: str

    @property
    def http(self) -> httpx.AsyncClient:
        return self.system.http


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    provider = demo_provider(PROVIDER_KEY, delay=0.2)
    async with whole_stack(
        tmp_path_factory.mktemp("webhooks"), fakes=[provider], orchestrator_overrides=OVERRIDES
    ) as system:
        await system.add_provider("kie", provider)
        await system.add_model("kie", "img", "IMAGE", IMAGE_SCHEMA)
        box = await system.http.post("/api/boxes/", json={"name": "hooks"})
        assert box.status_code == 201, box.text
        yield Env(system, box.json()["id"])


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver()
    await hook.start()
    yield hook
    await hook.stop()


async def _register(http: httpx.AsyncClient, url: str, **body: Any) -> dict[str, Any]:
    created = await http.post("/api/webhooks/", json={"url": url, **body})
    assert created.status_code == 201, created.text
    return dict(created.json())


async def _generate(env: Env, box: str = "", prompt: str = "a lighthouse") -> str:
    asset = await env.http.post(
        f"/api/boxes/{box or env.box}/generate/", json={"model": "img", "prompt": prompt}
    )
    assert asset.status_code == 202, asset.text
    return str(asset.json()["id"])


def _verified(secret: str, received: Received) -> dict[str, Any]:
    """The body of a delivery, verified by the Standard Webhooks library (raises if forged)."""
    return dict(Webhook(secret).verify(received.body, received.headers))


def _about(receiver: WebhookReceiver, asset_id: str) -> list[Received]:
    return [item for item in receiver.received if json.loads(item.body)["data"]["id"] == asset_id]


async def test_an_endpoint_is_registered_listed_changed_and_deleted(
    env: Env, receiver: WebhookReceiver
) -> None:
    created = await _register(env.http, receiver.url, events=["asset.completed"])
    assert created["secret"].startswith("whsec_") and created["enabled"] is True
    assert created["events"] == ["asset.completed"] and created["project"] == "default"
    read = await env.http.get(f"/api/webhooks/{created['id']}/")
    assert read.status_code == 200 and read.json()["secret"] == "" and read.json()["url"] == receiver.url
    listed = await env.http.get("/api/webhooks/")
    assert created["id"] in [item["id"] for item in listed.json()["items"]]
    changed = await env.http.patch(
        f"/api/webhooks/{created['id']}/",
        json={"events": ["asset.failed", "asset.canceled"], "enabled": False},
    )
    assert changed.status_code == 200, changed.text
    assert (
        changed.json()["events"] == ["asset.failed", "asset.canceled"] and changed.json()["enabled"] is False
    )
    unknown = await env.http.patch(f"/api/webhooks/{created['id']}/", json={"events": ["asset.exploded"]})
    assert unknown.status_code == 400 and "asset.exploded" in unknown.text
    assert (await env.http.delete(f"/api/webhooks/{created['id']}/")).status_code == 200
    assert (await env.http.get(f"/api/webhooks/{created['id']}/")).status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/hook",
        "http://[::1]:8080/hook",
        "ftp://x.example/",
    ],
)
async def test_a_destination_the_guard_refuses_is_400(env: Env, url: str) -> None:
    refused = await env.http.post("/api/webhooks/", json={"url": url})
    assert refused.status_code == 400, refused.text


async def test_a_project_key_reaches_only_its_projects_endpoints(env: Env, receiver: WebhookReceiver) -> None:
    theirs = await _register(env.http, receiver.url)  # the default project's
    project = await env.http.post("/api/projects/", json={"name": "hooks-tenant"})
    assert project.status_code == 201, project.text
    keys = {}
    for scope in ("read", "write"):
        key = await env.http.post(
            "/api/keys/", json={"name": f"hooks-{scope}", "project": "hooks-tenant", "scopes": [scope]}
        )
        keys[scope] = key.json()["key"]
    base = env.system.stack.http_url
    async with (
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {keys['write']}"}) as writer,
        httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {keys['read']}"}) as reader,
    ):
        mine = await _register(writer, receiver.url, project="default")  # a project key can't pick
        assert mine["project"] == project.json()["id"]
        assert [item["id"] for item in (await writer.get("/api/webhooks/")).json()["items"]] == [mine["id"]]
        assert (await writer.get(f"/api/webhooks/{theirs['id']}/")).status_code == 404
        assert (await writer.delete(f"/api/webhooks/{theirs['id']}/")).status_code == 404
        assert (
            await writer.post("/api/webhooks/", json={"url": receiver.url, "box": env.box})
        ).status_code == 404
        assert (await reader.get("/api/webhooks/")).status_code == 403
    for endpoint in (theirs, mine):
        await env.http.delete(f"/api/webhooks/{endpoint['id']}/")


async def test_deliveries_verify_and_arrive_in_order(env: Env, receiver: WebhookReceiver) -> None:
    endpoint = await _register(env.http, receiver.url, box=env.box)
    asset_id = await _generate(env)
    await eventually(
        lambda: _async(_about(receiver, asset_id)),
        lambda got: any(json.loads(item.body)["type"] == "asset.completed" for item in got),
        what="the asset.completed delivery",
    )
    got = _about(receiver, asset_id)
    bodies = [_verified(endpoint["secret"], item) for item in got]
    types = [body["type"] for body in bodies]
    assert types.index("asset.processing") < types.index("asset.completed"), types
    completed = bodies[types.index("asset.completed")]
    assert completed["data"]["status"] == "COMPLETED" and completed["data"]["file_url"].startswith("http")
    assert completed["data"]["box"] == env.box and completed["timestamp"]
    for item in got:
        assert item.headers["webhook-signature"].startswith("v1,")
    with pytest.raises(Exception, match=r"[Ss]ignature"):  # the library does check: a changed body fails
        _verified(endpoint["secret"], Received(got[-1].headers, got[-1].body + b" ", 200))
    log = await env.http.get(f"/api/webhooks/{endpoint['id']}/deliveries/")
    entries = {item["id"]: item for item in log.json()["items"]}
    for item in got:
        entry = entries[item.headers["webhook-id"]]
        assert (
            entry["status"] == "delivered" and entry["asset"] == asset_id and entry["last_status_code"] == 200
        )
    await env.http.delete(f"/api/webhooks/{endpoint['id']}/")


async def test_a_failing_endpoint_is_retried_with_the_same_webhook_id(
    env: Env, receiver: WebhookReceiver
) -> None:
    endpoint = await _register(env.http, receiver.url, box=env.box, events=["asset.completed"])
    receiver.answer(500, 503)
    retried_before = (
        REGISTRY.get_sample_value("assetgen_webhook_deliveries_total", {"outcome": "retried"}) or 0
    )
    asset_id = await _generate(env)
    await eventually(
        lambda: _async(_about(receiver, asset_id)),
        lambda got: any(item.status == 200 for item in got),
        what="the third try to be answered 200",
    )
    tries = _about(receiver, asset_id)
    assert [item.status for item in tries] == [500, 503, 200]
    assert len({item.headers["webhook-id"] for item in tries}) == 1
    retried = REGISTRY.get_sample_value("assetgen_webhook_deliveries_total", {"outcome": "retried"}) or 0
    assert retried - retried_before == 2
    for item in tries:
        assert _verified(endpoint["secret"], item)["type"] == "asset.completed"
    log = (await env.http.get(f"/api/webhooks/{endpoint['id']}/deliveries/")).json()["items"]
    assert [(item["status"], item["attempts"], item["last_status_code"]) for item in log] == [
        ("delivered", 3, 200)
    ]
    redelivered = await env.http.post(
        f"/api/webhooks/{endpoint['id']}/deliveries/{log[0]['id']}/redeliver/", json={}
    )
    assert redelivered.status_code == 200, redelivered.text
    await eventually(
        lambda: _async(_about(receiver, asset_id)), lambda got: len(got) == 4, what="the redelivery"
    )
    assert _about(receiver, asset_id)[-1].headers["webhook-id"] == log[0]["id"]
    await env.http.delete(f"/api/webhooks/{endpoint['id']}/")


async def test_a_410_turns_the_endpoint_off(env: Env, receiver: WebhookReceiver) -> None:
    endpoint = await _register(env.http, receiver.url, box=env.box, events=["asset.completed"])
    receiver.answer(410)
    first = await _generate(env)
    read = await eventually(
        lambda: env.http.get(f"/api/webhooks/{endpoint['id']}/"),
        lambda answer: answer.json()["enabled"] is False,
        what="the endpoint to be turned off",
    )
    assert "410" in read.json()["disabled_reason"]
    assert [item.status for item in _about(receiver, first)] == [410]
    second = await _generate(env, prompt="after the 410")
    await eventually(
        lambda: env.http.get(f"/api/assets/{second}/"),
        lambda answer: answer.json()["status"] == "COMPLETED",
        what="the second asset",
    )
    log = (await env.http.get(f"/api/webhooks/{endpoint['id']}/deliveries/")).json()["items"]
    assert [(item["asset"], item["status"]) for item in log] == [(first, "failed")]
    assert _about(receiver, second) == []
    await env.http.delete(f"/api/webhooks/{endpoint['id']}/")


async def test_a_delivery_survives_a_restart_of_every_service_mid_retry(
    tmp_path: Path,
    whole_stack: WholeStackFactory,
    s3_server: S3Server,
    receiver: WebhookReceiver,
    database_url: str,
) -> None:
    """On SQLite and PostgreSQL: the delivery log and its tries are the database's."""
    provider = demo_provider(PROVIDER_KEY, delay=0.2)
    overrides = {**OVERRIDES, "webhook_retry_schedule": "4s,1s"}
    async with whole_stack(
        tmp_path, fakes=[provider], orchestrator_overrides=overrides, database_url=database_url
    ) as system:
        await system.add_provider("kie", provider)
        await system.add_model("kie", "img", "IMAGE", IMAGE_SCHEMA)
        box = (await system.http.post("/api/boxes/", json={"name": "restart"})).json()["id"]
        endpoint = await _register(system.http, receiver.url, events=["asset.completed"])
        receiver.answer(503)
        asset = await system.http.post(f"/api/boxes/{box}/generate/", json={"model": "img", "prompt": "x"})
        await eventually(lambda: _async(receiver.received), lambda got: len(got) == 1, what="the first try")
        await system.stack.stop()
        restarted = await start_stack(
            tmp_path / "stack",
            nats_url=system.nats.url,
            s3=s3_server,
            token=system.stack.token,
            orchestrator_overrides=overrides,
            database_url=database_url,
        )
        system.stack.services[:] = restarted.services  # the fixture stops what runs now
        async with httpx.AsyncClient(
            base_url=restarted.http_url, headers={"Authorization": f"Bearer {restarted.token}"}
        ) as http:
            await eventually(lambda: _async(receiver.received), lambda got: len(got) == 2, what="the retry")
            first, retry = receiver.received
            assert (first.status, retry.status) == (503, 200)
            assert first.headers["webhook-id"] == retry.headers["webhook-id"]
            body = _verified(endpoint["secret"], retry)
            assert body["data"]["id"] == asset.json()["id"] and body["type"] == "asset.completed"
            log = (await http.get(f"/api/webhooks/{endpoint['id']}/deliveries/")).json()["items"]
            assert [(item["status"], item["attempts"]) for item in log] == [("delivered", 2)]


async def _async(value: Any) -> Any:
    return value
