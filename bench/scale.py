"""Scale: the most generations held in flight at a 60 s poll interval before polls fall behind.

One system; held generations are added level by level (``scale_levels``: 5,000 … 100,000). At each
level, once every new task has been polled once, a window of ``scale_window_intervals`` intervals
measures what the in-flight benchmark measures: polls against intended, lateness of every gap
between a task's polls, CPU (services and all-in) and resident memory all-in (services + NATS +
database + S3, the most held at one sample). The steps stop at the first level whose lateness p99
exceeds ``scale_lateness_limit`` (1 s), whose ramp could not place every generation, or where the
services, NATS and the database together held more than ``scale_memory_limit`` (2 GiB, the issue's
target; S3's memory is reported all-in besides); the result is the highest level that kept every
limit, with its memory.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from bench.accounting import ALL_IN, SERVICES, per_unit, process_list, ratio
from bench.inflight import poll_figures, profile_hottest, ramp
from bench.options import Options
from bench.system import start_system

__all__ = ["level_verdict", "run"]

logger = logging.getLogger(__name__)

# What the memory target counts: the services, NATS and the database.
_MEMORY_TARGET = (*SERVICES, "nats", "database")


def level_verdict(level: dict[str, Any], options: Options) -> list[str]:
    """Why a level fell behind (empty: it kept every limit)."""
    reasons = []
    if level["in_flight"] < level["level"]:
        reasons.append(f"only {level['in_flight']} of {level['level']} in flight after the ramp")
    p99 = level["lateness_s"].get("p99")
    if p99 is None or p99 > options.scale_lateness_limit:
        reasons.append(f"poll lateness p99 {p99} s > {options.scale_lateness_limit:g} s")
    if level["rss_bytes_services_nats_database"] > options.scale_memory_limit:
        held = level["rss_bytes_services_nats_database"] / 1024**3
        reasons.append(f"services + NATS + database resident {held:.2f} GiB over the limit")
    return reasons


async def run(options: Options) -> dict[str, Any]:
    """Steps up held generations until polls fall behind; returns every level and the highest kept."""
    interval = options.scale_interval
    system = await start_system(options)
    try:
        model = await system.configure(interval=interval)
        box = await system.create_box("scale")
        held = 0
        levels: list[dict[str, Any]] = []
        last_cpu: dict[str, float] = {}
        for target in options.scale_levels:
            step = dataclasses.replace(options, inflight_n=target - held)
            if step.inflight_n <= 0:
                continue
            ramp_started = time.time()
            _, added = await ramp(system, box, model, step)
            held += added
            ramp_seconds = time.time() - ramp_started

            window = options.scale_window_intervals * interval
            sampler = system.sampler(interval=1.0)
            sampler.start()
            window_start = time.time()
            await asyncio.sleep(window)  # the measurement lasts this long; nothing is waited for
            window_end = time.time()
            measurement = await sampler.stop()
            # The polls before the window matter only as the start of its first gap per task.
            tasks = await system.provider_get(f"/_demo/tasks?polls_since={window_start - 2 * interval}")
            polls = poll_figures(tasks, window_start, window_end, interval)
            intended = held * (window_end - window_start) / interval
            cpu = per_unit(measurement, polls["polls"])
            last_cpu = measurement.cpu
            level: dict[str, Any] = {
                "level": target,
                "in_flight": held,
                "ramp_seconds": ramp_seconds,
                "window_s": window_end - window_start,
                "polls": polls["polls"],
                "intended_polls": intended,
                "polls_over_intended": ratio(polls["polls"], intended),
                "lateness_s": polls["lateness_s"],
                "cpu_ms_per_poll_services": cpu["services"],
                "cpu_ms_per_poll_all_in": cpu["all_in"],
                "cpu_percent_services": 100 * measurement.cpu_of(SERVICES) / measurement.seconds,
                "cpu_percent_all_in": 100 * measurement.cpu_of(ALL_IN) / measurement.seconds,
                "rss_bytes_services": measurement.rss_max_of(SERVICES),
                "rss_bytes_services_nats_database": measurement.rss_max_of(_MEMORY_TARGET),
                "rss_bytes_all_in": measurement.rss_max_of(ALL_IN),
                "rss_max_mb": {name: value / 1e6 for name, value in measurement.rss_max.items()},
                "accounting": process_list(measurement),
            }
            level["fell_behind"] = level_verdict(level, options)
            levels.append(level)
            logger.info(
                "scale: %d held, lateness p99 %s s, %.0f MB all-in, %.0f %% CPU all-in%s",
                held,
                level["lateness_s"].get("p99"),
                level["rss_bytes_all_in"] / 1e6,
                level["cpu_percent_all_in"],
                f"; behind: {level['fell_behind']}" if level["fell_behind"] else "",
            )
            if level["fell_behind"]:
                break
        # Where the time goes at the last level measured: the limit, if the steps reached it.
        profiles = (
            await profile_hottest(system, last_cpu, options, "profile-scale")
            if options.profile and levels
            else {}
        )
        kept = [level for level in levels if not level["fell_behind"]]
        best = kept[-1] if kept else None
        return {
            "interval_s": interval,
            "levels": levels,
            "highest_kept": best["in_flight"] if best else 0,
            "rss_mb_all_in_at_highest": best["rss_bytes_all_in"] / 1e6 if best else None,
            "rss_mb_services_at_highest": best["rss_bytes_services"] / 1e6 if best else None,
            "rss_mb_services_nats_database_at_highest": best["rss_bytes_services_nats_database"] / 1e6
            if best
            else None,
            "lateness_p99_at_highest": best["lateness_s"].get("p99") if best else None,
            "fell_behind_at": levels[-1]["level"] if levels and levels[-1]["fell_behind"] else None,
            "why": levels[-1]["fell_behind"] if levels else [],
            "limits": {
                "lateness_p99_s": options.scale_lateness_limit,
                "memory_bytes_services_nats_database": options.scale_memory_limit,
            },
            **({"profiles": profiles, "profiled_in_flight": levels[-1]["in_flight"]} if profiles else {}),
        }
    finally:
        await system.stop()
