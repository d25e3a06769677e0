"""CPU time and memory of processes, read from /proc, and a sampler that follows groups of them.

A group is a name (``orchestrator``, ``nats``, ``database``…) and a function giving its pids now; the
database's backends come and go, so pids are looked up on every sample and a pid first seen during a
measurement counts from zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Measurement", "Sampler", "command_name", "cpu_seconds", "memory", "reset_peak", "resident"]

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), or -1 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return -1.0
    fields = text.rsplit(")", 1)[1].split()
    # Fields after the command name start at field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def command_name(pid: int) -> str:
    """The process's command name (``/proc/<pid>/comm``; '' if it is gone)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def memory(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile and RssShmem of a process, in bytes (empty if it is gone)."""
    wanted = {"VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"}
    values: dict[str, int] = {}
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return values
    for line in lines:
        key, _, rest = line.partition(":")
        if key in wanted:
            values[key] = int(rest.split()[0]) * 1024
    return values


def machine_busy_seconds() -> float:
    """CPU seconds every core of the machine has spent not idle since boot (all processes, anyone's)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


def reset_peak(pid: int) -> None:
    """Resets the process's VmHWM to its current RSS (Linux ≥ 4.0), so a later peak is this step's."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def resident(pids: Iterable[int]) -> int:
    """Resident bytes of a group, counting shared memory (PostgreSQL's buffers) once."""
    private, shared = 0, 0
    for pid in pids:
        values = memory(pid)
        if not values:
            continue
        if "RssShmem" in values:
            private += values["RssAnon"] + values["RssFile"]
            shared = max(shared, values["RssShmem"])
        else:
            private += values.get("VmRSS", 0)
    return private + shared


@dataclass
class Measurement:
    """What a group of processes used between ``start`` and ``stop``."""

    seconds: float
    cpu: dict[str, float]
    machine_cpu: float
    rss_max: dict[str, int]
    rss_mean: dict[str, float]
    # Every process each group had during the measurement: pid → command name.
    processes: dict[str, dict[int, str]] = field(default_factory=dict)
    # Each group's resident bytes at every sample (the samples of all groups taken together).
    rss_samples: dict[str, list[int]] = field(default_factory=dict)

    def cpu_of(self, groups: Iterable[str]) -> float:
        """CPU seconds of ``groups`` together."""
        return sum(self.cpu.get(group, 0.0) for group in groups)

    def rss_max_of(self, groups: Iterable[str]) -> int:
        """The most ``groups`` held resident together at one sample."""
        series = [self.rss_samples.get(group, []) for group in groups]
        return max((sum(at_once) for at_once in zip(*series, strict=False)), default=0)

    @property
    def others_cpu_percent(self) -> float:
        """CPU % of every process outside the groups (other people's work on a shared machine)."""
        ours = sum(self.cpu.values())
        return 100.0 * (self.machine_cpu - ours) / self.seconds if self.seconds > 0 else 0.0

    def cpu_percent(self, group: str) -> float:
        """Average CPU % (100 % = one core) of a group over the measurement."""
        return 100.0 * self.cpu[group] / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Window:
    started: float
    machine_start: float
    first_cpu: dict[str, dict[int, float]]
    last_cpu: dict[str, dict[int, float]]
    rss: dict[str, list[int]] = field(default_factory=dict)
    names: dict[str, dict[int, str]] = field(default_factory=dict)


class Sampler:
    """Samples the groups' CPU and RSS every ``interval`` seconds while a measurement runs."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]], interval: float = 1.0) -> None:
        self.groups = groups
        self.interval = interval
        self._window: _Window | None = None
        self._task: asyncio.Task[None] | None = None

    def _sample(self, window: _Window) -> None:
        for name, pids_of in self.groups.items():
            pids = pids_of()
            first = window.first_cpu.setdefault(name, {})
            last = window.last_cpu.setdefault(name, {})
            for pid in pids:
                value = cpu_seconds(pid)
                if value < 0:
                    continue
                # A pid born during the window counts all its CPU (it had none before).
                first.setdefault(pid, value if window.rss.get(name) is None else 0.0)
                last[pid] = value
                names = window.names.setdefault(name, {})
                if pid not in names:
                    names[pid] = command_name(pid)
            window.rss.setdefault(name, []).append(resident(pids))

    async def _loop(self, window: _Window) -> None:
        while True:
            await asyncio.sleep(self.interval)  # the sampling period, not a wait for state
            self._sample(window)

    def start(self) -> None:
        """Takes the first sample and starts sampling in the background."""
        window = _Window(
            started=time.monotonic(), machine_start=machine_busy_seconds(), first_cpu={}, last_cpu={}
        )
        self._sample(window)
        self._window = window
        self._task = asyncio.get_running_loop().create_task(self._loop(window))

    async def stop(self) -> Measurement:
        """Takes the last sample and returns the measurement."""
        assert self._window is not None and self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        window = self._window
        self._sample(window)
        self._window = None
        cpu = {
            name: sum(
                window.last_cpu[name][pid] - window.first_cpu[name][pid] for pid in window.last_cpu[name]
            )
            for name in self.groups
        }
        return Measurement(
            seconds=time.monotonic() - window.started,
            cpu=cpu,
            machine_cpu=machine_busy_seconds() - window.machine_start,
            rss_max={name: max(values) for name, values in window.rss.items()},
            rss_mean={name: sum(values) / len(values) for name, values in window.rss.items()},
            processes=window.names,
            rss_samples=window.rss,
        )
