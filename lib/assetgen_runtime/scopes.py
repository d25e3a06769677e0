"""What an API key may do: its scopes, and which scope implies which.

- ``read``: get, list, watch and history of its project's boxes and assets; list models and presets;
- ``write``: ``read`` plus create/update/delete boxes, generate, upload, cancel, retry, delete assets;
- ``admin``: everything in every project, plus projects, keys, providers and models.

The orchestrator checks the scopes a new key is given; the gateway checks a caller's scopes against
the scope each RPC requires (``assetgen_gateway.access``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from assetgen_runtime.errors import InvalidArgument

__all__ = ["Scope", "grants", "parse_scopes"]


class Scope(enum.StrEnum):
    """One scope; each includes the ones before it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


_RANK = {Scope.READ: 1, Scope.WRITE: 2, Scope.ADMIN: 3}


def grants(scopes: Iterable[str], required: Scope) -> bool:
    """Whether a key with ``scopes`` may do what needs ``required`` (write implies read, admin all)."""
    held = [_RANK[Scope(scope)] for scope in scopes if scope in Scope.__members__.values()]
    return max(held, default=0) >= _RANK[required]


def parse_scopes(scopes: Iterable[str]) -> tuple[Scope, ...]:
    """The scopes named, each once, in rank order; InvalidArgument for an unknown or missing one."""
    found: set[Scope] = set()
    for raw in scopes:
        name = raw.strip().lower()
        try:
            found.add(Scope(name))
        except ValueError:
            raise InvalidArgument(
                f"unknown scope {raw[:40]!r}; scopes are {', '.join(scope.value for scope in Scope)}"
            ) from None
    if not found:
        raise InvalidArgument("scopes are required: any of read, write, admin")
    return tuple(sorted(found, key=_RANK.__getitem__))
