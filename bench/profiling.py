"""Where a service's CPU goes: py-spy attached to the running process, summarised by frame and package.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;… count``); the summary is the
top functions by own samples (the leaf), the top by inclusive samples (anywhere on the stack), and the
share of samples whose leaf lies in each top-level package (grpc, sqlalchemy, asyncio…).
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from assetgen_dev.embedded import binary

__all__ = ["HottestProfilers", "Profiler", "summarise"]

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _package(path: str) -> str:
    # py-spy names files relative to their sys.path entry: "asyncio/events.py", "grpc/aio/_call.py".
    first = path.split("/", 1)[0].removesuffix(".py")
    return f"stdlib:{first}" if first in sys.stdlib_module_names else first


def _label(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), "?"
    return f"{match['function']} ({match['file']})", _package(match["file"])


def _interesting(label: str, package: str) -> bool:
    """Frames worth naming as callers: libraries and our code, not the stdlib or the entry point."""
    return (
        not package.startswith("stdlib:") and package != "?" and not label.startswith(("<module>", "main ("))
    )


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    """Top frames of a py-spy raw profile.

    ``own``: leaf functions (where the CPU actually is); ``callers``: for the top leaves, the nearest
    frame of a library or of our code above them (who asked for that work); ``inclusive``: functions
    anywhere on the stack, standard library left out; ``packages``: samples by the leaf's package.
    """
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    callers: dict[str, Counter[str]] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        labels = [_label(frame) for frame in frames]
        leaf, package = labels[-1]
        own[leaf] += count
        packages[package] += count
        caller = next(
            (label for label, pkg in reversed(labels[:-1]) if _interesting(label, pkg)),
            "(event loop)",
        )
        callers.setdefault(leaf, Counter())[caller] += count
        for label in {label for label, pkg in labels if _interesting(label, pkg)}:
            inclusive[label] += count

    def share(counter: Counter[str], limit: int = top) -> list[dict[str, Any]]:
        return [
            {"frame": name, "samples": n, "percent": round(100 * n / total, 1)}
            for name, n in counter.most_common(limit)
        ]

    return {
        "samples": total,
        "own": share(own),
        "callers": {leaf: share(callers[leaf], 4) for leaf, _ in own.most_common(5)},
        "inclusive": share(inclusive),
        "packages": share(packages),
    }


class Profiler:
    """py-spy recording one process until stopped."""

    def __init__(self, pid: int, output: Path, rate: int = 100) -> None:
        self.pid = pid
        self.output = output
        self.rate = rate
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            binary("py-spy"),
            "record",
            "--pid",
            str(self.pid),
            "--rate",
            str(self.rate),
            "--format",
            "raw",
            "--output",
            str(self.output),
            "--nonblocking",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )

    async def stop(self) -> dict[str, Any]:
        """Stops recording (py-spy writes its file on SIGINT) and summarises the profile."""
        assert self._process is not None
        if self._process.returncode is None:
            self._process.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(self._process.communicate(), 60)
        if not self.output.exists():
            return {"error": f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}"}
        return summarise(self.output.read_text())


class HottestProfilers:
    """py-spy on the ``count`` processes that spent the most CPU, all recording at once.

    ``--nonblocking`` barely slows the processes it samples, so several can be recorded together.
    """

    def __init__(
        self, pids: dict[str, int], cpu: dict[str, float], directory: Path, stem: str, count: int = 2
    ) -> None:
        hottest = sorted(pids, key=lambda name: cpu[name], reverse=True)[:count]
        self.profilers = {name: Profiler(pids[name], directory / f"{stem}-{name}.txt") for name in hottest}
        self._directory = directory

    async def start(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        for profiler in self.profilers.values():
            profiler.output.unlink(missing_ok=True)
            await profiler.start()

    async def stop(self) -> dict[str, dict[str, Any]]:
        """Each process's summary, with the file of its raw stacks."""
        return {
            name: {"raw_file": str(profiler.output), **await profiler.stop()}
            for name, profiler in self.profilers.items()
        }
