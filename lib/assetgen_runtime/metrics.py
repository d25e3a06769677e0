"""Prometheus metrics: the gRPC request metrics every service shares, and the /metrics endpoint.

Each service serves ``/metrics`` on its own ``ASSETGEN_METRICS_PORT`` (0 turns the endpoint off, as
tests do); domain metrics (assets by status, polls, ingest bytes) are defined by the service that
owns them, in the same default registry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from assetgen_runtime.errors import AssetGenError
from assetgen_runtime.handlers import StreamBehavior, UnaryBehavior, rewrap

__all__ = ["GRPC_LATENCY", "GRPC_REQUESTS", "MetricsInterceptor", "serve_metrics"]

GRPC_REQUESTS = Counter(
    "assetgen_grpc_requests_total",
    "gRPC calls served, by method and status code.",
    ["service", "method", "code"],
)
GRPC_LATENCY = Histogram(
    "assetgen_grpc_request_seconds",
    "Time to serve a gRPC call (a whole stream for streaming calls).",
    ["service", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)


def _code_of(exc: BaseException) -> str:
    if isinstance(exc, AssetGenError):
        return exc.code.name
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    return "INTERNAL"


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every call; sits inside the error mapping, so it sees domain errors as raised."""

    def __init__(self, service: str) -> None:
        self._service = service

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = (handler_call_details.method or "").rsplit("/", 1)[-1]
        service = self._service

        def record(started: float, code: str) -> None:
            GRPC_REQUESTS.labels(service, method, code).inc()
            GRPC_LATENCY.labels(service, method).observe(time.perf_counter() - started)

        def unary(behavior: UnaryBehavior) -> UnaryBehavior:
            async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started = time.perf_counter()
                try:
                    response = await behavior(request, context)
                except BaseException as exc:
                    record(started, _code_of(exc))
                    raise
                record(started, "OK")
                return response

            return wrapped

        def streaming(behavior: StreamBehavior) -> StreamBehavior:
            async def wrapped(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                started = time.perf_counter()
                try:
                    async for item in behavior(request, context):
                        yield item
                except BaseException as exc:
                    record(started, _code_of(exc))
                    raise
                record(started, "OK")

            return wrapped

        return rewrap(handler, unary=unary, streaming=streaming)


async def metrics_handler(request: web.Request) -> web.Response:
    """The Prometheus text exposition of the process's registry."""
    body = generate_latest()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_metrics(port: int, host: str = "0.0.0.0") -> tuple[web.AppRunner, int]:
    """Serves GET /metrics on ``port`` (0: any free port); returns the runner (cleanup stops it) and port."""
    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()  # a port already taken must not leave the runner open
        raise
    return runner, int(runner.addresses[0][1])
