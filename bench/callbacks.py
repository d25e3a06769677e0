"""Completion lag with provider callbacks: benchmark 3 again, the provider calling back.

The same as the in-flight run's completion lag (:mod:`bench.inflight`), with the orchestrator given a
public URL (the gateway's), so every submit carries a callback URL, and the fake provider calling
each task back, signed as Kie signs, the moment it finishes:

1. Ramp: N generations are submitted through the gateway, each held running at the provider, polled
   every ``callback_interval`` seconds (60) — and, callbacks being expected, at the profile's sparse
   safety interval (5 min) instead.
2. Release: the provider finishes the held tasks one after another over ``task_seconds`` (5 min)
   and calls each back as it finishes. Lag = the asset's COMPLETED event − the moment its task
   finished at the provider; split into finish → callback sent, and callback sent → COMPLETED (the
   gateway, the orchestrator's check with the adapter, the poll it causes, the copy).

The polling lag at the same interval is the in-flight run's (``inflight-60s``), shown next to it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from bench.inflight import ramp
from bench.options import Options
from bench.stats import summary
from bench.system import start_system

__all__ = ["run"]

logger = logging.getLogger(__name__)


async def run(options: Options) -> dict[str, Any]:
    """Holds ``options.inflight_n`` generations, releases them, and measures how soon each completes."""
    interval = options.callback_interval
    system = await start_system(options, callbacks=True)
    try:
        model = await system.configure(interval=interval, name="bench-callbacks")
        box = await system.create_box("callbacks")
        ramp_started = time.time()
        accepted, in_flight = await ramp(system, box, model, options, until_polled=False)
        ramp_seconds = time.time() - ramp_started
        logger.info(
            "%d generations submitted, %d at the provider after %.0f s",
            len(accepted),
            in_flight,
            ramp_seconds,
        )

        release_start = time.time() + 1.0
        await system.provider_post("/_demo/release", {"at": release_start, "over": options.task_seconds})
        ids = set(accepted)
        drained = await system.events.wait_finished(ids, timeout=options.task_seconds + options.drain_timeout)
        release_end = time.time()
        by_task = {task["task_id"]: task for task in await system.provider_get("/_demo/tasks")}

        lags: list[float] = []
        to_callback: list[float] = []
        callback_to_completed: list[float] = []
        for asset, completed_at in system.events.completed.items():
            task = by_task.get(system.events.task_of.get(asset, ""))
            if asset not in ids or task is None or task["finish_at"] is None:
                continue
            lags.append(completed_at - task["finish_at"])
            if task["called_back_at"] is not None:
                to_callback.append(task["called_back_at"] - task["finish_at"])
                callback_to_completed.append(completed_at - task["called_back_at"])
        polls = sum(
            1
            for task in by_task.values()
            for moment in task["polls"]
            if release_start <= moment <= release_end
        )
        statuses = [
            task["callback_status"] for task in by_task.values() if task["called_back_at"] is not None
        ]
        figures: dict[str, Any] = {
            "interval_s": interval,
            "requested": options.inflight_n,
            "submitted": len(accepted),
            "in_flight": in_flight,
            "ramp_seconds": ramp_seconds,
            "finishes_spread_s": options.task_seconds,
            "release_seconds": release_end - release_start,
            "drained": drained,
            "completions_expected": len(ids),
            "completed": sum(1 for i in ids if i in system.events.completed),
            "failed": sum(1 for i in ids if i in system.events.failed),
            "callbacks_sent": len(statuses),
            "callbacks_answered_200": sum(1 for status in statuses if status == 200),
            "polls_during_release": polls,
            "completion_lag_s": summary(lags),
            "finish_to_callback_sent_s": summary(to_callback),
            "callback_to_completed_s": summary(callback_to_completed),
            "within_1s": sum(1 for lag in lags if lag <= 1.0),
        }
        logger.info(
            "callbacks: %d of %d completed, %d callbacks (%d answered 200), lag p50 %.2f s p99 %.2f s",
            figures["completed"],
            len(ids),
            len(statuses),
            figures["callbacks_answered_200"],
            figures["completion_lag_s"].get("p50", float("nan")),
            figures["completion_lag_s"].get("p99", float("nan")),
        )
        return figures
    finally:
        await system.stop()
