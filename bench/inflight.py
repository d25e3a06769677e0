"""Benchmarks 2 and 3, in-flight capacity and completion lag, at one poll interval.

1. Ramp: N generations are submitted through the gateway, each held running at the provider.
2. Once every task has been polled (so each is on its steady poll schedule), a measurement window
   of a few intervals: CPU and RSS of every process, polls the provider saw, and the gap between
   consecutive polls of each task. Lateness is how far a gap overran the interval (the orchestrator's
   jitter only shortens delays): ``max(0, gap − interval)``.
3. Release: the provider finishes the held tasks one after another over ``task_seconds`` (5 min):
   N tasks in flight that each run several minutes finish at N / 300 s per second in steady state.
   Completion lag is each asset's COMPLETED event time minus the moment its task finished at the
   provider.

Reference, same run, interleaved: CPU per bare GET of a task's status URL on the same provider, in a
process of its own, one request at a time, on the services' event loop and HTTP client (the floor
for one poll), measured just before the window and just after it; the reference is their mean.
CPU per poll is given for the four services and all-in (with NATS, the database and S3), per poll
the provider saw and per poll intended (in flight × window ÷ interval: extra polls are cost, not
achievement).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx

from bench.accounting import ALL_IN, per_unit, process_list, ratio
from bench.options import Options
from bench.procstat import Measurement
from bench.profiling import HottestProfilers
from bench.references import run_reference
from bench.stats import summary
from bench.system import PROVIDER_KEY, SERVICES, System, start_system

__all__ = ["poll_figures", "profile_hottest", "ramp", "run"]

logger = logging.getLogger(__name__)


async def _reference_task(system: System) -> str:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {PROVIDER_KEY}"}, timeout=30) as client:
        response = await client.post(
            f"{system.provider_url}/api/v1/jobs/createTask",
            json={"model": "bench/image", "input": {"prompt": "reference", "hold": True}},
        )
        return str(response.json()["data"]["taskId"])


async def ramp(
    system: System, box: str, model: str, options: Options, *, until_polled: bool = True
) -> tuple[dict[str, float], int]:
    """Submits up to ``inflight_n`` held generations and waits until each is at the provider and,
    ``until_polled``, polled there once.

    Submission is closed-loop: at most ``backlog`` generations accepted but not yet at the provider,
    so when ``ramp_timeout`` cuts the ramp short, little is left queued to disturb the window. Returns
    the accepted asset ids (with the time each was accepted) and how many tasks are in flight.
    """
    deadline = time.monotonic() + options.ramp_timeout
    backlog = max(8 * options.concurrency, 256)
    accepted: dict[str, float] = {}
    seen = {"tasks": 0, "polled": 0}
    # Tasks already at the provider (the in-flight run's reference task) are not generations.
    before = await system.provider_get("/_demo/stats")
    refreshed = asyncio.Condition()

    async def follow() -> None:
        while True:
            stats = await system.provider_get("/_demo/stats")
            async with refreshed:
                seen.update(
                    tasks=stats["tasks"] - before["tasks"],
                    polled=stats["polled_tasks"] - before["polled_tasks"],
                )
                refreshed.notify_all()
            await asyncio.sleep(1.0)  # the refresh period of the counters

    async def worker(tickets: Iterator[int]) -> None:
        for index in tickets:
            async with refreshed:  # closed loop: let the system catch up
                await refreshed.wait_for(
                    lambda: len(accepted) - seen["tasks"] <= backlog or time.monotonic() > deadline
                )
            if time.monotonic() > deadline:
                return
            accepted[await system.generate(box, model, f"held {index}", {"hold": True})] = time.time()

    follower = asyncio.create_task(follow())
    try:
        tickets = iter(range(options.inflight_n))
        await asyncio.gather(*(worker(tickets) for _ in range(options.concurrency)))
        # Every task at the provider and, for a polling run, polled once: each is on its steady schedule.
        wanted = "polled" if until_polled else "tasks"
        async with refreshed:
            await refreshed.wait_for(
                lambda: seen[wanted] >= len(accepted) or time.monotonic() > deadline + 120
            )
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
    stats = await system.provider_get("/_demo/stats")
    return accepted, stats["tasks"] - before["tasks"]


def poll_figures(tasks: list[dict[str, Any]], start: float, end: float, interval: float) -> dict[str, Any]:
    """Polls the provider saw between ``start`` and ``end`` (its ``/_demo/tasks``), the gaps between
    each task's consecutive polls, and how far each gap overran ``interval`` (lateness)."""
    polls = 0
    gaps: list[float] = []
    for task in tasks:
        times = task["polls"]
        for index, moment in enumerate(times):
            if start <= moment <= end:
                polls += 1
                if index > 0:
                    gaps.append(moment - times[index - 1])
    return {
        "polls": polls,
        "gap_s": summary(gaps),
        "lateness_s": summary([max(0.0, gap - interval) for gap in gaps]),
        "overrun_s": summary([gap - interval for gap in gaps]),
    }


async def profile_hottest(
    system: System, cpu: dict[str, float], options: Options, stem: str = "profile-inflight"
) -> dict[str, Any]:
    """py-spy on the two services that spent the most CPU in a measurement, for a while after it.

    After the measurement, not during it, so the profiler's own cost is in no measured figure; the
    work is still going on (tasks held, or draining), so the services do the same kind of work.
    """
    services = {name: system.pids[name] for name in SERVICES}
    profilers = HottestProfilers(services, cpu, options.work_dir, stem)
    await profilers.start()
    await asyncio.sleep(options.inflight_profile_seconds)  # recording lasts this long
    return await profilers.stop()


async def _reference_get(system: System, task: str) -> dict[str, Any]:
    return await run_reference(
        "httpx-get",
        "--url",
        f"{system.provider_url}/api/v1/jobs/recordInfo?taskId={task}",
        "--key",
        PROVIDER_KEY,
        "--n",
        "3000",
        "--concurrency",
        "1",
    )


def _cpu_figures(measurement: Measurement, polls: int, intended: float, get_ms: float) -> dict[str, Any]:
    """CPU per poll achieved and per poll intended, services and all-in, and each ÷ the bare GET."""
    achieved, per_intended = per_unit(measurement, polls), per_unit(measurement, intended)
    return {
        "cpu_ms_per_poll_services": achieved["services"],
        "cpu_ms_per_poll_all_in": achieved["all_in"],
        "cpu_ms_per_intended_poll_services": per_intended["services"],
        "cpu_ms_per_intended_poll_all_in": per_intended["all_in"],
        "ratio_to_bare_get": {
            "services": ratio(achieved["services"], get_ms),
            "all_in": ratio(achieved["all_in"], get_ms),
            "services_per_intended_poll": ratio(per_intended["services"], get_ms),
            "all_in_per_intended_poll": ratio(per_intended["all_in"], get_ms),
        },
    }


async def run(options: Options, interval: float) -> dict[str, Any]:
    """Holds ``options.inflight_n`` generations polled every ``interval`` seconds; returns the figures."""
    system = await start_system(options)
    try:
        model = await system.configure(interval=interval)
        box = await system.create_box(f"in-flight {interval:g}s")
        reference_task = await _reference_task(system)

        ramp_started = time.time()
        accepted, in_flight = await ramp(system, box, model, options)
        ramp_seconds = time.time() - ramp_started
        logger.info(
            "%d generations submitted, %d in flight after %.0f s", len(accepted), in_flight, ramp_seconds
        )

        window = options.window_for(interval)
        get_before = await _reference_get(system, reference_task)
        sampler = system.sampler(interval=1.0)
        sampler.start()
        window_start = time.time()
        await asyncio.sleep(window)  # the measurement lasts this long; nothing is waited for
        window_end = time.time()
        measurement = await sampler.stop()
        get_after = await _reference_get(system, reference_task)
        reference = {
            "cpu_ms_per_get": (get_before["cpu_ms_per_get"] + get_after["cpu_ms_per_get"]) / 2,
            "event_loop": get_before.get("event_loop"),
            "stack": get_before.get("stack"),
            "before": get_before,
            "after": get_after,
        }
        logger.info("bare GET before / after the window: %s", reference)
        profiles = await profile_hottest(system, measurement.cpu, options) if options.profile else {}

        release_start = time.time() + 1.0
        await system.provider_post("/_demo/release", {"at": release_start, "over": options.task_seconds})
        ids = set(accepted)
        drained = await system.events.wait_finished(
            ids, timeout=options.task_seconds + 3 * interval + options.drain_timeout
        )
        release_end = time.time()
        tasks = [t for t in await system.provider_get("/_demo/tasks") if t["task_id"] != reference_task]
        by_task = {t["task_id"]: t for t in tasks}

        figures: dict[str, Any] = {
            "interval_s": interval,
            "requested": options.inflight_n,
            "submitted": len(accepted),
            "in_flight": in_flight,
            "ramp_seconds": ramp_seconds,
            "submissions_per_s": len(accepted) / ramp_seconds if ramp_seconds else 0.0,
            "window_s": window_end - window_start,
            "finishes_spread_s": options.task_seconds,
            "reference_httpx_get": reference,
            **poll_figures(tasks, window_start, window_end, interval),
        }
        figures["polls_per_s"] = figures["polls"] / figures["window_s"]
        figures["intended_polls_per_s"] = in_flight / interval
        figures["intended_polls"] = in_flight * figures["window_s"] / interval
        figures["polls_over_intended"] = ratio(figures["polls"], figures["intended_polls"])
        polls = max(figures["polls"], 1)
        figures["cpu_ms_per_poll"] = {name: 1000 * cpu / polls for name, cpu in measurement.cpu.items()}
        figures.update(
            _cpu_figures(measurement, polls, figures["intended_polls"], reference["cpu_ms_per_get"])
        )
        figures["accounting"] = process_list(measurement)
        figures["cpu_percent"] = {name: measurement.cpu_percent(name) for name in measurement.cpu}
        figures["cpu_percent"]["others"] = measurement.others_cpu_percent
        figures["cpu_percent_services"] = sum(figures["cpu_percent"][name] for name in SERVICES)
        figures["adapter_replicas"] = options.adapter_replicas
        figures["rss_max_mb"] = {name: value / 1e6 for name, value in measurement.rss_max.items()}
        figures["rss_mb_services"] = measurement.rss_max_of(SERVICES) / 1e6
        figures["rss_mb_all_in"] = measurement.rss_max_of(ALL_IN) / 1e6
        figures["cpu_percent_all_in"] = 100 * measurement.cpu_of(ALL_IN) / measurement.seconds
        if profiles:
            figures["profiles"] = profiles

        lags: list[float] = []
        seen_lags: list[float] = []
        to_seen: list[float] = []
        for asset, completed_at in system.events.completed.items():
            task = by_task.get(system.events.task_of.get(asset, ""))
            if asset not in ids or task is None or task["finish_at"] is None:
                continue
            lags.append(completed_at - task["finish_at"])
            if task["first_finished_poll"] is not None:
                seen_lags.append(completed_at - task["first_finished_poll"])
                to_seen.append(task["first_finished_poll"] - task["finish_at"])
        # The lag's two parts, and how late polls were while the tasks finished (the window above
        # measures them before, while every task is still held).
        figures["finish_to_success_poll_s"] = summary(to_seen)
        release = poll_figures(tasks, release_start, release_end, interval)
        figures["release"] = {"seconds": release_end - release_start, **release}
        figures["drained"] = drained
        figures["completions_expected"] = len(ids)
        figures["completed"] = sum(1 for i in ids if i in system.events.completed)
        figures["failed"] = sum(1 for i in ids if i in system.events.failed)
        figures["completion_lag_s"] = summary(lags)
        figures["success_seen_to_completed_s"] = summary(seen_lags)
        figures["within_interval"] = sum(1 for lag in lags if lag <= interval)
        logger.info(
            "in-flight %gs: %d held, %.0f of %.0f polls/s, %.3f ms CPU/poll (%.3f all-in), lag p99 %.1f s",
            interval,
            in_flight,
            figures["polls_per_s"],
            figures["intended_polls_per_s"],
            figures["cpu_ms_per_poll_services"],
            figures["cpu_ms_per_poll_all_in"],
            figures["completion_lag_s"].get("p99", float("nan")),
        )
        return figures
    finally:
        await system.stop()
