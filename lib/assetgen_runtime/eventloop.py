"""Runs a service's main coroutine on the event loop its settings name.

uvloop is the default: the services are message pumps (gRPC, NATS, PostgreSQL, HTTP to providers),
and uvloop's transports and scheduling, written in C over libuv, take less CPU per message than
asyncio's own loop (`make bench` measures by how much: see bench/README.md). ``asyncio`` remains
for debugging with asyncio's own tooling, and for platforms uvloop does not support.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from assetgen_runtime.settings import SettingsError

__all__ = ["EVENT_LOOPS", "run"]

T = TypeVar("T")

EVENT_LOOPS = ("uvloop", "asyncio")
"""The values ``ASSETGEN_EVENT_LOOP`` accepts."""


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    if name == "asyncio":
        return asyncio.new_event_loop
    raise SettingsError(f"ASSETGEN_EVENT_LOOP must be one of {', '.join(EVENT_LOOPS)}, got {name!r}")


def run(main: Coroutine[Any, Any, T], event_loop: str = "uvloop") -> T:
    """``asyncio.run(main)`` on a new loop of kind ``event_loop`` (``uvloop`` or ``asyncio``)."""
    try:
        factory = _loop_factory(event_loop)
    except SettingsError:
        main.close()  # never awaited: close it rather than leave a "never awaited" warning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
