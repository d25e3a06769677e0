"""Benchmark 5, API: latency and requests/s of GetAsset over HTTP and gRPC at a fixed concurrency.

One completed asset is read again and again for ``api_seconds`` by ``api_concurrency`` workers, over
HTTP (``GET /api/assets/{id}/``) and over gRPC (``GatewayService/GetAsset``). Reference, same run, same
gateway and concurrency: its cheapest call on each transport (``GET /healthz``, ``grpc.health.v1``
Check), which is the floor the client, the loopback and the server framework set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from assetgen.v1 import gateway_pb2, gateway_pb2_grpc
from bench.accounting import per_unit, process_list
from bench.options import Options
from bench.stats import percentile
from bench.system import System, start_system

__all__ = ["run"]

logger = logging.getLogger(__name__)


async def _load(
    call: Callable[[], Awaitable[None]], seconds: float, concurrency: int, system: System
) -> dict[str, Any]:
    warm_until = time.monotonic() + min(1.0, seconds / 5)
    while time.monotonic() < warm_until:
        await call()
    latencies: list[float] = []
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop_at:
            began = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - began)

    sampler = system.sampler(interval=1.0)
    sampler.start()
    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - began
    measurement = await sampler.stop()
    count = len(latencies)
    return {
        "requests": count,
        "requests_per_s": count / wall,
        "p50_ms": 1000 * percentile(latencies, 0.5),
        "p99_ms": 1000 * percentile(latencies, 0.99),
        "cpu_ms_per_request": {
            name: 1000 * measurement.cpu[name] / count
            for name in ("gateway", "orchestrator", "storage", "driver")
        },
        "cpu_ms_per_request_services": per_unit(measurement, count)["services"],
        "cpu_ms_per_request_all_in": per_unit(measurement, count)["all_in"],
        "accounting": process_list(measurement),
    }


async def run(options: Options) -> dict[str, Any]:
    """Runs the API benchmark on a fresh system; returns its figures."""
    system = await start_system(options)
    try:
        model = await system.configure(interval=1.0)
        box = await system.create_box("api")
        asset = await system.generate(box, model, "api benchmark")
        if (
            not await system.events.wait_finished({asset}, timeout=120)
            or asset not in system.events.completed
        ):
            raise RuntimeError(
                f"the API benchmark's asset did not complete: {system.events.failed.get(asset)}"
            )
        concurrency, seconds = options.api_concurrency, options.api_seconds
        figures: dict[str, Any] = {"concurrency": concurrency, "seconds": seconds}

        headers = {"Authorization": f"Bearer {system.token}"}
        # aiohttp rather than httpx for the load: httpx's pool costs several ms of client CPU per
        # request at this concurrency, and the client shares the machine's two cores with the system.
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(
            system.http_url, headers=headers, connector=connector, timeout=timeout
        ) as http:

            async def http_get_asset() -> None:
                async with http.get(f"/api/assets/{asset}/") as response:
                    response.raise_for_status()
                    await response.read()

            async def http_health() -> None:
                async with http.get("/healthz") as response:
                    response.raise_for_status()
                    await response.read()

            figures["http"] = {
                "get_asset": await _load(http_get_asset, seconds, concurrency, system),
                "reference": {
                    "what": "GET /healthz",
                    **await _load(http_health, seconds, concurrency, system),
                },
            }
        logger.info("api http: %s", figures["http"])

        metadata = [("authorization", f"Bearer {system.token}")]
        async with grpc.aio.insecure_channel(system.grpc_address) as channel:
            api = gateway_pb2_grpc.GatewayServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            request = gateway_pb2.GetAssetRequest(id=asset)

            async def grpc_get_asset() -> None:
                await api.GetAsset(request, metadata=metadata, timeout=30)

            async def grpc_health() -> None:
                await health.Check(health_pb2.HealthCheckRequest(), timeout=30)

            figures["grpc"] = {
                "get_asset": await _load(grpc_get_asset, seconds, concurrency, system),
                "reference": {
                    "what": "health Check",
                    **await _load(grpc_health, seconds, concurrency, system),
                },
            }
        logger.info("api grpc: %s", figures["grpc"])
        return figures
    finally:
        await system.stop()
