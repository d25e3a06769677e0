"""The gateway's modules import one another without a cycle, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "assetgen_gateway"
PACKAGE_DIR = Path(__file__).resolve().parents[3] / "services" / "gateway" / PACKAGE


def _imported_modules(tree: ast.AST) -> set[str]:
    """Every module of the package named by an import anywhere in the tree."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from assetgen_gateway import routes` names a module too.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name.removeprefix(PACKAGE + ".") for name in names if name.startswith(PACKAGE + ".")}


def _import_graph() -> dict[str, set[str]]:
    modules = {path.stem: path for path in PACKAGE_DIR.glob("*.py")}
    return {
        name: _imported_modules(ast.parse(path.read_text(), str(path))) & modules.keys()
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


def test_the_app_and_the_openapi_document_share_the_route_table() -> None:
    graph = _import_graph()
    assert {"routes", "openapi"} <= graph["http_api"]
    assert "routes" in graph["openapi"] and "http_api" not in graph["openapi"]


def test_no_module_of_the_gateway_imports_itself_back() -> None:
    assert _find_cycle(_import_graph()) is None
