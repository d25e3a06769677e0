"""Benchmark 1, throughput: generations/s end to end with an instant provider and 100 KB results.

N generations are submitted through the gateway's HTTP API at a fixed concurrency; the clock runs from
the first submission to the last COMPLETED event. CPU seconds per generation come from /proc for each
service (and NATS, S3, the database, the fake provider and this driver), and summed for the four
services alone and all-in (with NATS, the database and S3). Reference, same run, interleaved: the
same I/O done bare in one process (createTask, recordInfo, download, put_object) on the services'
event loop and HTTP client, once just before the measured batch and once just after, each half the
size; its all-in CPU adds what S3, NATS and the database spent meanwhile. A second, shorter batch
runs with py-spy attached to the two services that used the most CPU, to show where time goes.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from bench.accounting import INFRASTRUCTURE, per_unit, process_list, ratio
from bench.options import Options
from bench.profiling import HottestProfilers
from bench.references import run_reference
from bench.stats import percentile, summary
from bench.system import PROVIDER_KEY, SERVICES, System, start_system

__all__ = ["run", "submit_many"]

logger = logging.getLogger(__name__)


async def submit_many(
    system: System,
    box: str,
    model: str,
    n: int,
    concurrency: int,
    config: dict[str, Any] | None = None,
    *,
    deadline: float | None = None,
) -> dict[str, float]:
    """Submits ``n`` generations (``concurrency`` at a time); returns asset id → time it was accepted.

    Stops early (returning what was submitted) when ``deadline`` (``time.monotonic()``) passes.
    """
    accepted: dict[str, float] = {}
    tickets = iter(range(n))

    async def worker() -> None:
        for index in tickets:
            if deadline is not None and time.monotonic() > deadline:
                return
            asset = await system.generate(box, model, f"bench picture {index}", config)
            accepted[asset] = time.time()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted


async def _batch(system: System, box: str, model: str, n: int, options: Options) -> dict[str, Any]:
    started = time.time()
    accepted = await submit_many(system, box, model, n, options.concurrency)
    submitted = time.time()
    ids = set(accepted)
    done = await system.events.wait_finished(ids, timeout=options.throughput_timeout)
    completed = [system.events.completed[i] for i in ids if i in system.events.completed]
    failed = [i for i in ids if i in system.events.failed]
    end = max(completed) if completed else time.time()
    latencies = [system.events.completed[i] - accepted[i] for i in ids if i in system.events.completed]
    result: dict[str, Any] = {
        "generations": n,
        "completed": len(completed),
        "failed": len(failed),
        "timed_out": not done,
        "seconds": end - started,
        "submit_seconds": submitted - started,
        "generations_per_s": len(completed) / (end - started) if end > started else 0.0,
        "latency_s": summary(latencies),
    }
    if len(completed) >= 20:
        low, high = percentile(completed, 0.1), percentile(completed, 0.9)
        result["steady_generations_per_s"] = 0.8 * len(completed) / (high - low) if high > low else 0.0
    if failed:
        result["first_failure"] = system.events.failed[failed[0]]
    return result


async def _reference_pipeline(system: System, options: Options, n: int) -> dict[str, Any]:
    """The bare pipeline once, in its own process; its all-in CPU adds what S3, NATS and the
    database spent meanwhile (the services idle and are not counted)."""
    sampler = system.sampler()
    sampler.start()
    reference = await run_reference(
        "pipeline",
        "--url",
        system.provider_url,
        "--key",
        PROVIDER_KEY,
        "--n",
        str(n),
        "--concurrency",
        str(options.concurrency),
        "--s3",
        system.s3.url,
        f"--access={system.s3.access_key}",
        # "=": a secret may begin with "-", which argparse would take for an option.
        f"--secret={system.s3.secret_key}",
        "--bucket",
        f"reference-{uuid.uuid4().hex[:8]}",
    )
    measurement = await sampler.stop()
    infrastructure_ms = 1000 * measurement.cpu_of(INFRASTRUCTURE) / n
    reference["infrastructure_cpu_ms_per_generation"] = infrastructure_ms
    reference["cpu_ms_per_generation_all_in"] = reference["cpu_ms_per_generation"] + infrastructure_ms
    return reference


def _mean_reference(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The two interleaved reference runs as one: each figure's mean, both runs kept."""
    keys = ("generations_per_s", "cpu_ms_per_generation", "cpu_ms_per_generation_all_in")
    return {
        **{key: (before[key] + after[key]) / 2 for key in keys},
        "generations": before["generations"] + after["generations"],
        "event_loop": before.get("event_loop"),
        "before": before,
        "after": after,
    }


async def run(options: Options) -> dict[str, Any]:
    """Runs the throughput benchmark on a fresh system; returns its figures."""
    system = await start_system(options, result_bytes=options.result_bytes)
    try:
        model = await system.configure(interval=options.throughput_poll_seconds)
        box = await system.create_box("throughput")
        warm = await _batch(system, box, model, min(50, options.n), options)
        logger.info("warm-up: %s", warm)
        reference_n = max(min(options.n, 1000) // 2, 50)
        before = await _reference_pipeline(system, options, reference_n)
        sampler = system.sampler()
        sampler.start()
        figures = await _batch(system, box, model, options.n, options)
        measurement = await sampler.stop()
        figures["poll_interval_s"] = options.throughput_poll_seconds
        completed = max(figures["completed"], 1)
        figures["cpu_ms_per_generation"] = {
            name: 1000 * cpu / completed for name, cpu in measurement.cpu.items()
        }
        cpu = per_unit(measurement, completed)
        figures["cpu_ms_per_generation_services"] = cpu["services"]
        figures["cpu_ms_per_generation_all_in"] = cpu["all_in"]
        figures["accounting"] = process_list(measurement)
        figures["cpu_percent"] = {name: measurement.cpu_percent(name) for name in measurement.cpu}
        figures["cpu_percent"]["others"] = measurement.others_cpu_percent
        figures["rss_max_mb"] = {name: value / 1e6 for name, value in measurement.rss_max.items()}
        logger.info("throughput: %.1f generations/s", figures["generations_per_s"])

        after = await _reference_pipeline(system, options, reference_n)
        reference = _mean_reference(before, after)
        figures["reference_pipeline"] = reference
        figures["ratio_to_bare_pipeline"] = {
            "generations_per_s": ratio(figures["generations_per_s"], reference["generations_per_s"]),
            "cpu_services": ratio(cpu["services"], reference["cpu_ms_per_generation"]),
            "cpu_all_in": ratio(cpu["all_in"], reference["cpu_ms_per_generation_all_in"]),
        }
        logger.info(
            "reference pipeline: %s", {k: v for k, v in reference.items() if k not in ("before", "after")}
        )

        if options.profile:
            services = {name: system.pids[name] for name in SERVICES}
            profilers = HottestProfilers(services, measurement.cpu, options.work_dir, "profile")
            await profilers.start()
            profiled = await _batch(
                system, box, model, options.profile_n or max(options.n // 2, 200), options
            )
            figures["profiled_generations_per_s"] = profiled["generations_per_s"]
            figures["profiles"] = await profilers.stop()
        return figures
    finally:
        await system.stop()
