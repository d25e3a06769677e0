"""The private parts of httpx and httpcore this code base relies on: the one module that touches them.

httpx (:data:`PINNED_HTTPX`, as in pyproject.toml) builds an httpcore connection pool inside
``AsyncHTTPTransport`` but takes no network backend to hand on to it, although httpcore's pool
accepts one (``AsyncConnectionPool(network_backend=...)``). Giving the pool ours means setting
private attributes: httpx keeps the pool in ``_pool``, httpcore (:data:`PINNED_HTTPCORE`, the release
httpx's ``httpcore==1.*`` requirement resolves to here) keeps the backend in ``_network_backend``.
Done before the pool made a connection, it leaves the pool as httpcore's constructor would have.

Rebuilding httpx's transport on httpcore's public API instead would copy its request and response
conversion and its exception mapping, which are private too. ``tests/unit/runtime/
test_dependency_contracts.py`` fails when either installed version differs from the pinned one or
the attributes move.
"""

from __future__ import annotations

import httpcore
import httpx

__all__ = ["PINNED_HTTPCORE", "PINNED_HTTPX", "set_network_backend"]

PINNED_HTTPX = "0.28.1"
"""The httpx release :func:`set_network_backend` was written against (pyproject.toml pins it)."""

PINNED_HTTPCORE = "1.0.9"
"""The httpcore release :func:`set_network_backend` was written against."""


def set_network_backend(transport: httpx.AsyncHTTPTransport, backend: httpcore.AsyncNetworkBackend) -> None:
    """Makes every connection of ``transport``'s pool go through ``backend``; call it before any request."""
    pool = getattr(transport, "_pool", None)
    if not isinstance(pool, httpcore.AsyncConnectionPool) or not hasattr(pool, "_network_backend"):
        raise TypeError(
            f"httpx {httpx.__version__} / httpcore {httpcore.__version__} keep their connection pool "
            f"differently from httpx {PINNED_HTTPX} / httpcore {PINNED_HTTPCORE}: cannot set its backend"
        )
    pool._network_backend = backend
