"""One service skeleton: ``run_service`` does what every service's ``main()`` does around its own parts.

A service's ``main()`` reads its settings and calls ``run_service(settings, name, run_server)``;
``run_server`` wires the service's own parts and returns a started
:class:`~assetgen_runtime.server.RunningService`. ``run_service`` configures JSON logging, runs on
the event loop the settings name, starts the service, serves until SIGTERM or SIGINT, and stops it:
health NOT_SERVING → ``server.stop(grace)`` → the service's cleanups, newest first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from assetgen_runtime.eventloop import run
from assetgen_runtime.jsonlog import configure_logging
from assetgen_runtime.server import RunningService
from assetgen_runtime.settings import ServiceSettings

__all__ = ["run_service", "serve"]

logger = logging.getLogger(__name__)

S = TypeVar("S", bound=ServiceSettings)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_service(settings: S, name: str, start: Callable[[S], Awaitable[RunningService]]) -> None:
    """Runs the service ``name`` that ``start(settings)`` starts, until SIGTERM or SIGINT."""
    configure_logging(name, settings.log_level)
    run(serve(settings, start), settings.event_loop)


async def serve(
    settings: S, start: Callable[[S], Awaitable[RunningService]], *, stop: asyncio.Event | None = None
) -> None:
    """Starts the service, serves until SIGTERM/SIGINT (or ``stop`` is set), then stops it gracefully.

    A signal during start-up cancels the start: the start's ``Cleanups`` close what it had opened.
    """
    stop = stop or asyncio.Event()
    with _set_on_signals(stop):
        service = await _start_unless_stopped(start(settings), stop)
        if service is None:
            logger.info("shutdown requested during start-up")
            return
        await stop.wait()
        logger.info("shutdown requested")
        await service.stop()


async def _start_unless_stopped(
    start: Awaitable[RunningService], stop: asyncio.Event
) -> RunningService | None:
    """The started service, or None when ``stop`` was set first (the start is then cancelled)."""
    starting = asyncio.ensure_future(start)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not starting.done():
            starting.cancel()
            await asyncio.wait({starting})  # let the cancelled start close what it opened
    if starting.cancelled() and stop.is_set():
        return None
    return starting.result()


@contextlib.contextmanager
def _set_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)
