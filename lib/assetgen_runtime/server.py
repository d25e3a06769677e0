"""Server bootstrap shared by every service: gRPC with health and reflection, and graceful shutdown.

``build_grpc_server`` is what both a service's ``run_server`` and the tests call, so tests build
servers exactly as production does. ``wait_for_shutdown`` blocks until SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import _async as health_async
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from assetgen_runtime.errors import ErrorMappingInterceptor
from assetgen_runtime.metrics import MetricsInterceptor, serve_metrics

__all__ = [
    "GRPC_OPTIONS",
    "SERVER_OPTIONS",
    "GrpcServer",
    "RunningService",
    "build_grpc_server",
    "serve_until_signal",
    "wait_for_shutdown",
    "with_metrics",
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
RunningServiceT = TypeVar("RunningServiceT", bound="RunningService")


@dataclass
class GrpcServer:
    """A started gRPC server, its health servicer and the services it reports on."""

    server: grpc.aio.Server
    health: health_async.HealthServicer
    port: int
    service_names: list[str] = field(default_factory=list)

    async def set_serving(self, serving: bool = True) -> None:
        """Reports every service (and the server as a whole, "") SERVING or NOT_SERVING."""
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    async def stop(self, grace: float) -> None:
        """Health NOT_SERVING for every watcher, then stop accepting and let calls finish."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def build_grpc_server(
    services: Sequence[tuple[Registrar, Any, str]],
    *,
    host: str = "0.0.0.0",
    port: int = 0,
    interceptors: Iterable[grpc.aio.ServerInterceptor] = (),
    metrics_name: str = "",
) -> GrpcServer:
    """Starts a gRPC server for ``(add_XServicer_to_server, servicer, full_service_name)`` triples.

    With ``metrics_name`` every call is counted and timed under that service label.

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
    health = health_async.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
        server,
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot bind gRPC port {host}:{port}")
    await server.start()
    grpc_server = GrpcServer(server=server, health=health, port=bound, service_names=names)
    await grpc_server.set_serving(False)
    return grpc_server


async def wait_for_shutdown(stop: asyncio.Event | None = None) -> None:
    """Waits until SIGTERM or SIGINT (or ``stop`` is set by someone else)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    logger.info("shutdown requested")


async def run_cleanups(cleanups: Iterable[Callable[[], Awaitable[Any]]]) -> None:
    """Runs shutdown steps in order, logging (not raising) a failing one so the rest still run."""
    for cleanup in cleanups:
        try:
            await cleanup()
        except Exception:
            logger.exception("shutdown step failed")


@dataclass
class RunningService:
    """A started service: its gRPC server and the shutdown steps that follow ``server.stop(grace)``.

    ``cleanups`` run in order after the server stopped (drain NATS, close channels, dispose engines).
    """

    grpc: GrpcServer
    grace: float = 10.0
    cleanups: list[Callable[[], Awaitable[Any]]] = field(default_factory=list)
    metrics_port: int = 0

    @property
    def port(self) -> int:
        """The bound gRPC port."""
        return self.grpc.port

    async def stop(self) -> None:
        """Health NOT_SERVING → ``server.stop(grace)`` → the cleanups, in order."""
        await self.grpc.stop(self.grace)
        await run_cleanups(self.cleanups)


async def with_metrics(service: RunningServiceT, port: int) -> RunningServiceT:
    """Serves /metrics on ``port`` for ``service`` (nothing when 0) and stops it with the service."""
    if port:
        runner, service.metrics_port = await serve_metrics(port)
        service.cleanups.append(runner.cleanup)
    return service


async def serve_until_signal(service: RunningService) -> None:
    """Serves until SIGTERM/SIGINT, then shuts down gracefully."""
    await wait_for_shutdown()
    await service.stop()
