"""Entry point of the gateway: the public API over gRPC (typed stubs) and HTTP/JSON."""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass

import grpc
from aiohttp import web
from nats.aio.client import Client

from assetgen.v1 import (
    gateway_pb2,
    gateway_pb2_grpc,
    orchestrator_pb2_grpc,
    provider_adapter_pb2_grpc,
    storage_pb2_grpc,
)
from assetgen_gateway.access import ProjectMetadataInterceptor
from assetgen_gateway.api import GatewayApi
from assetgen_gateway.auth import Authenticator, AuthInterceptor, load_tokens
from assetgen_gateway.http_api import build_http_app
from assetgen_gateway.settings import GatewaySettings
from assetgen_gateway.watch import EventWatcher
from assetgen_gateway.watch_tokens import WatchTokenSigner
from assetgen_runtime.channels import open_channel
from assetgen_runtime.jetstream import connect
from assetgen_runtime.server import Cleanups, RunningService, build_grpc_server, open_metrics
from assetgen_runtime.service import run_service
from assetgen_runtime.servicetoken import token_interceptors
from assetgen_runtime.settings import load

__all__ = ["GatewayService", "main", "run_server"]

SERVICE_NAME = gateway_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name
# Watch tokens travel in URLs, which end up in logs: none lives longer than this.
MAX_WATCH_TOKEN_SECONDS = 900.0

logger = logging.getLogger(__name__)


@dataclass
class GatewayService(RunningService):
    """The running gateway: its gRPC server plus the HTTP port."""

    http_port: int = 0
    watcher: EventWatcher | None = None

    async def stop(self) -> None:
        """Ends the live-status streams first, so their clients resume elsewhere instead of waiting."""
        if self.watcher is not None:
            self.watcher.close()
        await super().stop()


async def run_server(
    settings: GatewaySettings, *, port: int | None = None, http_port: int | None = None
) -> GatewayService:
    """Starts the gateway's gRPC and HTTP servers; ``port=0``/``http_port=0`` pick free ports."""
    tokens = load_tokens(settings.api_tokens, settings.api_token_file)
    async with Cleanups() as opened:
        metrics_port = await open_metrics(opened, settings.metrics_port)
        # The gateway's own gRPC server is public (bearer keys); its calls inward carry the credential.
        service_token = token_interceptors(settings.service_token)
        channels = [
            open_channel(
                settings.orchestrator_addr, interceptors=[ProjectMetadataInterceptor(), *service_token]
            ),
            open_channel(settings.provider_adapter_addr, interceptors=service_token),
            open_channel(settings.storage_addr, interceptors=service_token),
        ]
        opened.push_async_callback(_close_channels, channels)
        nc = await connect(settings.nats_url, "assetgen-gateway")
        opened.push_async_callback(_drain, nc)
        watcher = EventWatcher(nc.jetstream(), heartbeat=settings.watch_heartbeat_seconds)
        access = orchestrator_pb2_grpc.AccessServiceStub(channels[0])
        authenticator = Authenticator(
            tokens, access, cache_seconds=settings.key_cache_seconds, timeout=settings.request_timeout_seconds
        )
        watch_tokens = _watch_token_signer(settings)
        api = GatewayApi(
            orchestrator_pb2_grpc.OrchestratorServiceStub(channels[0]),
            provider_adapter_pb2_grpc.ProviderAdapterServiceStub(channels[1]),
            storage_pb2_grpc.StorageServiceStub(channels[2]),
            timeout=settings.request_timeout_seconds,
            max_upload_bytes=settings.max_object_bytes,
            watcher=watcher,
            access=access,
            webhooks=orchestrator_pb2_grpc.WebhookServiceStub(channels[0]),
            callbacks=orchestrator_pb2_grpc.CallbackServiceStub(channels[0]),
            watch_tokens=watch_tokens,
            on_key_revoked=authenticator.forget_key,
            max_watchers_per_key=settings.max_watchers_per_key,
            max_uploads_per_key=settings.max_uploads_per_key,
        )
        server = await build_grpc_server(
            [(gateway_pb2_grpc.add_GatewayServiceServicer_to_server, api, SERVICE_NAME)],
            port=settings.grpc_port if port is None else port,
            metrics_name="gateway",
            interceptors=[AuthInterceptor(authenticator)],
            cleanups=opened,
        )
        ready = False
        app = build_http_app(
            api,
            authenticator,
            watch_tokens=watch_tokens,
            cors_origins=settings.cors_origins,
            console_media_origins=settings.console_media_origins,
            max_json_bytes=settings.max_json_body_bytes,
            max_upload_bytes=settings.max_object_bytes,
            readiness=lambda: ready,
            heartbeat=settings.watch_heartbeat_seconds,
        )
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_grace_seconds)
        await runner.setup()
        opened.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "0.0.0.0", settings.http_port if http_port is None else http_port)
        await site.start()
        bound_http = runner.addresses[0][1]
        await server.set_serving()
        ready = True
        return GatewayService(
            grpc=server,
            grace=settings.shutdown_grace_seconds,
            cleanups=opened.pop_all(),
            metrics_port=metrics_port,
            http_port=bound_http,
            watcher=watcher,
        )


def _watch_token_signer(settings: GatewaySettings) -> WatchTokenSigner:
    """The signer of watch tokens, with the configured secret or, lacking one, a random one."""
    ttl = min(settings.watch_token_ttl_seconds, MAX_WATCH_TOKEN_SECONDS)
    if settings.watch_token_secret:
        return WatchTokenSigner(settings.watch_token_secret.encode(), ttl)
    logger.warning(
        "ASSETGEN_WATCH_TOKEN_SECRET is not set: watch tokens are signed with a random secret of this "
        "process, so another replica (or this one after a restart) refuses them; set it when running "
        "more than one gateway"
    )
    return WatchTokenSigner(secrets.token_bytes(32), ttl)


async def _close_channels(channels: list[grpc.aio.Channel]) -> None:
    for channel in channels:
        with contextlib.suppress(Exception):
            await channel.close()


async def _drain(nc: Client) -> None:
    with contextlib.suppress(Exception):
        await nc.drain()


def main(argv: list[str] | None = None) -> None:
    """Serves until SIGTERM."""
    run_service(load(GatewaySettings), "gateway", run_server)


if __name__ == "__main__":
    main()
