"""`make chaos` in miniature: the real processes, the chaos providers, a few kills, the checker.

Nine generations (three per family) over a few seconds while the provider-adapter, NATS and the
gateway are SIGKILLed; every asset must end and the verdict pass. The full run is `make chaos`, not
part of the tests; this keeps its machinery (start-up, supervision, disruptions, records, bucket
listing, verdict) working. The orchestrator's ack wait is shortened so a job lost with NATS is
redelivered within the test's patience.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from assetgen_dev.chaos.check import judge
from assetgen_dev.chaos.disruptions import Disruption, disrupt
from assetgen_dev.chaos.driver import generate_all, wait_ended
from assetgen_dev.chaos.faults import FaultPlan
from assetgen_dev.chaos.snapshot import Code
from assetgen_dev.chaos.system import start_system

SETTINGS = {"ASSETGEN_ACK_WAIT_SECONDS": "10", "ASSETGEN_RECONCILE_INTERVAL_SECONDS": "5"}


async def test_a_tiny_chaos_run_ends_every_asset_right_through_kills() -> None:
    system = await start_system(FaultPlan(seed=11), Code("test", "working tree"), settings=SETTINGS)
    supervision = asyncio.create_task(system.supervise())
    records: list[dict[str, Any]] = []
    try:
        assert system.http is not None
        models = await system.configure()
        box = (await system.http.post("/api/boxes/", json={"name": "tiny-chaos"})).json()["id"]
        started = time.monotonic()
        schedule = (Disruption("provider-adapter"), Disruption("nats"), Disruption("gateway"))
        generations, events = await asyncio.gather(
            generate_all(system.http, box, models, 9, span=6.0, started=started, run_id="tiny"),
            disrupt(system, started, 6.0, schedule),
        )
        assets = await wait_ended(system.http, box, {g.asset_id for g in generations if g.asset_id}, 240)
        records = await system.provider_records()
        objects = await asyncio.to_thread(system.bucket_objects)
        providers_alive = system.providers.poll() is None
    finally:
        supervision.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervision
        await system.stop()
    adapter_kills = [event.at for event in events if event.target == "provider-adapter"]
    verdict = judge(generations, assets, records, objects, adapter_kills=adapter_kills)
    assert verdict.passed, verdict.problems
    assert verdict.completed + sum(verdict.failed.values()) == 9
    assert verdict.completed == len(objects) > 0
    assert [event.target for event in events] == ["provider-adapter", "nats", "gateway"]
    assert all(event.back_after is not None and event.pid > 0 for event in events)
    assert providers_alive and {record["family"] for record in records} == {"kie", "replicate", "luma"}
    assert not system.root.exists()  # stop() cleaned up after itself
