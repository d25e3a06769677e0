"""`make bench`: ``python -m bench [throughput|inflight|ingest|api ...] [--n N] [...]``.

With no names every benchmark runs, at the issue's sizes, ``--repeats`` times (default 3) each, so
every figure comes as min / median / max. Each run starts its own system, so any one runs alone;
results so far are written after each run, so a stopped run leaves what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import logging
import os
import signal
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from bench import repeats, report, runinfo
from bench.options import Options
from bench.system import postgres_available, postgres_version

__all__ = ["main"]

logger = logging.getLogger("bench")

T = TypeVar("T")

BENCHMARKS = ("api", "throughput", "ingest", "inflight", "callbacks", "queueing", "scale", "day")


def _parse(argv: list[str] | None) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "benchmarks", nargs="*", metavar="BENCHMARK", help=f"any of {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument(
        "--n",
        type=int,
        help="generations: throughput's, in-flight's (callbacks: as in-flight) and queueing's N",
    )
    parser.add_argument("--throughput-n", type=int, help="throughput generations (default 2000)")
    parser.add_argument("--inflight-n", type=int, help="generations held in flight (default 10000)")
    parser.add_argument("--queueing-n", type=int, help="generations through the limited keys (default 1000)")
    parser.add_argument(
        "--intervals", help="in-flight poll intervals in seconds, comma-separated (default 10,60)"
    )
    parser.add_argument(
        "--window", type=float, help="in-flight measurement seconds (default 3 intervals, ≥ 60)"
    )
    parser.add_argument(
        "--task-seconds", type=float, help="in-flight finishes spread over this (default 300)"
    )
    parser.add_argument("--ramp-seconds", type=float, help="in-flight ramp cut-off (default 600)")
    parser.add_argument("--ingest-mib", type=int, help="ingest result size in MiB (default 1024)")
    parser.add_argument("--result-kb", type=int, help="throughput result size in KiB (default 100)")
    parser.add_argument("--api-seconds", type=float, help="seconds per API measurement (default 10)")
    parser.add_argument("--concurrency", type=int, help="submission and API concurrency (default 32)")
    parser.add_argument(
        "--database",
        choices=["postgresql", "sqlite"],
        help="database of both services (default: local PostgreSQL if it answers, else SQLite)",
    )
    parser.add_argument(
        "--adapter-replicas", type=int, help="provider-adapter processes, calls spread over them (default 1)"
    )
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="skip the py-spy profiles (throughput; in-flight, after its window; scale, after its last "
        "level; day, in its drain)",
    )
    parser.add_argument(
        "--scale-levels",
        help="scale: held generations stepped through, comma-separated (default 5000,…,100000)",
    )
    parser.add_argument("--scale-interval", type=float, help="scale: poll interval in seconds (default 60)")
    parser.add_argument("--minutes", type=float, help="day: minutes of arrivals (default 10)")
    parser.add_argument("--day-rate", type=float, help="day: generations arriving per second (default 2)")
    parser.add_argument(
        "--realistic",
        action="store_true",
        help="realistic work: provider time 5–120 s, results 100 KB–20 MB, several models and boxes, "
        "every stored object checked (throughput; default: instant, 100 KB, one model)",
    )
    parser.add_argument("--seed", type=int, help="seed of the realistic work's plan (default 27)")
    parser.add_argument(
        "--repeats", type=int, help="runs of each benchmark; figures are min / median / max (default 3)"
    )
    parser.add_argument("--output", type=Path, help="JSON results (default bench/results/latest.json)")
    args = parser.parse_args(argv)
    unknown = set(args.benchmarks) - {*BENCHMARKS, "all"}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
    options = Options()
    if args.n:
        options.n = options.inflight_n = options.queueing_n = args.n
    if args.throughput_n:
        options.n = args.throughput_n
    if args.inflight_n:
        options.inflight_n = args.inflight_n
    if args.queueing_n:
        options.queueing_n = args.queueing_n
    if args.intervals:
        options.intervals = [float(x) for x in args.intervals.split(",") if x]
    if args.window:
        options.window = args.window
    if args.task_seconds:
        options.task_seconds = args.task_seconds
    if args.ramp_seconds:
        options.ramp_timeout = args.ramp_seconds
    if args.ingest_mib:
        options.ingest_bytes = args.ingest_mib * 1024**2
    if args.result_kb:
        options.result_bytes = args.result_kb * 1024
    if args.api_seconds:
        options.api_seconds = args.api_seconds
    if args.concurrency:
        options.concurrency = options.api_concurrency = args.concurrency
    if args.database:
        options.database = args.database
    elif not asyncio.run(postgres_available()):
        options.database = "sqlite"
    if args.adapter_replicas:
        options.adapter_replicas = args.adapter_replicas
    options.profile = not args.no_profile
    if args.repeats:
        options.repeats = args.repeats
    options.realistic = args.realistic
    if args.scale_levels:
        options.scale_levels = [int(x) for x in args.scale_levels.split(",") if x]
    if args.scale_interval:
        options.scale_interval = args.scale_interval
    if args.minutes:
        options.day_minutes = args.minutes
    if args.day_rate:
        options.day_rate = args.day_rate
    if args.seed is not None:
        options.seed = args.seed
    if args.output:
        options.output = args.output
    names = [name for name in args.benchmarks if name != "all"] or list(BENCHMARKS)
    return names, options


def _units(name: str, options: Options) -> list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]]:
    """What one run of benchmark ``name`` measures: (results key, how to measure it) for each part."""
    from bench import api, callbacks, day, inflight, ingest, queueing, scale, throughput

    if name == "inflight":
        return [
            (f"inflight-{interval:g}s", functools.partial(inflight.run, options, interval))
            for interval in options.intervals
        ]
    runs = {
        "throughput": throughput.run,
        "api": api.run,
        "ingest": ingest.run,
        "callbacks": callbacks.run,
        "queueing": queueing.run,
        "scale": scale.run,
        "day": day.run,
    }
    return [(name, functools.partial(runs[name], options))]


async def _measured(measure: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """The figures ``measure`` returns, or what went wrong (one failed run does not end the others)."""
    load_before, started = os.getloadavg(), time.time()
    try:
        figures = await measure()
    except Exception as error:
        logger.error("run failed: %s", error)
        figures = {"error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()[-3000:]}
    # Others' work on a shared machine shows here; the same-run references absorb some of it.
    figures.setdefault("started_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)))
    figures.setdefault("loadavg_before", list(load_before))
    figures.setdefault("loadavg_after", list(os.getloadavg()))
    return figures


async def _run(names: list[str], options: Options) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs each benchmark ``options.repeats`` times; returns the results and commit, host, versions."""
    started = time.time()
    info = runinfo.run_info()
    info["versions"]["postgresql"] = await postgres_version() if options.database == "postgresql" else ""
    logger.info("commit %s%s", info["git"]["commit"][:12], " (dirty tree)" if info["git"]["dirty"] else "")
    results: dict[str, Any] = {}
    option_dump = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(options).items()}
    for name in names:
        for repeat in range(1, options.repeats + 1):
            logger.info("running %s, %d of %d", name, repeat, options.repeats)
            for key, measure in _units(name, options):
                figures = await _measured(measure)
                figures["repeat"] = repeat
                entry = results.setdefault(key, {"runs": []})
                entry["runs"].append(figures)
                entry.update(repeats.combine(entry["runs"]))
                report.write(options.output, results, option_dump, started, info)
    return results, info


async def _guarded(work: Coroutine[Any, Any, T]) -> T:
    """Runs ``work`` so that SIGTERM or SIGINT cancels it: every system it started is stopped."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    return await task


def main(argv: list[str] | None = None) -> None:
    """Runs the chosen benchmarks, prints the table and writes the JSON results."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    names, options = _parse(argv)
    logger.info("benchmarks %s on %s; host %s", names, options.database, runinfo.host())
    try:
        results, info = asyncio.run(_guarded(_run(names, options)))
    except asyncio.CancelledError:
        logger.warning("stopped; what was measured so far is in %s", options.output)
        raise SystemExit(1) from None
    print()
    print(report.header(info, results))
    print(report.table(results))
    print(f"\nresults: {options.output}")


if __name__ == "__main__":
    main()
