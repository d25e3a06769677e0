"""The code a chaos run starts: a snapshot of the commit (the default), or the working tree.

A run takes minutes and restarts services as it goes; in a checkout being edited, a restarted
service would run other code than the one it replaced. So by default the services run from
``git archive HEAD`` unpacked into the run's folder, with the stubs generated from that commit's
protos, and the results name exactly that commit.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SERVICE_MODULES", "Code", "snapshot", "working_tree"]

# service → its package (started as ``python -c "from <package>.main import main; main()"``)
SERVICE_MODULES = {
    "storage": "assetgen_storage",
    "provider-adapter": "assetgen_provider_adapter",
    "orchestrator": "assetgen_orchestrator",
    "gateway": "assetgen_gateway",
}
_SOURCE_FOLDERS = (
    "gen",
    "lib",
    "services/gateway",
    "services/orchestrator",
    "services/storage",
    "services/provider-adapter",
    "tools",
)


@dataclass(frozen=True)
class Code:
    """Where the services' code comes from: ``pythonpath`` ("" for the installed working tree)."""

    commit: str
    description: str
    pythonpath: str = ""

    def argv(self, service: str, console_script: str) -> list[str]:
        """How to start ``service``: its console script, or its package's main from the snapshot."""
        if not self.pythonpath:
            return [console_script]
        return [sys.executable, "-c", f"from {SERVICE_MODULES[service]}.main import main; main()"]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def working_tree(repo: Path) -> Code:
    """The installed working tree, as it is (dirty or not)."""
    commit = _git(repo, "rev-parse", "--short=12", "HEAD").strip()
    dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=no").strip())
    return Code(commit, f"working tree at {commit}" + (" (with uncommitted changes)" if dirty else ""))


def snapshot(repo: Path, dest: Path) -> Code:
    """``HEAD`` of ``repo`` unpacked into ``dest`` with its stubs generated; a ``Code`` running it."""
    commit = _git(repo, "rev-parse", "--short=12", "HEAD").strip()
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", "HEAD"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    _generate_stubs(dest)
    pythonpath = ":".join(str(dest / folder) for folder in _SOURCE_FOLDERS)
    return Code(commit, f"snapshot of {commit}", pythonpath)


def _generate_stubs(root: Path) -> None:
    """The runtime stubs (messages and gRPC) of ``root``'s protos into ``root/gen``, as `make protos`."""
    import google.api

    googleapis = Path(google.api.__path__[0]).parent.parent
    gen = root / "gen"
    (gen / "assetgen" / "v1").mkdir(parents=True, exist_ok=True)
    protos = sorted(str(path.relative_to(root / "protos")) for path in (root / "protos").rglob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            str(root / "protos"),
            "-I",
            str(googleapis),
            f"--python_out={gen}",
            f"--grpc_python_out={gen}",
            *protos,
        ],
        check=True,
        cwd=root / "protos",
    )
    for package in (gen / "assetgen", gen / "assetgen" / "v1"):
        (package / "__init__.py").touch()
