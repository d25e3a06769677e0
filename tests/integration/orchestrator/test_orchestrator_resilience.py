"""The orchestrator never loses or duplicates work: SIGKILLs, a second replica, a NATS restart.

The orchestrator runs as real processes (to be killed); storage, provider-adapter and gateway run
in-process; the provider is the Kie.ai-shaped demo provider, which counts submissions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import text

from assetgen_dev.demo_provider import demo_provider
from assetgen_dev.embedded import EmbeddedProcess, free_port, start_nats
from assetgen_dev.stack import Stack, WholeStackFactory
from assetgen_dev.testing import eventually
from assetgen_runtime.database import create_engine

pytestmark = pytest.mark.slow

GENERATIONS = int(os.environ.get("ASSETGEN_TEST_RESILIENCE_GENERATIONS", "300"))
PROVIDER_KEY = "resilience-key"


@dataclass
class Cluster:
    """Orchestrator processes around one database and NATS, plus the in-process rest of the stack."""

    tmp: Path
    database_url: str
    nats: EmbeddedProcess
    nats_port: int
    stack: Stack | None = None
    provider_url: str = ""
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, port: int) -> None:
        """Starts an orchestrator process serving gRPC on ``port``."""
        assert self.stack is not None
        env = {
            **os.environ,
            "ASSETGEN_GRPC_PORT": str(port),
            "ASSETGEN_DATA_DIR": str(self.tmp),
            "ASSETGEN_DATABASE_URL": self.database_url,
            "ASSETGEN_NATS_URL": f"nats://127.0.0.1:{self.nats_port}",
            "ASSETGEN_PROVIDER_ADAPTER_ADDR": self.stack.provider_adapter_addr,
            "ASSETGEN_STORAGE_ADDR": self.stack.storage_addr,
            "ASSETGEN_ACK_WAIT_SECONDS": "6",
            "ASSETGEN_RETRY_BASE_SECONDS": "0.5",
            "ASSETGEN_SUBMIT_RETRIES": "8",
            "ASSETGEN_LOG_LEVEL": "WARNING",
        }
        with open(self.tmp / f"orchestrator-{port}.log", "ab") as log:
            self.processes[port] = subprocess.Popen(
                [sys.executable, "-m", "assetgen_orchestrator.main"], env=env, stdout=log, stderr=log
            )

    def kill(self, port: int) -> None:
        """SIGKILL: no graceful anything."""
        process = self.processes.pop(port)
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()


async def _serving(port: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        async def check() -> int:
            try:
                response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return int(response.status)
            except grpc.aio.AioRpcError:
                return -1

        await eventually(
            check, lambda s: s == health_pb2.HealthCheckResponse.SERVING, timeout=60, what="SERVING"
        )


async def _status_counts(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(text("SELECT status, count(*) FROM assets GROUP BY status"))
            ).all()
    finally:
        await engine.dispose()
    return {str(status): int(count) for status, count in rows}


async def _completions_per_asset(database_url: str) -> dict[str, int]:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    text(
                        "SELECT asset_id, count(*) FROM asset_transitions "
                        "WHERE to_status = 'COMPLETED' GROUP BY asset_id"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    return {str(asset_id): int(count) for asset_id, count in rows}


@pytest.fixture
async def cluster_factory(
    tmp_path: Path, whole_stack: WholeStackFactory
) -> AsyncIterator[Callable[[str], AsyncIterator[Cluster]]]:
    clusters: list[Cluster] = []
    async with contextlib.AsyncExitStack() as cleanup:

        def stop_nats() -> None:
            for cluster in clusters:
                cluster.nats.stop()

        # Last, after the stack: a test may have restarted NATS, and the stack knows only the first.
        cleanup.callback(stop_nats)

        async def make(database_url: str) -> Cluster:
            nats_port, orchestrator_port = free_port(), free_port()
            provider = demo_provider(PROVIDER_KEY, delay=1.0)
            system = await cleanup.enter_async_context(
                whole_stack(
                    tmp_path,
                    fakes=[provider],
                    nats_port=nats_port,
                    external_orchestrator_addr=f"127.0.0.1:{orchestrator_port}",
                )
            )
            cluster = Cluster(
                tmp=tmp_path,
                database_url=database_url,
                nats=system.nats,
                nats_port=nats_port,
                stack=system.stack,
                provider_url=provider.base_url,
            )
            clusters.append(cluster)
            cluster.spawn(orchestrator_port)
            await _serving(orchestrator_port)
            return cluster

        yield make  # type: ignore[misc]
        for cluster in clusters:
            cluster.stop_all()


async def _submit_all(cluster: Cluster) -> list[str]:
    assert cluster.stack is not None
    headers = {"Authorization": f"Bearer {cluster.stack.token}"}
    async with httpx.AsyncClient(base_url=cluster.stack.http_url, headers=headers, timeout=30) as http:
        response = await http.post(
            "/api/providers/",
            json={
                "name": "kie",
                "preset": "kie-ai",
                "base_url": cluster.provider_url,
                "api_key": PROVIDER_KEY,
            },
        )
        assert response.status_code == 201, response.text
        response = await http.post(
            "/api/models/",
            json={
                "provider": "kie",
                "name": "img",
                "model_type": "IMAGE",
                "request_schema": {"model": "demo/image", "input": {"prompt": "{{prompt}}"}},
            },
        )
        assert response.status_code == 201, response.text
        box = (await http.post("/api/boxes/", json={"name": "load"})).json()["id"]
        gate = asyncio.Semaphore(16)

        async def generate(index: int) -> str:
            async with gate:
                reply = await http.post(
                    f"/api/boxes/{box}/generate/", json={"model": "img", "prompt": f"picture {index}"}
                )
                assert reply.status_code == 202, reply.text
                return str(reply.json()["id"])

        return list(await asyncio.gather(*(generate(i) for i in range(GENERATIONS))))


async def _wait_completed(cluster: Cluster, at_least: int, timeout: float = 240) -> dict[str, int]:
    return await eventually(
        lambda: _status_counts(cluster.database_url),
        lambda counts: counts.get("COMPLETED", 0) + counts.get("FAILED", 0) >= at_least,
        timeout=timeout,
        interval=0.25,
        what=f"{at_least} finished assets",
    )


async def _assert_exactly_once(cluster: Cluster, asset_ids: list[str]) -> None:
    counts = await _status_counts(cluster.database_url)
    assert counts == {"COMPLETED": len(asset_ids)}, counts
    completions = await _completions_per_asset(cluster.database_url)
    assert set(completions) == set(asset_ids)
    assert set(completions.values()) == {1}
    async with httpx.AsyncClient(timeout=10) as client:
        stats = (await client.get(f"{cluster.provider_url}/_demo/stats")).json()
    assert stats["submits"] == len(asset_ids)


async def test_sigkilled_twice_and_restarted_every_asset_completes_once(
    cluster_factory: Callable[[str], object], sqlite_url: str
) -> None:
    cluster: Cluster = await cluster_factory(sqlite_url)  # type: ignore[misc]
    asset_ids = await _submit_all(cluster)
    (port,) = cluster.processes
    for fraction in (0.2, 0.5):
        await _wait_completed(cluster, int(GENERATIONS * fraction))
        cluster.kill(port)
        cluster.spawn(port)
        await _serving(port)
    await _wait_completed(cluster, GENERATIONS)
    await _assert_exactly_once(cluster, asset_ids)


async def test_two_replicas_share_the_work_exactly_once(
    cluster_factory: Callable[[str], object], postgres_url: str
) -> None:
    cluster: Cluster = await cluster_factory(postgres_url)  # type: ignore[misc]
    second = free_port()
    cluster.spawn(second)
    await _serving(second)
    asset_ids = await _submit_all(cluster)
    await _wait_completed(cluster, GENERATIONS)
    await _assert_exactly_once(cluster, asset_ids)


async def test_nats_restart_mid_run_loses_nothing(
    cluster_factory: Callable[[str], object], sqlite_url: str
) -> None:
    cluster: Cluster = await cluster_factory(sqlite_url)  # type: ignore[misc]
    asset_ids = await _submit_all(cluster)
    await _wait_completed(cluster, int(GENERATIONS * 0.3))
    cluster.nats.stop()
    cluster.nats = start_nats(cluster.tmp / "nats", port=cluster.nats_port)
    await _wait_completed(cluster, GENERATIONS)
    await _assert_exactly_once(cluster, asset_ids)
