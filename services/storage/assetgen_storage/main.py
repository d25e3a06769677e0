"""Starts the storage service: ``run_server`` for tests and ``main``, ``main`` for the console script."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

import httpx

from assetgen.v1 import storage_pb2, storage_pb2_grpc
from assetgen_runtime.http import AsyncioHTTPTransport, cookieless_jar
from assetgen_runtime.netguard import NetworkGuard
from assetgen_runtime.server import Cleanups, RunningService, build_grpc_server, open_metrics
from assetgen_runtime.service import run_service
from assetgen_runtime.servicetoken import server_interceptors
from assetgen_runtime.settings import load
from assetgen_storage.bucket import Bucket
from assetgen_storage.service import StorageServicer
from assetgen_storage.settings import StorageSettings

__all__ = ["SERVICE_NAME", "main", "run_server"]

logger = logging.getLogger(__name__)

SERVICE_NAME = storage_pb2.DESCRIPTOR.services_by_name["StorageService"].full_name


async def run_server(
    settings: StorageSettings,
    *,
    port: int | None = None,
    network_guard: NetworkGuard | None = None,
    http_client: httpx.AsyncClient | None = None,
) -> RunningService:
    """Starts the gRPC server, ensures the bucket, then reports SERVING; ``port=0`` picks a free port.

    ``network_guard`` and ``http_client`` replace the ones built from ``settings`` (tests substitute a
    resolver); a given client is the caller's to close.
    """
    bucket = Bucket(settings)
    guard = network_guard or NetworkGuard(settings.allowed_fetch_networks)
    async with Cleanups() as opened:
        metrics_port = await open_metrics(opened, settings.metrics_port)
        # Redirects are followed by the SSRF guard, hop by hop; proxies from the environment would
        # bypass the address it pins, so none are used; nor are cookies, one download's to the next.
        http = http_client or httpx.AsyncClient(
            timeout=httpx.Timeout(settings.fetch_timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            cookies=cookieless_jar(),
            transport=AsyncioHTTPTransport(trust_env=False),
        )
        if http_client is None:
            opened.push_async_callback(http.aclose)
        servicer = StorageServicer(settings, bucket, http, guard)
        grpc_server = await build_grpc_server(
            [(storage_pb2_grpc.add_StorageServiceServicer_to_server, servicer, SERVICE_NAME)],
            host=settings.grpc_host,
            port=settings.grpc_port if port is None else port,
            interceptors=server_interceptors(settings.service_token),
            metrics_name="storage",
            cleanups=opened,
        )
        await bucket.ensure(settings.s3_startup_timeout_seconds)
        await grpc_server.set_serving(True)
        logger.info("storage serving", extra={"port": grpc_server.port, "bucket": settings.s3_bucket})
        return RunningService(
            grpc=grpc_server,
            grace=settings.shutdown_grace_seconds,
            cleanups=opened.pop_all(),
            metrics_port=metrics_port,
        )


_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 1024 * 1024


def _return_part_buffers_to_the_os() -> None:
    """Makes glibc map every buffer of 1 MiB or more on its own, so a freed part leaves the process.

    Multipart parts are allocated and freed over and over, in several threads. glibc raises its mmap
    threshold after the first freed part and then carves later parts out of per-thread heaps, where
    fragmentation keeps them resident: peak memory then grows with the object instead of staying a
    few part sizes. A fixed threshold turns that adjustment off. Not glibc (musl, macOS): nothing to do.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    if mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) != 1:
        logger.warning("could not set the malloc mmap threshold; memory may exceed a few part sizes")


async def _start(settings: StorageSettings) -> RunningService:
    _return_part_buffers_to_the_os()
    return await run_server(settings)


def main(argv: list[str] | None = None) -> None:
    """Runs the storage service until SIGTERM/SIGINT."""
    run_service(load(StorageSettings), "storage", _start)
