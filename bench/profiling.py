"""Where a service's CPU goes: py-spy attached to the running process, summarised by frame and package.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;… count``); the summary is the
top functions by own samples (the leaf), the top by inclusive samples (anywhere on the stack), and the
share of samples whose leaf lies in each top-level package (grpc, sqlalchemy, asyncio…).
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from assetgen_dev.embedded import binary

__all__ = ["Profiler", "summarise"]

_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _package(path: str) -> str:
    if "site-packages/" in path:
        rest = path.split("site-packages/", 1)[1]
        return rest.split("/", 1)[0].removesuffix(".py")
    for marker in ("/lib/python3.11/", "/lib/python3."):
        if marker in path:
            rest = path.split(marker, 1)[1]
            rest = rest.split("/", 1)[1] if marker != "/lib/python3.11/" else rest
            return "stdlib:" + rest.split("/", 1)[0].removesuffix(".py")
    for name in (
        "assetgen_runtime",
        "assetgen_orchestrator",
        "assetgen_gateway",
        "assetgen_storage",
        "assetgen_provider_adapter",
    ):
        if f"/{name}/" in path:
            return name
    return path.rsplit("/", 1)[-1] or "?"


def _label(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip(), "?"
    path = match["file"]
    short = path.split("site-packages/", 1)[-1].split("/lib/python3.11/", 1)[-1]
    short = re.sub(r"^.*/(services|lib)/[^/]+/", "", short)
    return f"{match['function']} ({short})", _package(path)


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    """Top frames of a py-spy raw profile: own samples, inclusive samples, samples per package."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame for frame in stack.split(";") if frame and not frame.startswith("process ")]
        frames = [frame for frame in frames if not frame.startswith("thread ")]
        if not frames:
            continue
        total += count
        labels = [_label(frame) for frame in frames]
        leaf, package = labels[-1]
        own[leaf] += count
        packages[package] += count
        for label in {label for label, _ in labels}:
            inclusive[label] += count

    def share(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"frame": name, "samples": n, "percent": round(100 * n / total, 1)}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples": total,
        "own": share(own),
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
