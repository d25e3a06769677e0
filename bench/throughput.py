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
import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.accounting import INFRASTRUCTURE, per_unit, process_list, ratio
from bench.integrity import check_stored
from bench.options import Options
from bench.profiling import HottestProfilers
from bench.references import run_reference
from bench.stats import percentile, summary
from bench.system import PROVIDER_KEY, SERVICES, System, start_system
from bench.workload import Job, Shape, plain_jobs, realistic_jobs

__all__ = ["describe_work", "run", "set_up_work", "submit_many"]

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


async def _submit_jobs(
    system: System, boxes: list[str], jobs: list[Job], concurrency: int
) -> dict[str, tuple[float, Job]]:
    """Submits ``jobs`` (``concurrency`` at a time); returns asset id → (time accepted, its job)."""
    accepted: dict[str, tuple[float, Job]] = {}
    tickets = iter(enumerate(jobs))

    async def worker() -> None:
        for index, job in tickets:
            config = job.config() or None
            asset = await system.generate(boxes[job.box], job.model, f"bench picture {index}", config)
            accepted[asset] = (time.time(), job)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted


async def _batch(system: System, boxes: list[str], jobs: list[Job], options: Options) -> dict[str, Any]:
    started = time.time()
    accepted = await _submit_jobs(system, boxes, jobs, options.concurrency)
    submitted = time.time()
    ids = set(accepted)
    done = await system.events.wait_finished(ids, timeout=options.throughput_timeout)
    finished = {i: system.events.completed[i] for i in ids if i in system.events.completed}
    completed = list(finished.values())
    failed = [i for i in ids if i in system.events.failed]
    end = max(completed) if completed else time.time()
    latencies = [at - accepted[i][0] for i, at in finished.items()]
    result: dict[str, Any] = {
        "generations": len(jobs),
        "completed": len(completed),
        "failed": len(failed),
        "timed_out": not done,
        "seconds": end - started,
        "submit_seconds": submitted - started,
        "generations_per_s": len(completed) / (end - started) if end > started else 0.0,
        "latency_s": summary(latencies),
        "completed_ids": sorted(finished),
    }
    if any(job.finish_after > 0 for _, job in accepted.values()):
        # What the system adds to the provider's own time: acceptance → COMPLETED − the task's time.
        result["provider_seconds"] = summary([accepted[i][1].finish_after for i in finished])
        result["overhead_s"] = summary(
            [at - accepted[i][0] - accepted[i][1].finish_after for i, at in finished.items()]
        )
    if len(completed) >= 20:
        low, high = percentile(completed, 0.1), percentile(completed, 0.9)
        result["steady_generations_per_s"] = 0.8 * len(completed) / (high - low) if high > low else 0.0
    if failed:
        result["first_failure"] = system.events.failed[failed[0]]
    return result


async def _reference_pipeline(
    system: System, options: Options, n: int, jobs: list[Job] | None = None
) -> dict[str, Any]:
    """The bare pipeline once, in its own process; its all-in CPU adds what S3, NATS and the
    database spent meanwhile (the services idle and are not counted). With ``jobs`` it fetches and
    stores their results (sizes, kinds), each at once: the bare I/O, without the provider's time."""
    inputs: list[str] = []
    if jobs:
        path = options.work_dir / f"pipeline-inputs-{uuid.uuid4().hex[:8]}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = [{k: v for k, v in job.config().items() if k != "finish_after"} for job in jobs]
        path.write_text(json.dumps(body))
        inputs = ["--inputs", str(path)]
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
        *inputs,
    )
    measurement = await sampler.stop()
    if inputs:
        Path(inputs[1]).unlink(missing_ok=True)
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


async def set_up_work(
    system: System, options: Options, *, realistic: bool, interval: float
) -> tuple[list[str], Callable[[int, int], list[Job]]]:
    """The provider (polled every ``interval``), models and boxes of the work; returns the boxes and
    how to draw ``n`` jobs from a seed."""
    model = await system.configure(interval=interval)
    if not realistic:
        box = await system.create_box("throughput")
        return [box], lambda n, seed: plain_jobs(n, model)
    shape = Shape()
    for spec in shape.models:
        if spec.name != model:
            await system.add_model(spec.name, spec.model_type)
    boxes = [await system.create_box(f"throughput {number}") for number in range(1, shape.boxes + 1)]
    return boxes, lambda n, seed: realistic_jobs(n, seed, shape)


async def run(options: Options) -> dict[str, Any]:
    """Runs the throughput benchmark on a fresh system; returns its figures."""
    system = await start_system(
        options, result_bytes=options.result_bytes, digest_downloads=options.realistic
    )
    try:
        boxes, draw = await set_up_work(
            system, options, realistic=options.realistic, interval=options.poll_seconds
        )
        warm_model = draw(1, 0)[0].model
        warm = await _batch(system, boxes[:1], plain_jobs(min(50, options.n), warm_model), options)
        logger.info("warm-up: %s", {k: v for k, v in warm.items() if k != "completed_ids"})
        jobs = draw(options.n, options.seed)
        reference_n = max(min(options.n, 1000) // 2, 50)
        reference_jobs = jobs[:reference_n] if options.realistic else None
        before = await _reference_pipeline(system, options, reference_n, reference_jobs)
        sampler = system.sampler()
        sampler.start()
        figures = await _batch(system, boxes, jobs, options)
        measurement = await sampler.stop()
        completed_ids = figures.pop("completed_ids")
        figures["poll_interval_s"] = options.poll_seconds
        figures["work"] = describe_work(jobs, options)
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

        if options.realistic:
            figures["stored_objects"] = await check_stored(system, completed_ids)
            logger.info("stored objects: %s", figures["stored_objects"])
        after = await _reference_pipeline(system, options, reference_n, reference_jobs)
        reference = _mean_reference(before, after)
        figures["reference_pipeline"] = reference
        figures["ratio_to_bare_pipeline"] = {
            # With the provider's own time in the work, the rate is the provider's, not the system's.
            "generations_per_s": None
            if options.realistic
            else ratio(figures["generations_per_s"], reference["generations_per_s"]),
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
            profile_n = options.profile_n or max(options.n // 2, 200)
            profiled = await _batch(system, boxes, draw(profile_n, options.seed + 1), options)
            figures["profiled_generations_per_s"] = profiled["generations_per_s"]
            figures["profiles"] = await profilers.stop()
        return figures
    finally:
        await system.stop()


def describe_work(jobs: list[Job], options: Options) -> dict[str, Any]:
    """What the jobs asked of the provider: models, boxes, provider time and sizes."""
    if not any(job.finish_after > 0 or job.seed for job in jobs):
        return {"realistic": False, "result_bytes": options.result_bytes, "models": 1, "boxes": 1}
    return {
        "realistic": True,
        "seed": options.seed,
        "models": sorted({job.model for job in jobs}),
        "boxes": len({job.box for job in jobs}),
        "videos": sum(1 for job in jobs if job.media == "video"),
        "provider_seconds": summary([job.finish_after for job in jobs]),
        "result_bytes": summary([float(job.size) for job in jobs]),
        "result_bytes_total": sum(job.size for job in jobs),
    }
