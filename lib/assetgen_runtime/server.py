"""Server bootstrap shared by every service: gRPC with health and reflection, and what a service opened.

``build_grpc_server`` is what both a service's ``run_server`` and the tests call, so tests build
servers exactly as production does. A ``run_server`` opens its parts inside ``async with Cleanups()``
so that a failing start-up step closes what the earlier ones opened; the started service keeps them
(``Cleanups.pop_all()``) in a :class:`RunningService`, whose ``stop()`` stops the gRPC server first
and then closes the rest in reverse order of opening.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from assetgen_runtime.errors import ErrorMappingInterceptor
from assetgen_runtime.metrics import MetricsInterceptor, serve_metrics

__all__ = [
    "GRPC_OPTIONS",
    "SERVER_OPTIONS",
    "Cleanups",
    "GrpcServer",
    "RunningService",
    "build_grpc_server",
    "open_metrics",
]

logger = logging.getLogger(__name__)

# Chunks of uploads are up to 1 MiB; leave room for metadata. Keepalive so idle peers notice a
# dead connection in seconds rather than minutes.
GRPC_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
]
# Servers close each connection gently (GOAWAY: no new calls on it, running calls and streams
# finish) after a few minutes, so clients re-resolve their peer's name and spread calls over
# replicas that started since they connected. They accept the channels' keepalive pings on idle
# connections: by default a server takes pings more often than every 5 minutes without data as
# abuse and closes the connection ("too_many_pings").
SERVER_OPTIONS: list[tuple[str, Any]] = [
    *GRPC_OPTIONS,
    ("grpc.max_connection_age_ms", 300_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]

Registrar = Callable[[Any, grpc.aio.Server], None]
P = ParamSpec("P")
T = TypeVar("T")


class Cleanups(contextlib.AsyncExitStack):
    """The closing steps of what a service opened, run in reverse order of opening.

    Used as ``async with Cleanups() as opened:`` while starting, it closes what was opened when a
    later step fails; ``opened.pop_all()`` hands the steps to the started service, which runs them
    with ``aclose()`` at stop. A failing step is logged, not raised, so the steps after it still run.
    """

    def push_async_callback(
        self, callback: Callable[P, Awaitable[T]], /, *args: P.args, **kwds: P.kwargs
    ) -> Callable[P, Awaitable[T]]:
        """Adds ``callback(*args, **kwds)`` as the next step to run (it runs before the earlier ones)."""

        async def logged() -> None:
            try:
                await callback(*args, **kwds)
            except Exception:
                step = getattr(callback, "__qualname__", repr(callback))
                logger.exception("shutdown step failed", extra={"step": step})

        super().push_async_callback(logged)
        return callback


@dataclass
class GrpcServer:
    """A started gRPC server, its health servicer and the services it reports on."""

    server: grpc.aio.Server
    health: health_aio.HealthServicer
    port: int
    service_names: list[str] = field(default_factory=list)
    stopped: bool = field(default=False, init=False)

    async def set_serving(self, serving: bool = True) -> None:
        """Reports every service (and the server as a whole, "") SERVING or NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Health NOT_SERVING for every watcher, then stop accepting and let calls finish; once only."""
        if self.stopped:
            return
        self.stopped = True
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def build_grpc_server(
    services: Sequence[tuple[Registrar, Any, str]],
    *,
    host: str = "0.0.0.0",
    port: int = 0,
    interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    metrics_name: str = "",
    cleanups: Cleanups | None = None,
) -> GrpcServer:
    """Starts a gRPC server for ``(add_XServicer_to_server, servicer, full_service_name)`` triples.

    With ``metrics_name`` every call is counted and timed under that service label. With
    ``cleanups`` the server is stopped (without grace) when they run, unless it was stopped before.

    Health starts NOT_SERVING; the caller flips it with ``set_serving()`` once its dependencies are
    connected. Reflection lists every service, health and reflection included, for grpcurl.
    """
    innermost = [MetricsInterceptor(metrics_name)] if metrics_name else []
    server = grpc.aio.server(
        interceptors=[*interceptors, ErrorMappingInterceptor(), *innermost],
        options=SERVER_OPTIONS,
    )
    names = []
    for register, servicer, name in services:
        register(servicer, server)
        names.append(name)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port}")
    grpc_server = GrpcServer(server=server, health=health, port=bound, service_names=names)
    try:
        await server.start()
        await grpc_server.set_serving(False)
    except BaseException:
        await grpc_server.stop(0)
        raise
    if cleanups is not None:
        cleanups.push_async_callback(grpc_server.stop, 0)
    return grpc_server


@dataclass
class RunningService:
    """A started service: its gRPC server and the steps that close what it opened.

    ``cleanups`` run after the server stopped, in reverse order of opening (stop the job runner,
    drain NATS, close channels, dispose engines, stop serving /metrics).
    """

    grpc: GrpcServer
    grace: float = 10.0
    cleanups: Cleanups = field(default_factory=Cleanups)
    metrics_port: int = 0

    @property
    def port(self) -> int:
        """The bound gRPC port."""
        return self.grpc.port

    async def stop(self) -> None:
        """Health NOT_SERVING → ``server.stop(grace)`` → the cleanups, newest first."""
        await self.grpc.stop(self.grace)
        await self.cleanups.aclose()


async def open_metrics(cleanups: Cleanups, port: int) -> int:
    """Serves /metrics on ``port`` until ``cleanups`` run; returns the bound port (0: not served)."""
    if not port:
        return 0
    runner, bound = await serve_metrics(port)
    cleanups.push_async_callback(runner.cleanup)
    return bound
