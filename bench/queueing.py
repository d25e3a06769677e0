"""Queueing: generations flowing through a provider's limited keys, against the ideal time.

The fake provider accepts ``queueing_keys`` accounts' keys (2) and runs at most ``queueing_key_limit``
tasks per key (5; over it, HTTP 429); each task takes ``queueing_task_seconds`` (2 s). The provider's
own key and the others are its pool, each with ``max_concurrency`` = that limit. N generations (1,000)
are submitted at once through the gateway; all but the ten that fit wait PENDING in the provider's
fair queue and start as slots free. Figures:

* completion time, first submission → last COMPLETED event, against the ideal N / slots × task
  seconds (1,000 / 10 × 2 s = 200 s): what the scheduler loses per turn of a slot (noticing the
  end by polling, the queue's turn, the held-back retry's delay);
* the scheduler's CPU over the run: each service, the four together, and all-in (with NATS, S3 and
  the database); the fake provider and this driver apart;
* that the limits held: the provider's peak per key and its 429s (0 when our limits keep every key
  under the provider's), the longest queue seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from bench.options import Options
from bench.stats import summary
from bench.system import SERVICES, System, start_system
from bench.throughput import submit_many

__all__ = ["run"]

logger = logging.getLogger(__name__)

_PROVIDER = "bench-queueing"
_INFRASTRUCTURE = ("nats", "s3", "database")


async def _pool(system: System, options: Options) -> None:
    """The provider's own key and the others, each limited to ``queueing_key_limit``."""
    assert system.http is not None
    keys = f"/api/providers/{_PROVIDER}/keys/"
    limit = options.queueing_key_limit
    (own,) = (await system.http.get(keys)).json()["items"]
    (await system.http.patch(f"{keys}{own['id']}/", json={"max_concurrency": limit})).raise_for_status()
    for number in range(2, options.queueing_keys + 1):
        body = {"name": f"account-{number}", "api_key": _key(number), "max_concurrency": limit}
        (await system.http.post(keys, json=body)).raise_for_status()


def _key(number: int) -> str:
    return f"bench-provider-key-{number}"


async def _watch_queue(system: System, longest: list[int]) -> None:
    """Samples the provider's queue length every second (the longest seen goes in ``longest``)."""
    assert system.http is not None
    while True:
        with contextlib.suppress(Exception):  # a sample lost under load is no figure lost
            answer = await system.http.get(f"/api/providers/{_PROVIDER}/keys/")
            longest[0] = max(longest[0], int(answer.json().get("queued", 0)))
        await asyncio.sleep(1.0)  # the sampling period, not a wait for state


async def _generations(system: System, box: str, model: str, n: int, options: Options) -> dict[str, Any]:
    config = {"finish_after": options.queueing_task_seconds}
    started = time.time()
    accepted = await submit_many(system, box, model, n, options.concurrency, config)
    submitted = time.time()
    ids = set(accepted)
    drained = await system.events.wait_finished(ids, timeout=options.queueing_timeout)
    completed = [system.events.completed[i] for i in ids if i in system.events.completed]
    failed = [i for i in ids if i in system.events.failed]
    end = max(completed) if completed else time.time()
    figures: dict[str, Any] = {
        "generations": n,
        "completed": len(completed),
        "failed": len(failed),
        "drained": drained,
        "seconds": end - started,
        "submit_seconds": submitted - started,
        "latency_s": summary(
            [system.events.completed[i] - accepted[i] for i in ids if i in system.events.completed]
        ),
    }
    if failed:
        figures["first_failure"] = system.events.failed[failed[0]]
    return figures


async def run(options: Options) -> dict[str, Any]:
    """Runs the queueing benchmark on a fresh system; returns its figures."""
    extra = tuple(_key(number) for number in range(2, options.queueing_keys + 1))
    system = await start_system(options, extra_keys=extra, per_key_limit=options.queueing_key_limit)
    try:
        model = await system.configure(interval=options.queueing_poll_seconds, name=_PROVIDER)
        await _pool(system, options)
        box = await system.create_box("queueing")
        slots = options.queueing_keys * options.queueing_key_limit
        warm = await _generations(system, box, model, min(slots, options.queueing_n), options)
        logger.info("warm-up: %d completed in %.1f s", warm["completed"], warm["seconds"])

        longest = [0]
        watcher = asyncio.create_task(_watch_queue(system, longest))
        sampler = system.sampler()
        sampler.start()
        try:
            figures = await _generations(system, box, model, options.queueing_n, options)
        finally:
            measurement = await sampler.stop()
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        stats = await system.provider_get("/_demo/stats")

        n, seconds = options.queueing_n, figures["seconds"]
        ideal = n / slots * options.queueing_task_seconds
        turns = n / slots
        services_cpu = sum(measurement.cpu[name] for name in SERVICES)
        all_in_cpu = services_cpu + sum(measurement.cpu[name] for name in _INFRASTRUCTURE)
        figures.update(
            keys=options.queueing_keys,
            key_limit=options.queueing_key_limit,
            task_seconds=options.queueing_task_seconds,
            poll_seconds=options.queueing_poll_seconds,
            ideal_seconds=ideal,
            ratio_to_ideal=seconds / ideal if ideal else 0.0,
            # How much longer than a task each turn of a slot took, on average.
            overhead_per_turn_s=seconds / turns - options.queueing_task_seconds,
            cpu_s={name: value for name, value in measurement.cpu.items()},
            cpu_s_services=services_cpu,
            cpu_s_all_in=all_in_cpu,
            cpu_ms_per_generation_services=1000 * services_cpu / max(figures["completed"], 1),
            cpu_percent={name: measurement.cpu_percent(name) for name in measurement.cpu},
            cpu_percent_others=measurement.others_cpu_percent,
            longest_queue=longest[0],
            provider_peak_by_key=stats.get("peak_by_key", {}),
            provider_refused_429=stats.get("refused_over_limit", 0),
        )
        logger.info(
            "queueing: %d/%d completed in %.1f s (ideal %.0f s, ×%.2f); services %.1f CPU s, all-in %.1f",
            figures["completed"],
            n,
            seconds,
            ideal,
            figures["ratio_to_ideal"],
            services_cpu,
            all_in_cpu,
        )
        return figures
    finally:
        await system.stop()
