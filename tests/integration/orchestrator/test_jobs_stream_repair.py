"""The loss of the whole jobs stream is repaired: the job runner creates the stream and its consumer
again, and the reconciler republishes a job for every generation in flight, which then completes
once, without being submitted to the provider again."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import nats
from generations_api import completions, generate_many, register_kie, wait_terminal
from sqlalchemy import text

from assetgen_dev.embedded import S3Server, free_port, start_nats
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs
from assetgen_dev.stack import start_stack
from assetgen_dev.testing import eventually
from assetgen_orchestrator.jobs import JOBS_STREAM
from assetgen_runtime.database import create_engine

PROVIDER_KEY = "stream-loss-key"
GENERATIONS = 6


async def test_a_deleted_jobs_stream_is_rebuilt_and_every_generation_completes_once(
    tmp_path: Path, s3_server: S3Server
) -> None:
    server = start_nats(tmp_path / "nats")
    provider = FakeKieJobs(PROVIDER_KEY, timing=lambda body: None)  # held until released
    await provider.start()
    stack = await start_stack(
        tmp_path / "stack",
        nats_url=server.url,
        s3=s3_server,
        orchestrator_overrides={"reconcile_interval_seconds": 0.5, "reconcile_quiet_seconds": 1.0},
    )
    headers = {"Authorization": f"Bearer {stack.token}"}
    try:
        async with httpx.AsyncClient(base_url=stack.http_url, headers=headers, timeout=30) as http:
            await register_kie(http, provider.base_url, PROVIDER_KEY)
            asset_ids = await generate_many(http, GENERATIONS)

            async def polled() -> int:
                return int(provider.stats()["polled_tasks"])

            await eventually(polled, lambda n: n == GENERATIONS, timeout=60, what="every task polled")
            nc = await nats.connect(server.url)
            try:
                assert await nc.jetstream().delete_stream(JOBS_STREAM)
            finally:
                await nc.close()
            provider.release(time.time())

            ended = await wait_terminal(http, asset_ids, timeout=90)

            assert set(ended.values()) == {"COMPLETED"}, ended
            assert provider.submits == GENERATIONS  # resumed by polling, never submitted again
            assert [await completions(http, asset_id) for asset_id in asset_ids] == [1] * GENERATIONS
        # Every job was republished by the reconciler, as a new generation.
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'stack'}/orchestrator.db")
        try:
            async with engine.connect() as connection:
                rows = (await connection.execute(text("SELECT job_generation FROM assets"))).all()
        finally:
            await engine.dispose()
        assert len(rows) == GENERATIONS and all(generation >= 1 for (generation,) in rows)
    finally:
        await stack.stop()
        await provider.stop()
        server.stop()


async def test_generate_and_retry_while_nats_is_down_are_scheduled_once_it_is_back(
    tmp_path: Path, s3_server: S3Server
) -> None:
    server = start_nats(tmp_path / "nats", port=free_port())
    provider = FakeKieJobs(PROVIDER_KEY)
    await provider.start()
    stack = await start_stack(
        tmp_path / "stack",
        nats_url=server.url,
        s3=s3_server,
        orchestrator_overrides={"reconcile_interval_seconds": 0.5, "reconcile_quiet_seconds": 1.0},
    )
    headers = {"Authorization": f"Bearer {stack.token}"}
    try:
        async with httpx.AsyncClient(base_url=stack.http_url, headers=headers, timeout=30) as http:
            await register_kie(http, provider.base_url, PROVIDER_KEY)
            box = (await http.post("/api/boxes/", json={"name": "outage"})).json()["id"]
            failed = (
                await http.post(f"/api/boxes/{box}/generate/", json={"model": "img", "prompt": "[fail] once"})
            ).json()["id"]
            assert await wait_terminal(http, [failed], timeout=60) == {failed: "FAILED"}

            server.stop()  # the job queue goes away
            accepted = await http.post(
                f"/api/boxes/{box}/generate/", json={"model": "img", "prompt": "later"}
            )
            retried = await http.post(f"/api/assets/{failed}/retry/", json={})
            # Accepted and in flight, not FAILED: the reconciler publishes their jobs.
            assert accepted.status_code == 202 and accepted.json()["status"] == "PENDING", accepted.text
            assert retried.status_code == 202 and retried.json()["status"] == "PENDING", retried.text
            server.process = server.respawn()  # type: ignore[misc]

            asset_id = accepted.json()["id"]
            ended = await wait_terminal(http, [asset_id, failed], timeout=60)

            assert ended == {asset_id: "COMPLETED", failed: "FAILED"}
            retry = (await http.get(f"/api/assets/{failed}")).json()
            assert retry["attempt"] == 2  # the retry ran (and failed again, as its prompt asks)
            assert provider.submits == 3
    finally:
        await stack.stop()
        await provider.stop()
        server.stop()
