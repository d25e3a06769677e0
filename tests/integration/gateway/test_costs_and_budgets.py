"""Prices, the cost ledger, budgets and usage through the whole stack over HTTP and gRPC.

A fake Kie provider (tasks finish at once, or are held) behind an inline kie-ai profile whose
``billing.usage.amount`` reads a cost the submitted input carries (the fake echoes the input back),
so a test says what the provider reports. Prices are checked when a model is saved; a generation
shows its estimate, then its charge; failures cost nothing unless the provider charges them; a
budget refuses a generation before any asset exists (402 / RESOURCE_EXHAUSTED); usage sums the
ledger and a project's key sees its own project only.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from prometheus_client import REGISTRY

from assetgen.v1 import gateway_pb2, gateway_pb2_grpc
from assetgen_cli.main import EXIT_OK, run_cli
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs, from_input
from assetgen_dev.fake_providers.media import MediaResults
from assetgen_dev.stack import WholeStack, WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_provider_adapter.profiles import load_presets

PROVIDER_KEY = "costs-provider-key"
TERMINAL = ("COMPLETED", "FAILED", "CANCELED")
IMAGE_SCHEMA = {
    "model": "demo/image",
    "input": {"prompt": "{{prompt}}", "reported_cost": "{{reported_cost?}}", "hold": "{{hold?}}"},
}
VIDEO_SCHEMA = {
    "model": "demo/video",
    "input": {"prompt": "{{prompt}}", "duration": "{{duration}}", "resolution": "{{resolution?}}"},
}
PER_REQUEST = {"currency": "USD", "per_request": "0.10"}
PER_SECOND = {
    "currency": "USD",
    "per_second": "0.05",
    "seconds_variable": "duration",
    "table": {"variable": "resolution", "prices": {"1080p": "0.08"}},
}


def _profile(*, charges_failures: bool) -> dict[str, Any]:
    profile = copy.deepcopy(dict(load_presets()["kie-ai"].data))
    profile["name"] = "kie-billed"
    profile["billing"] = {
        "usage": {"amount": "from_json(data.param).input.reported_cost"},
        "charges_failures": charges_failures,
    }
    return profile


@dataclass
class Env:
    system: WholeStack
    fake: FakeKieJobs

    @property
    def admin(self) -> httpx.AsyncClient:
        return self.system.http

    def client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.system.stack.http_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )


@pytest.fixture(scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory) -> AsyncIterator[Env]:
    fake = FakeKieJobs(PROVIDER_KEY, timing=from_input, results=MediaResults(), polls_before_done=0)
    async with whole_stack(tmp_path_factory.mktemp("costs"), fakes=[fake]) as system:
        for name, charges in (("kie", False), ("kie-charging", True)):
            body = {
                "name": name,
                "profile": _profile(charges_failures=charges),
                "base_url": fake.base_url,
                "api_key": PROVIDER_KEY,
            }
            created = await system.http.post("/api/providers/", json=body)
            assert created.status_code == 201, created.text
        for provider, name, kind, schema, price in (
            ("kie", "img-priced", "IMAGE", IMAGE_SCHEMA, PER_REQUEST),
            ("kie", "vid-priced", "VIDEO", VIDEO_SCHEMA, PER_SECOND),
            ("kie-charging", "img-charging", "IMAGE", IMAGE_SCHEMA, PER_REQUEST),
            ("kie", "img-free", "IMAGE", IMAGE_SCHEMA, None),
        ):
            body = {"provider": provider, "name": name, "model_type": kind, "request_schema": schema}
            if price is not None:
                body["price"] = price
            created = await system.http.post("/api/models/", json=body)
            assert created.status_code == 201, created.text
        yield Env(system, fake)


async def _project(env: Env, name: str, budget: str = "") -> tuple[str, str, str, str]:
    """A project (with a budget), its write and read keys, and the write key's id."""
    body = {"name": name, **({"budget": budget} if budget else {})}
    created = await env.admin.post("/api/projects/", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["budget"] == budget
    keys, ids = [], []
    for scope in ("write", "read"):
        key = await env.admin.post(
            "/api/keys/", json={"name": f"{name}-{scope}", "project": name, "scopes": [scope]}
        )
        assert key.status_code == 201, key.text
        keys.append(key.json()["key"])
        ids.append(key.json()["id"])
    return created.json()["id"], keys[0], keys[1], ids[0]


async def _box(client: httpx.AsyncClient, **body: Any) -> str:
    created = await client.post("/api/boxes/", json={"name": "spend", **body})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _generate(
    client: httpx.AsyncClient, box: str, model: str, prompt: str = "x", **config: Any
) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "prompt": prompt}
    if config:
        body["config"] = config
    return await client.post(f"/api/boxes/{box}/generate/", json=body)


async def _finished(client: httpx.AsyncClient, asset_id: str) -> dict[str, Any]:
    answer = await eventually(
        lambda: client.get(f"/api/assets/{asset_id}/"),
        lambda response: response.json()["status"] in TERMINAL,
        what=f"asset {asset_id} to finish",
    )
    return dict(answer.json())


async def test_prices_are_checked_when_a_model_is_saved(env: Env) -> None:
    base = {"provider": "kie", "model_type": "IMAGE", "request_schema": IMAGE_SCHEMA}
    for price, reason in (
        ({"currency": "USD", "per_request": 0.1}, "decimal string"),
        ({"per_request": "0.10"}, "currency"),
        ({"currency": "USD", "per_second": "0.05"}, "seconds_variable"),
        ({"currency": "USD", "per_request": "0.10", "per_output": "0.10"}, "exactly one"),
    ):
        refused = await env.admin.post("/api/models/", json={**base, "name": "bad-price", "price": price})
        assert refused.status_code == 400, refused.text
        assert reason in refused.json()["error"]
    assert (await env.admin.get("/api/models/bad-price/")).status_code == 404
    model = await env.admin.get("/api/models/vid-priced/")
    assert model.json()["price"] == PER_SECOND
    refused = await env.admin.patch("/api/models/vid-priced/", json={"price": {"currency": "USD"}})
    assert refused.status_code == 400
    assert (await env.admin.get("/api/models/vid-priced/")).json()["price"] == PER_SECOND
    assert (await env.admin.get("/api/models/img-free/")).json()["price"] is None


async def test_generations_settle_failures_cost_nothing_and_usage_sums_the_ledger(env: Env) -> None:
    project, write_key, read_key, write_key_id = await _project(env, "spenders")
    _, other_write, _, _ = await _project(env, "others")
    async with (
        env.client(write_key) as writer,
        env.client(read_key) as reader,
        env.client(other_write) as stranger,
    ):
        box = await _box(writer)
        accepted = await _generate(writer, box, "img-priced")
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["cost"] == {"estimated": "0.10", "charged": "", "currency": "USD"}
        outcomes = {
            "plain": await _finished(writer, accepted.json()["id"]),
            "reported": await _finished(
                writer, (await _generate(writer, box, "img-priced", reported_cost="0.07")).json()["id"]
            ),
            "video": await _finished(
                writer,
                (await _generate(writer, box, "vid-priced", duration="8", resolution="1080p")).json()["id"],
            ),
            "failed": await _finished(
                writer, (await _generate(writer, box, "img-priced", "[fail]")).json()["id"]
            ),
            "charged failure": await _finished(
                writer, (await _generate(writer, box, "img-charging", "[fail]")).json()["id"]
            ),
            "free": await _finished(writer, (await _generate(writer, box, "img-free")).json()["id"]),
        }
        statuses = {name: asset["status"] for name, asset in outcomes.items()}
        assert statuses == {
            "plain": "COMPLETED",
            "reported": "COMPLETED",
            "video": "COMPLETED",
            "failed": "FAILED",
            "charged failure": "FAILED",
            "free": "COMPLETED",
        }
        costs = {name: asset["cost"] for name, asset in outcomes.items()}
        assert costs == {
            "plain": {"estimated": "0.10", "charged": "0.10", "currency": "USD"},
            "reported": {"estimated": "0.10", "charged": "0.07", "currency": "USD"},
            "video": {"estimated": "0.64", "charged": "0.64", "currency": "USD"},
            "failed": {"estimated": "0.10", "charged": "0.00", "currency": "USD"},
            "charged failure": {"estimated": "0.10", "charged": "0.10", "currency": "USD"},
            "free": None,
        }
        # A priced model needs its seconds variable to be estimated: refused before any asset exists.
        refused = await _generate(writer, box, "vid-priced")
        assert refused.status_code == 400 and "duration" in refused.json()["error"]

        usage = await reader.get("/api/usage/", params={"group_by": "model"})
        assert usage.status_code == 200, usage.text
        assert usage.json() == {
            "items": [
                {"group": "img-charging", "count": 1, "amount": "0.10", "currency": "USD"},
                {"group": "img-priced", "count": 2, "amount": "0.17", "currency": "USD"},
                {"group": "vid-priced", "count": 1, "amount": "0.64", "currency": "USD"},
            ],
            "total": "0.91",
            "currency": "USD",
        }
        today = dt.datetime.now(dt.UTC).date().isoformat()
        by_day = await env.admin.get("/api/usage/", params={"project": "spenders", "group_by": "day"})
        assert by_day.json()["items"] == [{"group": today, "count": 4, "amount": "0.91", "currency": "USD"}]
        by_key = (await reader.get("/api/usage/", params={"group_by": "key"})).json()["items"]
        assert [item["group"] for item in by_key] == [write_key_id]
        out = io.StringIO()
        environ = {"ASSETGEN_URL": env.system.stack.grpc_address, "ASSETGEN_TOKEN": read_key}
        code = await run_cli(
            ["--json", "usage", "--group-by", "model"], environ=environ, stdout=out, stderr=io.StringIO()
        )
        assert code == EXIT_OK and json.loads(out.getvalue()) == usage.json()  # the CLI says the same
        later = await reader.get("/api/usage/", params={"since": "2999-01-01"})
        assert later.json() == {"items": [], "total": "0.00", "currency": ""}
        # A project's key sees its own project: another's is not there, and its usage is empty.
        assert (await stranger.get("/api/usage/", params={"project": "spenders"})).status_code == 404
        assert (await stranger.get("/api/usage/")).json()["total"] == "0.00"
        for params in ({"group_by": "colour"}, {"since": "yesterday"}):
            assert (await reader.get("/api/usage/", params=params)).status_code == 400
    spent = REGISTRY.get_sample_value(
        "assetgen_spend_total", {"project": project, "model": "img-priced", "currency": "USD"}
    )
    assert spent == pytest.approx(0.17)


async def test_a_budget_refuses_a_generation_before_any_asset_exists(env: Env) -> None:
    _, write_key, _, _ = await _project(env, "capped", budget="0.25")
    async with env.client(write_key) as writer:
        box = await _box(writer)
        for _ in range(2):
            assert (await _generate(writer, box, "img-priced")).status_code == 202
        refused = await _generate(writer, box, "img-priced")
        assert refused.status_code == 402, refused.text
        assert refused.json()["error"] == (
            "budget exceeded: project capped has 0.05 USD remaining of 0.25, this generation needs 0.10"
        )
        assert len((await writer.get(f"/api/boxes/{box}/assets/")).json()["items"]) == 2
        async with grpc.aio.insecure_channel(env.system.stack.grpc_address) as channel:
            api = gateway_pb2_grpc.GatewayServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await api.Generate(
                    gateway_pb2.GenerateRequest(box_id=box, model="img-priced", prompt="x"),
                    metadata=[("authorization", f"Bearer {write_key}")],
                    timeout=10,
                )
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "budget exceeded" in (error.value.details() or "")
        # Unpriced models are not held back by a budget.
        assert (await _generate(writer, box, "img-free")).status_code == 202

        raised = await env.admin.patch("/api/projects/capped/", json={"budget": "1.00"})
        assert (
            raised.status_code == 200
            and raised.json()["budget"] == "1.00"
            and raised.json()["name"] == "capped"
        )
        assert (await _generate(writer, box, "img-priced")).status_code == 202
        # A box may have a budget of its own, within the project's.
        assert (await writer.patch(f"/api/boxes/{box}/", json={"budget": "0.30"})).json()["budget"] == "0.30"
        refused = await _generate(writer, box, "img-priced")
        assert refused.status_code == 402 and f"box {box} has 0.00 USD remaining" in refused.json()["error"]
        assert (await writer.patch(f"/api/boxes/{box}/", json={"budget": "lots"})).status_code == 400
        assert (await env.admin.patch("/api/projects/capped/", json={"budget": "-1"})).status_code == 400


async def test_cancelling_before_submission_releases_the_estimate(env: Env) -> None:
    _, write_key, read_key, _ = await _project(env, "cancellers", budget="0.20")
    async with env.client(write_key) as writer, env.client(read_key) as reader:
        box = await _box(writer)
        parent = await _generate(writer, box, "img-free", hold=True)  # held at the provider
        child = await writer.post(
            f"/api/boxes/{box}/generate/",
            json={"model": "img-priced", "prompt": "x", "parent_asset": parent.json()["id"]},
        )
        assert child.status_code == 202, child.text
        canceled = await writer.post(f"/api/assets/{child.json()['id']}/cancel/", json={})
        assert canceled.status_code == 200, canceled.text
        assert canceled.json()["status"] == "CANCELED"
        assert canceled.json()["cost"] == {"estimated": "0.10", "charged": "0.00", "currency": "USD"}
        assert (await reader.get("/api/usage/")).json()["total"] == "0.00"
        await writer.post(f"/api/assets/{parent.json()['id']}/cancel/", json={})


async def _processing(client: httpx.AsyncClient, asset_id: str) -> None:
    await eventually(
        lambda: client.get(f"/api/assets/{asset_id}/"),
        lambda response: response.json()["status"] == "PROCESSING",
        what=f"asset {asset_id} to be submitted",
    )


async def test_a_cancel_after_submission_is_charged_and_a_retry_must_fit_the_budget(env: Env) -> None:
    _, write_key, read_key, _ = await _project(env, "retriers", budget="0.20")
    async with env.client(write_key) as writer, env.client(read_key) as reader:
        box = await _box(writer)
        held = (await _generate(writer, box, "img-priced", hold=True)).json()["id"]
        await _processing(writer, held)
        canceled = await writer.post(f"/api/assets/{held}/cancel/", json={})
        assert canceled.json()["cost"] == {"estimated": "0.10", "charged": "0.10", "currency": "USD"}
        retried = await writer.post(f"/api/assets/{held}/retry/", json={})
        assert retried.status_code == 202, retried.text
        assert retried.json()["attempt"] == 2
        assert retried.json()["cost"] == {"estimated": "0.10", "charged": "", "currency": "USD"}
        await _processing(writer, held)
        await writer.post(f"/api/assets/{held}/cancel/", json={})
        assert (await reader.get("/api/usage/")).json()["total"] == "0.20"
        # Both attempts are charged: a third would pass the budget, refused like a generate.
        refused = await writer.post(f"/api/assets/{held}/retry/", json={})
        assert refused.status_code == 402, refused.text
        assert "remaining" in refused.json()["error"]
        assert (await writer.get(f"/api/assets/{held}/")).json()["attempt"] == 2
