"""Streams that survive a node: on a 3-node JetStream cluster with R3 streams, two orchestrators and
two provider-adapters run 40 generations; mid-run one NATS node (the jobs stream's leader) is
SIGKILLed and one orchestrator stopped. Nothing is lost (every asset COMPLETED, once) and nothing is
duplicated (the provider saw each task submitted once)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from generations_api import completions, generate_many, register_kie, statuses, wait_terminal

from assetgen_dev.embedded import NatsCluster, S3Server, start_nats_cluster
from assetgen_dev.fake_providers.kie_jobs import FakeKieJobs
from assetgen_dev.testing import eventually
from assetgen_gateway.main import run_server as run_gateway
from assetgen_gateway.settings import GatewaySettings
from assetgen_orchestrator.jobs import EVENTS_STREAM, JOBS_STREAM
from assetgen_orchestrator.main import run_server as run_orchestrator
from assetgen_orchestrator.settings import OrchestratorSettings
from assetgen_provider_adapter.main import run_server as run_provider_adapter
from assetgen_provider_adapter.settings import ProviderAdapterSettings
from assetgen_runtime.server import RunningService
from assetgen_storage.main import run_server as run_storage
from assetgen_storage.settings import StorageSettings

pytestmark = pytest.mark.slow

GENERATIONS = 40
PROVIDER_KEY = "cluster-key"


def _task_seconds(body: Mapping[str, Any]) -> float:
    """Tasks finish 2 to 8 s after submission, by their prompt's number, so the run is spread out."""
    number = int(str(body.get("input", {}).get("prompt", "0")).rsplit(" ", 1)[-1])
    return 2.0 + (number % 5) * 1.5


async def _jobs_stream_leader(url: str) -> str:
    nc = await nats.connect(url.split(","))
    try:
        info = await nc.jetstream().stream_info(JOBS_STREAM)
        events = await nc.jetstream().stream_info(EVENTS_STREAM)
    finally:
        await nc.close()
    assert info.config.num_replicas == 3 and events.config.num_replicas == 3
    assert info.cluster is not None and info.cluster.leader
    return info.cluster.leader


@pytest.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    cluster = start_nats_cluster(tmp_path / "nats")
    yield cluster
    cluster.stop()


async def test_a_killed_nats_node_and_a_stopped_orchestrator_lose_and_duplicate_nothing(
    tmp_path: Path, s3_server: S3Server, postgres_url: str, nats_cluster: NatsCluster
) -> None:
    provider = FakeKieJobs(PROVIDER_KEY, timing=_task_seconds, polls_before_done=0)
    await provider.start()
    token = uuid.uuid4().hex
    services: list[RunningService] = []
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(provider.stop)

        async def started(service: Any) -> Any:
            cleanup.push_async_callback(service.stop)
            services.append(service)
            return service

        storage = await started(
            await run_storage(
                StorageSettings(
                    s3_endpoint=s3_server.url,
                    s3_access_key=s3_server.access_key,
                    s3_secret_key=s3_server.secret_key,
                    s3_bucket=f"assetgen-{uuid.uuid4().hex[:12]}",
                    allowed_fetch_networks=("127.0.0.0/8",),
                ),
                port=0,
            )
        )
        storage_addr = f"127.0.0.1:{storage.port}"
        adapters = [
            await started(
                await run_provider_adapter(
                    ProviderAdapterSettings(
                        data_dir=str(tmp_path / f"adapter-{n}"),
                        catalog_database_url=postgres_url,  # shared: one catalog, one submission ledger
                        storage_addr=storage_addr,
                        allowed_fetch_networks=("127.0.0.0/8",),
                        secret_key="test-secret",
                    ),
                    port=0,
                )
            )
            for n in range(2)
        ]
        adapters_addr = "ipv4:" + ",".join(f"127.0.0.1:{adapter.port}" for adapter in adapters)
        orchestrators = [
            await started(
                await run_orchestrator(
                    OrchestratorSettings(
                        data_dir=str(tmp_path / f"orchestrator-{n}"),
                        database_url=postgres_url,
                        nats_url=nats_cluster.url,
                        nats_replicas=3,
                        provider_adapter_addr=adapters_addr,
                        storage_addr=storage_addr,
                        ack_wait_seconds=5.0,
                        retry_base_seconds=0.5,
                        reconcile_interval_seconds=1.0,
                        reconcile_quiet_seconds=5.0,
                    ),
                    port=0,
                )
            )
            for n in range(2)
        ]
        gateway = await started(
            await run_gateway(
                GatewaySettings(
                    orchestrator_addr="ipv4:" + ",".join(f"127.0.0.1:{o.port}" for o in orchestrators),
                    provider_adapter_addr=adapters_addr,
                    storage_addr=storage_addr,
                    nats_url=nats_cluster.url,
                    api_tokens=(token,),
                ),
                port=0,
                http_port=0,
            )
        )
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{gateway.http_port}", headers=headers, timeout=30
        ) as http:
            await register_kie(http, provider.base_url, PROVIDER_KEY)
            asset_ids = await generate_many(http, GENERATIONS)
            await eventually(
                lambda: statuses(http, asset_ids),
                lambda found: 5 <= list(found.values()).count("COMPLETED") < GENERATIONS,
                timeout=60,
                interval=0.2,
                what="the run under way",
            )

            # Mid-run: the node leading the jobs stream dies, and one orchestrator goes away.
            leader = await _jobs_stream_leader(nats_cluster.url)
            node = nats_cluster.nodes[int(leader.removeprefix("node-"))]
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()
            stopped = orchestrators[0]
            await stopped.stop()
            services.remove(stopped)

            ended = await wait_terminal(http, asset_ids, timeout=90)

            assert set(ended.values()) == {"COMPLETED"}, Counter(ended.values())
            counts = await asyncio.gather(*(completions(http, asset_id) for asset_id in asset_ids))
            assert set(counts) == {1}
        prompts = Counter(task.prompt for task in provider.tasks.values())
        assert provider.submits == GENERATIONS and set(prompts.values()) == {1}, prompts.most_common(3)
