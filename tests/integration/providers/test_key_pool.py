"""A provider's key pool through the whole stack: keys with their own concurrency share the work.

The fake Kie accepts two accounts' keys, runs at most two tasks per key (a third submission is a 429)
and shows a task only to the key that submitted it. The key the provider was created with is its
pool's first key ("default"). Twenty generations through two keys of concurrency 2 all complete,
never more than two running per key, with no 429 and every poll made with the submitting key; a key
disabled while its task runs drains: the task is still polled with it. A key the provider refuses is
disabled with an admin event; giving the provider a new key rotates its own key back into use.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import time
from typing import Any

import httpx
import nats
import pytest

from assetgen_cli.main import EXIT_OK, run_cli
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs, from_input
from assetgen_dev.fake_providers.media import MediaResults
from assetgen_dev.stack import WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_provider_adapter.profiles import load_presets

KEYS = {"a": "account-a-key", "b": "account-b-key"}


async def _finished(http: httpx.AsyncClient, asset: str) -> dict[str, Any]:
    answer = await eventually(
        lambda: http.get(f"/api/assets/{asset}/"),
        lambda response: response.json()["status"] in ("COMPLETED", "FAILED", "CANCELED"),
        timeout=60,
        what=f"asset {asset} to finish",
    )
    return dict(answer.json())


async def test_two_keys_share_the_work_within_their_limits_and_poll_their_own_tasks(
    tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory
) -> None:
    fake = FakeKieJobs(KEYS["a"], timing=from_input, results=MediaResults(), polls_before_done=0)
    fake.add_key(KEYS["b"])
    fake.per_key_limit = 2
    profile: dict[str, Any] = copy.deepcopy(dict(load_presets()["kie-ai"].data))
    profile["name"] = "kie-quick"
    profile["poll"]["interval"] = {"initial": "500ms", "backoff": 1.0, "max": "1s", "min": "500ms"}
    async with whole_stack(tmp_path_factory.mktemp("key-pool"), fakes=[fake]) as system:
        http = system.http
        body = {"name": "kie", "profile": profile, "base_url": fake.base_url, "api_key": KEYS["a"]}
        provider = await http.post("/api/providers/", json=body)
        assert provider.status_code == 201
        # The key the provider was created with is its pool's first key.
        (own,) = (await http.get("/api/providers/kie/keys/")).json()["items"]
        assert (own["id"], own["name"], own["state"], own["max_concurrency"]) == (
            f"pkey_{provider.json()['id']}",
            "default",
            "active",
            0,
        )
        limited = await http.patch(f"/api/providers/kie/keys/{own['id']}/", json={"max_concurrency": 2})
        assert limited.json()["max_concurrency"] == 2
        ids = {"a": own["id"]}
        created = await http.post(
            "/api/providers/kie/keys/", json={"name": "b", "api_key": KEYS["b"], "max_concurrency": 2}
        )
        assert created.status_code == 201, created.text
        assert KEYS["b"] not in created.text
        view = created.json()
        assert (view["name"], view["state"], view["max_concurrency"], view["in_flight"]) == (
            "b",
            "active",
            2,
            0,
        )
        ids["b"] = view["id"]
        schema = {
            "model": "demo/image",
            "input": {"prompt": "{{prompt}}", "finish_after": "{{finish_after?}}", "hold": "{{hold?}}"},
        }
        model = {"provider": "kie", "name": "img", "model_type": "IMAGE", "request_schema": schema}
        assert (await http.post("/api/models/", json=model)).status_code == 201
        box = (await http.post("/api/boxes/", json={"name": "pool"})).json()["id"]

        assets = []
        for number in range(20):
            body = {"model": "img", "prompt": f"image {number}", "config": {"finish_after": 1}}
            assets.append((await http.post(f"/api/boxes/{box}/generate/", json=body)).json()["id"])
        outcomes = [await _finished(http, asset) for asset in assets]
        assert [outcome["status"] for outcome in outcomes] == ["COMPLETED"] * 20, outcomes
        assert fake.refused_over_limit == 0  # our own limits kept every key under the provider's
        assert fake.foreign_polls == 0  # every poll went out with the key that submitted the task
        assert set(fake.peak_by_key) == set(KEYS.values())
        assert max(fake.peak_by_key.values()) <= 2
        listed = (await http.get("/api/providers/kie/keys/")).json()["items"]
        assert [(key["name"], key["in_flight"]) for key in listed] == [("default", 0), ("b", 0)]
        out = io.StringIO()
        environ = {"ASSETGEN_URL": system.stack.grpc_address, "ASSETGEN_TOKEN": system.stack.token}
        code = await run_cli(["--json", "provider-keys", "list", "kie"], environ=environ, stdout=out)
        assert code == EXIT_OK and json.loads(out.getvalue())["items"] == listed  # the CLI says the same

        # A key disabled while its task runs drains: it takes no new work, its task is still polled.
        body = {"model": "img", "prompt": "held", "config": {"hold": True}}
        held = (await http.post(f"/api/boxes/{box}/generate/", json=body)).json()["id"]
        task = await eventually(
            lambda: _submitted(fake, "held"), lambda found: found is not None, what="the held submission"
        )
        owner = next(name for name, key in KEYS.items() if key == task.owner)
        patched = await http.patch(f"/api/providers/kie/keys/{ids[owner]}/", json={"enabled": False})
        assert (patched.json()["state"], patched.json()["in_flight"]) == ("draining", 1)
        fake.release(time.time())
        assert (await _finished(http, held))["status"] == "COMPLETED"
        assert fake.foreign_polls == 0
        deleted = await http.delete(f"/api/providers/kie/keys/{ids['a']}/")
        assert deleted.status_code == 200
        assert [key["name"] for key in (await http.get("/api/providers/kie/keys/")).json()["items"]] == ["b"]
        # Giving the provider a key again brings its own key back into its pool (rotated).
        rotated = await http.patch("/api/providers/kie/", json={"api_key": KEYS["a"]})
        assert rotated.status_code == 200, rotated.text
        listed = (await http.get("/api/providers/kie/keys/")).json()["items"]
        assert (listed[0]["name"], listed[0]["state"]) == ("default", "active")


async def _submitted(fake: FakeKieJobs, prompt: str) -> Any:
    return next((task for task in fake.tasks.values() if task.prompt == prompt), None)


async def test_a_key_the_provider_refuses_is_disabled_and_the_work_moves_to_the_others(
    tmp_path_factory: pytest.TempPathFactory, whole_stack: WholeStackFactory
) -> None:
    fake = FakeKieJobs(KEYS["a"], timing=from_input, results=MediaResults(), polls_before_done=0)
    async with whole_stack(tmp_path_factory.mktemp("key-refused"), fakes=[fake]) as system:
        http = system.http
        events = await nats.connect(system.nats.url)
        announced: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

        async def on_event(message: Any) -> None:
            await announced.put(json.loads(message.data))

        await events.subscribe("assetgen.events.admin.>", cb=on_event)
        # The provider's own key is a (its first pool key); b was never valid there (a revoked account).
        body = {"name": "kie", "preset": "kie-ai", "base_url": fake.base_url, "api_key": KEYS["a"]}
        assert (await http.post("/api/providers/", json=body)).status_code == 201
        assert (
            await http.post("/api/providers/kie/keys/", json={"name": "b", "api_key": KEYS["b"]})
        ).status_code == 201
        schema = {"model": "demo/image", "input": {"prompt": "{{prompt}}"}}
        model = {"provider": "kie", "name": "img", "model_type": "IMAGE", "request_schema": schema}
        assert (await http.post("/api/models/", json=model)).status_code == 201
        box = (await http.post("/api/boxes/", json={"name": "refused"})).json()["id"]

        generate = {"model": "img", "prompt": "x"}
        assets = [
            (await http.post(f"/api/boxes/{box}/generate/", json=generate)).json()["id"] for _ in range(4)
        ]
        outcomes = [await _finished(http, asset) for asset in assets]
        assert [outcome["status"] for outcome in outcomes] == ["COMPLETED"] * 4, outcomes
        assert {task.owner for task in fake.tasks.values()} == {KEYS["a"]}
        keys = {key["name"]: key for key in (await http.get("/api/providers/kie/keys/")).json()["items"]}
        assert (keys["default"]["state"], keys["default"]["last_error"]) == ("active", "")
        assert keys["b"]["state"] == "disabled"
        assert keys["b"]["last_error"] == "401: You do not have access permissions"
        # Admins hear of it once: a NATS event (and the orchestrator's log line).
        event = await asyncio.wait_for(announced.get(), timeout=10)
        assert {name: event[name] for name in ("type", "provider", "key_id", "key_name", "error")} == {
            "type": "provider.key_disabled",
            "provider": "kie",
            "key_id": keys["b"]["id"],
            "key_name": "b",
            "error": "401: You do not have access permissions",
        }

        # The provider refuses the last key too: nothing usable is left, and generations say why.
        fake.keys.discard(KEYS["a"])
        failed = await _finished(
            http, (await http.post(f"/api/boxes/{box}/generate/", json=generate)).json()["id"]
        )
        assert failed["status"] == "FAILED"
        assert failed["error_message"].startswith("no usable API key for provider kie: 401: ")
        assert (await asyncio.wait_for(announced.get(), timeout=10))["key_name"] == "default"
        assert announced.empty()  # each refused key was announced once
        enabled = await http.patch(f"/api/providers/kie/keys/{keys['b']['id']}/", json={"enabled": True})
        assert (enabled.json()["state"], enabled.json()["last_error"]) == ("active", "")

        # The provider's own key rotated: a new key for the provider makes "default" usable again.
        await http.patch(f"/api/providers/kie/keys/{keys['b']['id']}/", json={"enabled": False})
        fake.add_key("account-c-key")
        assert (await http.patch("/api/providers/kie/", json={"api_key": "account-c-key"})).status_code == 200
        keys = {key["name"]: key for key in (await http.get("/api/providers/kie/keys/")).json()["items"]}
        assert (keys["default"]["state"], keys["default"]["last_error"]) == ("active", "")
        again = await _finished(
            http, (await http.post(f"/api/boxes/{box}/generate/", json=generate)).json()["id"]
        )
        assert again["status"] == "COMPLETED", again
        assert (
            next(
                task
                for task in fake.tasks.values()
                if task.created_at == max(other.created_at for other in fake.tasks.values())
            ).owner
            == "account-c-key"
        )
        await events.close()
