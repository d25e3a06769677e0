"""The CLI is a client: it depends on the API's stubs and the shared runtime, never on a server package."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

CLI_DIR = Path(__file__).resolve().parents[3] / "tools" / "assetgen_cli"
SERVER_PACKAGES = {
    "assetgen_gateway",
    "assetgen_orchestrator",
    "assetgen_storage",
    "assetgen_provider_adapter",
}


def _top_level_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.partition(".")[0])
    return names


def test_no_cli_module_imports_a_server_package() -> None:
    modules = sorted(CLI_DIR.glob("*.py"))
    assert modules, CLI_DIR
    found = {path.name: _top_level_imports(path) & SERVER_PACKAGES for path in modules}
    assert {name: packages for name, packages in found.items() if packages} == {}


def test_loading_the_cli_loads_no_server_package() -> None:
    # In a fresh interpreter, so what other tests imported cannot hide an indirect import.
    script = "import json, sys, assetgen_cli.main; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=60
    )
    loaded = {name.partition(".")[0] for name in json.loads(result.stdout)}
    assert "assetgen_cli" in loaded
    assert loaded & SERVER_PACKAGES == set()
