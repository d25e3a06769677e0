"""Typed settings read once from the environment.

Each service declares a frozen dataclass whose fields carry their environment variable name and a
one-line doc in ``field(metadata=...)``; :func:`load` builds it from ``os.environ`` (or a given
mapping, for tests). Nothing else in the code base reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["ServiceSettings", "SettingsError", "describe", "env", "load"]

T = TypeVar("T")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def env(name: str, doc: str, default: Any = dataclasses.MISSING) -> Any:
    """Declares a settings field read from environment variable ``name``."""
    metadata = {"env": name, "doc": doc}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    if isinstance(default, list | dict | tuple):
        return dataclasses.field(default_factory=lambda: default, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _convert(name: str, raw: str, target: Any) -> Any:
    origin = typing.get_origin(target)
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in typing.get_args(target) if arg is not type(None)]
        if raw == "":
            return None
        return _convert(name, raw, options[0])
    if target is bool:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off", ""}:
            return False
        raise SettingsError(f"{name} must be true or false, got {raw!r}")
    if target is int:
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if target is float:
        try:
            return float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if origin is tuple:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw


def load(cls: type[T], environ: Mapping[str, str] | None = None, **overrides: Any) -> T:
    """Builds settings ``cls`` from ``environ`` (default ``os.environ``); ``overrides`` win."""
    source = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in overrides:
            values[field.name] = overrides[field.name]
            continue
        var = field.metadata.get("env")
        if var is None:
            continue
        if var in source:
            values[field.name] = _convert(var, source[var], hints[field.name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SettingsError(f"{var} is required: {field.metadata.get('doc', '')}")
    return cls(**values)


def _own_fields_first(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of ``cls``, those a subclass declares before those it inherits (as docs list them)."""
    fields = {field.name: field for field in dataclasses.fields(cls)}
    ordered: dict[str, dataclasses.Field[Any]] = {}
    for klass in cls.__mro__:
        for name in vars(klass).get("__annotations__", {}):
            if name in fields:
                ordered.setdefault(name, fields[name])
    return list(ordered.values())


def describe(cls: type) -> list[tuple[str, str, str]]:
    """Lists (variable, default, doc) for every setting of ``cls``, for docs and manifest checks."""
    rows = []
    for field in _own_fields_first(cls):
        if "env" not in field.metadata:
            continue
        if field.default is not dataclasses.MISSING:
            default = repr(field.default)
        elif field.default_factory is not dataclasses.MISSING:
            default = repr(field.default_factory())
        else:
            default = "(required)"
        rows.append((field.metadata["env"], default, field.metadata["doc"]))
    return rows


@dataclass(frozen=True, kw_only=True)
class ServiceSettings:
    """The settings every service has: how it shuts down, logs, serves metrics and runs its loop.

    A service's settings class inherits these (``@dataclass(frozen=True, kw_only=True)`` on the
    subclass too) and adds its own fields; :func:`describe` lists both.
    """

    shutdown_grace_seconds: float = env(
        "ASSETGEN_SHUTDOWN_GRACE_SECONDS", "Time in-flight calls get to finish on SIGTERM.", 10.0
    )
    metrics_port: int = env(
        "ASSETGEN_METRICS_PORT", "Port serving Prometheus metrics at /metrics (0: not served).", 0
    )
    log_level: str = env("ASSETGEN_LOG_LEVEL", "Logging level.", "INFO")
    event_loop: str = env("ASSETGEN_EVENT_LOOP", "Event loop: uvloop, or asyncio for debugging.", "uvloop")
