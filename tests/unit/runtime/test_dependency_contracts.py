"""Private APIs of dependencies, each used in one module: these fail loudly when the pinned version moves.

When one of these fails after a dependency upgrade, read the new release's source for the names
below, adapt the fencing module (``assetgen_runtime.httpx_internals`` or
``assetgen_storage.minio_internals``) and its pinned version, then this test.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
import tomllib
from pathlib import Path

import httpcore
import httpx
import pytest
from minio import Minio

from assetgen_runtime import httpx_internals
from assetgen_runtime.http import AsyncioHTTPTransport, AsyncioNetworkBackend
from assetgen_storage import minio_internals

ROOT = Path(__file__).parents[3]
PYPROJECT = ROOT / "pyproject.toml"


def _pinned(package: str) -> str:
    """The version pyproject.toml pins ``package`` to (``package==X``)."""
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for requirement in dependencies:
        match = re.fullmatch(rf"{re.escape(package)}(?:\[[^\]]*\])?==([^;\s]+)", requirement.strip())
        if match:
            return match.group(1)
    raise AssertionError(f"pyproject.toml does not pin {package} with ==")


@pytest.mark.parametrize(
    ("package", "fenced_for"),
    [("httpx", httpx_internals.PINNED_HTTPX), ("minio", minio_internals.PINNED_VERSION)],
)
def test_the_fencing_module_was_written_for_the_pinned_and_installed_version(
    package: str, fenced_for: str
) -> None:
    assert _pinned(package) == fenced_for, f"pyproject.toml moved {package}: re-check its private uses"
    assert importlib.metadata.version(package) == fenced_for, f"installed {package} is not the pinned one"


def test_httpcore_is_the_release_the_backend_hook_was_written_for() -> None:
    assert importlib.metadata.version("httpcore") == httpx_internals.PINNED_HTTPCORE


def test_httpx_keeps_its_httpcore_pool_in_pool_and_the_pool_its_backend_in_network_backend() -> None:
    assert "network_backend" in inspect.signature(httpcore.AsyncConnectionPool).parameters
    backend = AsyncioNetworkBackend()
    assert httpcore.AsyncConnectionPool(network_backend=backend)._network_backend is backend
    transport = httpx.AsyncHTTPTransport()
    assert isinstance(transport._pool, httpcore.AsyncConnectionPool)

    ours = AsyncioHTTPTransport()

    assert isinstance(ours._pool._network_backend, AsyncioNetworkBackend)


def test_a_pool_kept_elsewhere_is_refused_not_silently_missed() -> None:
    transport = httpx.AsyncHTTPTransport()
    del transport._pool
    with pytest.raises(TypeError, match="cannot set its backend"):
        httpx_internals.set_network_backend(transport, AsyncioNetworkBackend())


@pytest.mark.parametrize("name", sorted(minio_internals.PRIVATE_METHODS))
def test_minio_private_methods_keep_their_parameters(name: str) -> None:
    method = getattr(Minio, name, None)
    assert method is not None, f"minio {importlib.metadata.version('minio')} has no Minio.{name}"
    parameters = tuple(inspect.signature(method).parameters)[1:]  # after self
    assert parameters == minio_internals.PRIVATE_METHODS[name]


_MINIO_CALL = r"\._(?:" + "|".join(n.lstrip("_") for n in minio_internals.PRIVATE_METHODS) + r")\("


@pytest.mark.parametrize(
    ("private_use", "allowed_in"),
    [
        (_MINIO_CALL, "minio_internals.py"),
        (r"\._network_backend\b", "httpx_internals.py"),
        (r"grpc_health\.v1\._async|from grpc_health\.v1 import _async", ""),
    ],
)
def test_private_uses_of_dependencies_are_only_in_their_fencing_module(
    private_use: str, allowed_in: str
) -> None:
    pattern = re.compile(private_use)
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("lib", "services", "tools", "bench")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path.name != allowed_in and pattern.search(path.read_text())
    ]
    assert offenders == []
