"""No package of ours has modules that import one another in a cycle, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {
    "assetgen_runtime": REPO / "lib" / "assetgen_runtime",
    "assetgen_gateway": REPO / "services" / "gateway" / "assetgen_gateway",
    "assetgen_orchestrator": REPO / "services" / "orchestrator" / "assetgen_orchestrator",
    "assetgen_provider_adapter": REPO / "services" / "provider-adapter" / "assetgen_provider_adapter",
    "assetgen_storage": REPO / "services" / "storage" / "assetgen_storage",
    "assetgen_cli": REPO / "tools" / "assetgen_cli",
    "assetgen_dev": REPO / "tools" / "assetgen_dev",
    "bench": REPO / "bench",
}


def _imported_modules(tree: ast.AST, package: str) -> set[str]:
    """Every module of the package named by an import anywhere in the tree."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from assetgen_gateway import routes` names a module too.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name.removeprefix(package + ".") for name in names if name.startswith(package + ".")}


def _import_graph(package: str) -> dict[str, set[str]]:
    """Module → the package's modules it imports; subpackages' modules named with dots."""
    root = PACKAGES[package]
    modules = {
        ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__"): path
        for path in root.rglob("*.py")
        if "migrations" not in path.parts
    }
    return {
        name: _imported_modules(ast.parse(path.read_text(), str(path)), package) & modules.keys()
        for name, path in modules.items()
    }


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path of module names, or None."""
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph[module]):
            cycle = visit(imported, [*path, module])
            if cycle:
                return cycle
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module, [])
        if cycle:
            return cycle
    return None


def test_the_finder_sees_a_cycle() -> None:
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_gateway_app_and_its_openapi_document_share_the_route_table() -> None:
    graph = _import_graph("assetgen_gateway")
    assert {"routes", "openapi"} <= graph["http_api"]
    assert "routes" in graph["openapi"] and "http_api" not in graph["openapi"]


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_module_imports_itself_back(package: str) -> None:
    graph = _import_graph(package)
    assert len(graph) > 1
    assert _find_cycle(graph) is None
