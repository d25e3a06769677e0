"""`make chaos`: starts the system, runs N generations through the public HTTP API while the
disruptions happen, waits for every asset to end, checks them all, prints one verdict line and
writes ``bench/results/chaos-latest.json``. Exit status 1 when the verdict is FAIL.

Generations start evenly over the span (a quarter second each, at least a minute), one family after
another, each with a prompt of its own and that prompt as its ``Idempotency-Key``: Generate is
retried through gateway kills and outages, and must still make one asset per generation.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

from assetgen_dev.chaos.check import TERMINAL, Generation, Verdict, judge
from assetgen_dev.chaos.disruptions import SCHEDULE, Event, disrupt
from assetgen_dev.chaos.faults import FaultPlan
from assetgen_dev.chaos.providers import FAMILIES
from assetgen_dev.chaos.snapshot import Code, snapshot, working_tree
from assetgen_dev.chaos.system import ChaosSystem, start_system

__all__ = ["generate_all", "main", "run", "wait_ended"]

logger = logging.getLogger("assetgen.chaos")

_RETRYABLE = {408, 429, 500, 502, 503, 504}
_GENERATE_TIMEOUT = 300.0
_STARTING_AT_ONCE = 32


async def _generate(http: httpx.AsyncClient, box: str, model: str, prompt: str, family: str) -> Generation:
    """One Generate, retried (same key) until it answers 202 or a definite refusal, or times out."""
    deadline = time.monotonic() + _GENERATE_TIMEOUT
    delay = 0.5
    last = ""
    while time.monotonic() < deadline:
        try:
            response = await http.post(
                f"/api/boxes/{box}/generate/",
                json={"model": model, "prompt": prompt},
                headers={"Idempotency-Key": prompt},
            )
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 202:
                return Generation(prompt, family, str(response.json()["id"]))
            last = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code not in _RETRYABLE:
                return Generation(prompt, family, error=last)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)
    return Generation(prompt, family, error=f"no answer within {_GENERATE_TIMEOUT:.0f}s: {last}")


async def generate_all(
    http: httpx.AsyncClient,
    box: str,
    models: dict[str, str],
    n: int,
    *,
    span: float,
    started: float,
    run_id: str,
) -> list[Generation]:
    """``n`` generations started evenly over ``span`` seconds from ``started``, families in turn."""
    gate = asyncio.Semaphore(_STARTING_AT_ONCE)

    async def one(index: int) -> Generation:
        await asyncio.sleep(max(0.0, started + span * index / n - time.monotonic()))
        family = FAMILIES[index % len(FAMILIES)]
        prompt = f"chaos {run_id} #{index:05d}: a lighthouse at dusk ({family})"
        async with gate:
            return await _generate(http, box, models[family], prompt, family)

    return list(await asyncio.gather(*(one(index) for index in range(n))))


async def _list_assets(http: httpx.AsyncClient, box: str) -> dict[str, dict[str, Any]]:
    """Every asset of the box, read page by page (retried while the gateway is away)."""
    assets: dict[str, dict[str, Any]] = {}
    cursor = ""
    while True:
        params = {"page_size": "500", **({"cursor": cursor} if cursor else {})}
        for attempt in range(60):
            try:
                response = await http.get(f"/api/boxes/{box}/assets/", params=params)
                if response.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
        else:
            raise RuntimeError("the gateway did not list the box's assets for minutes")
        page = response.json()
        for asset in page["items"]:
            assets[asset["id"]] = asset
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return assets


async def wait_ended(
    http: httpx.AsyncClient, box: str, wanted: set[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Polls the box until every wanted asset has ended, or ``timeout``; its last listing of the box."""
    deadline = time.monotonic() + timeout
    reported = time.monotonic()
    while True:
        assets = await _list_assets(http, box)
        open_ = [a for a in wanted if assets.get(a, {}).get("status") not in TERMINAL]
        if not open_ or time.monotonic() > deadline:
            return assets
        if time.monotonic() - reported > 30:
            reported = time.monotonic()
            logger.info("chaos: waiting for %d of %d assets to end", len(open_), len(wanted))
        await asyncio.sleep(3)


def _report(
    options: argparse.Namespace,
    verdict: Verdict,
    line: str,
    seconds: float,
    records: list[dict[str, Any]],
    events: list[Event],
    generations: list[Generation],
    plan: FaultPlan,
    code: Code,
) -> dict[str, Any]:
    faults: dict[str, Any] = {}
    for record in records:
        faults[record["family"]] = {
            **record["faults"],
            "task_failures": record["task_failures"],
            "tasks": len(record["tasks"]),
            "submits": len(record["submits"]),
        }
    return {
        "verdict": line,
        "passed": verdict.passed,
        "commit": code.commit,
        "code": code.description,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "duration_seconds": round(seconds, 1),
        "n": options.n,
        "span_seconds": options.span,
        "plan": asdict(plan),
        "counts": {
            "generations": verdict.generations,
            "completed": verdict.completed,
            "failed": dict(verdict.failed),
            "stuck": verdict.stuck,
            "wrong": verdict.wrong,
            "unexplained": verdict.unexplained,
            "duplicates": verdict.duplicates,
            "orphans": verdict.orphans,
            "extra_assets": verdict.extra_assets,
            "canceled": verdict.canceled,
            "abandoned_provider_tasks": verdict.abandoned_tasks,
            "by_family": {family: sum(1 for g in generations if g.family == family) for family in FAMILIES},
        },
        "faults": faults,
        "disruptions": [event.to_json() for event in events],
        "problems": verdict.problems,
    }


async def run(options: argparse.Namespace) -> int:
    """The whole chaos run; the exit status."""
    began = time.monotonic()
    plan = FaultPlan(seed=options.seed)
    run_id = uuid.uuid4().hex[:8]
    repo = Path(_git_toplevel())
    source = Path(tempfile.mkdtemp(prefix="assetgen-chaos-code-"))
    try:
        code = working_tree(repo) if options.worktree else await asyncio.to_thread(snapshot, repo, source)
        logger.info(
            "chaos: starting the system (N=%d, span %.0f s, %s)", options.n, options.span, code.description
        )
        return await _run(options, plan, run_id, code, began)
    finally:
        shutil.rmtree(source, ignore_errors=True)


def _git_toplevel() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
    ).stdout.strip()


async def _run(options: argparse.Namespace, plan: FaultPlan, run_id: str, code: Code, began: float) -> int:
    system: ChaosSystem = await start_system(plan, code)
    supervision = asyncio.create_task(system.supervise())
    events: list[Event] = []
    try:
        assert system.http is not None
        models = await system.configure()
        response = await system.http.post("/api/boxes/", json={"name": f"chaos-{run_id}"})
        response.raise_for_status()
        box = str(response.json()["id"])
        logger.info("chaos: ready after %.0f s; generating", time.monotonic() - began)
        started = time.monotonic()
        generations, events = await asyncio.gather(
            generate_all(
                system.http, box, models, options.n, span=options.span, started=started, run_id=run_id
            ),
            disrupt(system, started, options.span, SCHEDULE),
        )
        logger.info("chaos: all started and disrupted after %.0f s; waiting", time.monotonic() - began)
        wanted = {g.asset_id for g in generations if g.asset_id}
        assets = await wait_ended(system.http, box, wanted, options.settle)
        records = await system.provider_records()
        async with system.lock:  # the bucket listed while S3 is surely up
            objects = await asyncio.to_thread(system.bucket_objects)
        if options.keep:  # everything the verdict is made of, next to the logs
            raw = {"generations": [asdict(g) for g in generations], "assets": assets, "records": records}
            (system.root / "raw.json").write_text(json.dumps(raw, indent=1))
            logger.info("chaos: logs, data and raw.json kept in %s", system.root)
    finally:
        supervision.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervision
        await system.stop(keep=options.keep)
    seconds = time.monotonic() - began
    adapter_kills = [e.at for e in events if e.target == "provider-adapter"]
    verdict = judge(generations, assets, records, objects, adapter_kills=adapter_kills)
    line = verdict.line(seconds)
    for problem in verdict.problems:
        logger.warning("chaos: %s", problem)
    report = _report(options, verdict, line, seconds, records, events, generations, plan, code)
    results = Path(options.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2) + "\n")
    print(line, flush=True)
    return 0 if verdict.passed else 1


def main(argv: list[str] | None = None) -> None:
    """``python -m assetgen_dev.chaos [--n N] [--span S] [--settle S] [--seed K] [--results PATH]``."""
    parser = argparse.ArgumentParser(description="AssetGen chaos run (make chaos)")
    parser.add_argument("--n", type=int, default=1000, help="generations (default 1000)")
    parser.add_argument(
        "--span", type=float, default=0.0, help="seconds over which they start (default: N/4, at least 60)"
    )
    parser.add_argument(
        "--settle", type=float, default=900.0, help="longest wait for every asset to end afterwards"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the providers' fault dice")
    parser.add_argument("--results", default="bench/results/chaos-latest.json")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder (logs, data)")
    parser.add_argument(
        "--worktree",
        action="store_true",
        help="run the services from the working tree as it is, not from a snapshot of HEAD",
    )
    options = parser.parse_args(argv)
    options.span = options.span or max(60.0, options.n / 4)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the run's story
    sys.exit(asyncio.run(run(options)))
