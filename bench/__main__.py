"""`make bench`: ``python -m bench [throughput|inflight|ingest|api ...] [--n N] [...]``.

With no names every benchmark runs, at the issue's sizes. Each benchmark starts its own system, so any
one runs alone; results so far are written after each one, so a stopped run leaves what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import signal
import time
import traceback
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from bench import report
from bench.options import Options
from bench.system import postgres_available

__all__ = ["main"]

logger = logging.getLogger("bench")

BENCHMARKS = ("api", "throughput", "ingest", "inflight", "callbacks")


def _parse(argv: list[str] | None) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "benchmarks", nargs="*", metavar="BENCHMARK", help=f"any of {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument(
        "--n", type=int, help="generations: throughput's N and in-flight's N (callbacks: as in-flight)"
    )
    parser.add_argument("--throughput-n", type=int, help="throughput generations (default 2000)")
    parser.add_argument("--inflight-n", type=int, help="generations held in flight (default 10000)")
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
        help="skip the py-spy profiles (throughput; in-flight, after its window)",
    )
    parser.add_argument("--output", type=Path, help="JSON results (default bench/results/latest.json)")
    args = parser.parse_args(argv)
    unknown = set(args.benchmarks) - {*BENCHMARKS, "all"}
    if unknown:
        parser.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {', '.join(BENCHMARKS)}")
    options = Options()
    if args.n:
        options.n = options.inflight_n = args.n
    if args.throughput_n:
        options.n = args.throughput_n
    if args.inflight_n:
        options.inflight_n = args.inflight_n
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
    if args.output:
        options.output = args.output
    names = [name for name in args.benchmarks if name != "all"] or list(BENCHMARKS)
    return names, options


async def _run(names: list[str], options: Options) -> dict[str, Any]:
    from bench import api, callbacks, inflight, ingest, throughput

    started = time.time()
    results: dict[str, Any] = {}
    option_dump = {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(options).items()}
    for name in names:
        logger.info("running %s", name)
        load_before = os.getloadavg()
        try:
            if name == "throughput":
                results["throughput"] = await throughput.run(options)
            elif name == "api":
                results["api"] = await api.run(options)
            elif name == "ingest":
                results["ingest"] = await ingest.run(options)
            elif name == "callbacks":
                results["callbacks"] = await callbacks.run(options)
            elif name == "inflight":
                for interval in options.intervals:
                    results[f"inflight-{interval:g}s"] = await inflight.run(options, interval)
                    report.write(options.output, results, option_dump, started)
            # Others' work on a shared machine shows here; the same-run references absorb some of it.
            for key in [k for k in results if k == name or k.startswith(f"{name}-")]:
                results[key].setdefault("loadavg_before", load_before)
                results[key].setdefault("loadavg_after", os.getloadavg())
        except Exception as error:
            logger.error("%s failed: %s", name, error)
            results[name] = {
                "error": f"{type(error).__name__}: {error}",
                "trace": traceback.format_exc()[-3000:],
            }
        report.write(options.output, results, option_dump, started)
    return results


async def _guarded(work: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
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
    logger.info("benchmarks %s on %s; machine %s", names, options.database, report.machine())
    try:
        results = asyncio.run(_guarded(_run(names, options)))
    except asyncio.CancelledError:
        logger.warning("stopped; what was measured so far is in %s", options.output)
        raise SystemExit(1) from None
    print()
    print(report.table(report.rows(results)))
    print(f"\nresults: {options.output}")


if __name__ == "__main__":
    main()
