"""What chaos does to the system's processes, when, and the log of how each came back.

The orchestrator is SIGKILLed three times, the provider-adapter twice, storage and the gateway
once, NATS is SIGKILLed (and brought back by the supervisor, over its data) once, and S3 is stopped
for 15 s once; spread evenly over the span in which generations are started, interleaved so that no
two of one kind follow each other, each on time even while an earlier one has not come back. Each
entry of the log says when it happened, to which process, and how long until that process served
again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from dataclasses import asdict, dataclass
from typing import Any

from assetgen_dev.chaos.system import ChaosSystem
from assetgen_dev.embedded import EmbeddedProcess

__all__ = ["SCHEDULE", "Disruption", "Event", "disrupt", "schedule_times"]

logger = logging.getLogger(__name__)

KILL, STOP = "sigkill", "stop"
S3_DOWN_SECONDS = 15.0
_BACK_TIMEOUT = 180.0


@dataclass(frozen=True)
class Disruption:
    """One thing done to one process."""

    target: str  # a service name, "nats" or "s3"
    action: str = KILL


SCHEDULE = (
    Disruption("orchestrator"),
    Disruption("provider-adapter"),
    Disruption("nats"),
    Disruption("orchestrator"),
    Disruption("storage"),
    Disruption("s3", STOP),
    Disruption("provider-adapter"),
    Disruption("gateway"),
    Disruption("orchestrator"),
)


@dataclass
class Event:
    """A disruption as it happened: wall-clock time, offset into the run, pid, time until back."""

    target: str
    action: str
    at: float
    offset: float
    pid: int
    back_after: float | None = None

    def to_json(self) -> dict[str, Any]:
        """For the results file."""
        return asdict(self)


def schedule_times(count: int, span: float) -> list[float]:
    """``count`` offsets spread evenly inside ``(0, span)``: at 1/(count+1), 2/(count+1), … of it."""
    return [span * (index + 1) / (count + 1) for index in range(count)]


async def _kill_infra(system: ChaosSystem, server: EmbeddedProcess, event: Event) -> None:
    async with system.lock:  # not in the middle of a supervision round
        event.pid = server.process.pid
        os.kill(event.pid, signal.SIGKILL)
    deadline = time.monotonic() + _BACK_TIMEOUT
    while server.process.pid == event.pid or server.process.poll() is not None:
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.2)
    event.back_after = time.time() - event.at


async def _stop_s3(system: ChaosSystem, event: Event) -> None:
    s3 = system.s3
    async with system.lock:
        system.supervisor.infra.remove(s3)  # held down on purpose: not the supervisor's to restart
        event.pid = s3.process.pid
        await asyncio.to_thread(s3.stop)
    await asyncio.sleep(S3_DOWN_SECONDS)
    async with system.lock:
        await asyncio.to_thread(s3.restart)
        system.supervisor.infra.append(s3)
    event.back_after = time.time() - event.at


async def _kill_service(system: ChaosSystem, name: str, event: Event) -> None:
    child = system.child(name)
    async with system.lock:
        assert child.process is not None
        event.pid = child.process.pid
        os.kill(event.pid, signal.SIGKILL)
    deadline = time.monotonic() + _BACK_TIMEOUT
    while True:
        process = child.process
        if process is not None and process.pid != event.pid and await system.serving(name):
            break
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.2)
    event.back_after = time.time() - event.at


async def _carry_out(system: ChaosSystem, disruption: Disruption, event: Event) -> None:
    logger.info("chaos: %s %s at %.0f s", disruption.action, disruption.target, event.offset)
    if disruption.target == "s3":
        await _stop_s3(system, event)
    elif disruption.target == "nats":
        await _kill_infra(system, system.nats, event)
    else:
        await _kill_service(system, disruption.target, event)
    if event.back_after is None:
        logger.error("chaos: %s did not come back within %.0f s", disruption.target, _BACK_TIMEOUT)
    else:
        logger.info("chaos: %s back after %.1f s", disruption.target, event.back_after)


async def disrupt(
    system: ChaosSystem, started: float, span: float, schedule: tuple[Disruption, ...] = SCHEDULE
) -> list[Event]:
    """Carries out ``schedule`` over ``span`` seconds from ``started`` (``time.monotonic()``); each
    disruption on time, whether or not the one before has come back (S3 stays down 15 s)."""
    events: list[Event] = []
    running: list[asyncio.Task[None]] = []
    wall_start = time.time() - (time.monotonic() - started)
    try:
        for offset, disruption in zip(schedule_times(len(schedule), span), schedule, strict=True):
            await asyncio.sleep(max(0.0, started + offset - time.monotonic()))
            event = Event(disruption.target, disruption.action, time.time(), time.time() - wall_start, 0)
            events.append(event)
            running.append(asyncio.create_task(_carry_out(system, disruption, event)))
        await asyncio.gather(*running)
    finally:
        for task in running:
            task.cancel()
    return events
