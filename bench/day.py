"""A production day: generations arriving at a steady rate, with realistic provider times and sizes.

For ``day_minutes`` (10) a generation arrives every 1 / ``day_rate`` seconds (2/s), drawn from the
realistic work (bench/workload.py: four models, four boxes, images 5–30 s and videos 20–120 s at
the provider, results 100 KB – 20 MB), polled every ``realistic_poll_seconds`` (5 s). Each is
submitted at its arrival time; the driver does not wait for one to be accepted before the next
arrives. Figures:

* end-to-end latency (arrival → COMPLETED) next to the provider's own time for the same tasks,
  p50 / p99, and the time the system added (the difference, per generation);
* CPU and resident memory over the arrival period (the steady state): services and all-in;
* every stored object checked against the bytes the provider sent (bench/integrity.py);
* whether the system kept up: every generation completed, submissions accepted on time
  (lateness p99 ≤ 1 s) and the added time's p99 within two poll intervals (the wait for the next
  poll, plus the copy).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from bench.accounting import ALL_IN, SERVICES, per_unit, process_list
from bench.inflight import profile_hottest
from bench.integrity import check_stored
from bench.options import Options
from bench.stats import summary
from bench.system import System, start_system
from bench.throughput import describe_work, set_up_work
from bench.workload import Job

__all__ = ["kept_up", "run"]

logger = logging.getLogger(__name__)

# Submissions on the wire at once: arrivals beyond it wait (and show as late).
_SUBMITTING = 64


def kept_up(figures: dict[str, Any], interval: float) -> list[str]:
    """Why the system did not keep up with the day (empty: it did)."""
    reasons = []
    if figures["completed"] < figures["generations"]:
        reasons.append(
            f"{figures['generations'] - figures['completed']} of {figures['generations']} not completed"
        )
    late = figures["submit_lateness_s"].get("p99", 0.0)
    if late > 1.0:
        reasons.append(f"submissions accepted up to {late:.2f} s late (p99)")
    added = figures["added_s"].get("p99")
    if added is None or added > 2 * interval:
        reasons.append(f"time added p99 {added} s > two poll intervals ({2 * interval:g} s)")
    return reasons


async def _arrive(
    system: System, boxes: list[str], jobs: list[Job], rate: float
) -> tuple[dict[str, tuple[float, Job]], list[float]]:
    """Submits job i at ``start + i / rate``; returns asset → (arrival time, job) and each
    submission's lateness (accepted − arrival)."""
    arrivals: dict[str, tuple[float, Job]] = {}
    lateness: list[float] = []
    limit = asyncio.Semaphore(_SUBMITTING)
    submitting: set[asyncio.Task[None]] = set()

    async def submit(index: int, job: Job, due: float) -> None:
        async with limit:
            asset = await system.generate(boxes[job.box], job.model, f"day {index}", job.config() or None)
        arrivals[asset] = (due, job)
        lateness.append(time.time() - due)

    start = time.time() + 1.0
    for index, job in enumerate(jobs):
        due = start + index / rate
        await asyncio.sleep(max(0.0, due - time.time()))  # the arrival schedule, not a wait for state
        task = asyncio.create_task(submit(index, job, due))
        submitting.add(task)
        task.add_done_callback(submitting.discard)
    await asyncio.gather(*submitting)
    return arrivals, lateness


async def run(options: Options) -> dict[str, Any]:
    """Runs the production day on a fresh system; returns its figures."""
    interval = options.realistic_poll_seconds
    system = await start_system(options, digest_downloads=True)
    try:
        boxes, draw = await set_up_work(system, options, realistic=True, interval=interval)
        n = max(1, round(options.day_rate * options.day_minutes * 60))
        jobs = draw(n, options.seed)
        sampler = system.sampler()
        sampler.start()
        arrived_from = time.time()
        arrivals, lateness = await _arrive(system, boxes, jobs, options.day_rate)
        measurement = await sampler.stop()
        arriving_s = time.time() - arrived_from
        # The profile records the first part of the drain (polls, completions and copies still
        # going on), so the profiler's own cost is in no figure of the arrival period.
        profiles = (
            await profile_hottest(system, measurement.cpu, options, "profile-day") if options.profile else {}
        )
        ids = set(arrivals)
        longest = max(job.finish_after for job in jobs)
        drained = await system.events.wait_finished(
            ids, timeout=longest + 3 * interval + options.drain_timeout
        )
        completed = {i: system.events.completed[i] for i in ids if i in system.events.completed}
        end_to_end = [at - arrivals[i][0] for i, at in completed.items()]
        provider = [arrivals[i][1].finish_after for i in completed]
        cpu = per_unit(measurement, len(ids))
        figures: dict[str, Any] = {
            "rate_per_s": options.day_rate,
            "minutes": options.day_minutes,
            "poll_interval_s": interval,
            "generations": n,
            "submitted": len(ids),
            "completed": len(completed),
            "failed": sum(1 for i in ids if i in system.events.failed),
            "drained": drained,
            "arriving_s": arriving_s,
            "submit_lateness_s": summary(lateness),
            "end_to_end_s": summary(end_to_end),
            "provider_s": summary(provider),
            "added_s": summary([e - p for e, p in zip(end_to_end, provider, strict=True)]),
            "cpu_percent_services": 100 * measurement.cpu_of(SERVICES) / measurement.seconds,
            "cpu_percent_all_in": 100 * measurement.cpu_of(ALL_IN) / measurement.seconds,
            "cpu_ms_per_generation_services": cpu["services"],
            "cpu_ms_per_generation_all_in": cpu["all_in"],
            "cpu_percent": {name: measurement.cpu_percent(name) for name in measurement.cpu},
            "rss_mb_services": measurement.rss_max_of(SERVICES) / 1e6,
            "rss_mb_all_in": measurement.rss_max_of(ALL_IN) / 1e6,
            "rss_max_mb": {name: value / 1e6 for name, value in measurement.rss_max.items()},
            "accounting": process_list(measurement),
            "work": describe_work(jobs, options),
        }
        figures["cpu_percent"]["others"] = measurement.others_cpu_percent
        figures["stored_objects"] = await check_stored(system, sorted(completed))
        figures["fell_behind"] = kept_up(figures, interval)
        figures["kept_up"] = not figures["fell_behind"]
        if profiles:
            figures["profiles"] = profiles
        logger.info(
            "day: %d of %d completed, end to end p50/p99 %.1f/%.1f s over the provider's %.1f/%.1f s, "
            "added p99 %.2f s, CPU all-in %.0f %%, %s",
            len(completed),
            n,
            figures["end_to_end_s"].get("p50", float("nan")),
            figures["end_to_end_s"].get("p99", float("nan")),
            figures["provider_s"].get("p50", float("nan")),
            figures["provider_s"].get("p99", float("nan")),
            figures["added_s"].get("p99", float("nan")),
            figures["cpu_percent_all_in"],
            "kept up" if figures["kept_up"] else f"fell behind: {figures['fell_behind']}",
        )
        return figures
    finally:
        await system.stop()
