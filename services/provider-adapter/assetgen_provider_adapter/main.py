"""Entry point of the provider-adapter: ``assetgen-provider-adapter`` (serve) or ``... migrate``."""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from assetgen.v1 import provider_adapter_pb2, provider_adapter_pb2_grpc, storage_pb2_grpc
from assetgen_provider_adapter.callbacks import JwksCache
from assetgen_provider_adapter.catalog import Catalog
from assetgen_provider_adapter.credentials import KeyReferences, load_secret_box
from assetgen_provider_adapter.egress import ProviderEgress
from assetgen_provider_adapter.engine import ProviderEngine, RetryPolicy
from assetgen_provider_adapter.key_binding import KeyRefAllowList
from assetgen_provider_adapter.key_pool import KeyPool
from assetgen_provider_adapter.ledger import SubmissionLedger
from assetgen_provider_adapter.profiles import load_presets
from assetgen_provider_adapter.results import ResultStore
from assetgen_provider_adapter.service import ProviderAdapterServicer
from assetgen_provider_adapter.settings import ProviderAdapterSettings
from assetgen_provider_adapter.submission_queue import SubmissionQueue
from assetgen_provider_adapter.webhook_secrets import WebhookSecrets
from assetgen_runtime.channels import open_channel
from assetgen_runtime.database import create_engine, migrate, session_factory
from assetgen_runtime.guarded_backend import GuardedNetworkBackend
from assetgen_runtime.http import DirectClient, ShardedTransport, cookieless_jar
from assetgen_runtime.jsonlog import configure_logging
from assetgen_runtime.netguard import NetworkGuard
from assetgen_runtime.server import Cleanups, RunningService, build_grpc_server, open_metrics
from assetgen_runtime.service import run_service
from assetgen_runtime.servicetoken import server_interceptors, token_interceptors
from assetgen_runtime.settings import load

__all__ = ["main", "migrate_database", "new_http_client", "run_server"]

MIGRATIONS = str(Path(__file__).parent / "migrations")
SERVICE_NAME = provider_adapter_pb2.DESCRIPTOR.services_by_name["ProviderAdapterService"].full_name

# Thousands of tasks are polled concurrently: up to 512 connections, kept warm, in eight pools
# (see ShardedTransport for why not one).
_HTTP_POOLS = 8
_HTTP_POOL_LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30)


async def migrate_database(settings: ProviderAdapterSettings) -> None:
    """Brings the catalog database to the newest schema."""
    url = settings.resolved_catalog_database_url
    if url.startswith("sqlite") and not settings.catalog_database_url:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    await migrate(url, MIGRATIONS, version_table="alembic_version_catalog")


def new_http_client(settings: ProviderAdapterSettings, guard: NetworkGuard | None = None) -> DirectClient:
    """The process's one client for provider calls; redirects are not followed (keys stay put), no
    cookie is kept from one call to the next, and every connection goes only to an address ``guard``
    (default: one for ``settings``) allows, the very one it checked."""
    backend = GuardedNetworkBackend(guard or NetworkGuard(settings.allowed_fetch_networks))
    return DirectClient(
        cookies=cookieless_jar(),
        timeout=httpx.Timeout(
            settings.http_timeout_seconds, connect=min(settings.http_timeout_seconds, 10.0)
        ),
        transport=ShardedTransport(_HTTP_POOLS, _HTTP_POOL_LIMITS, network_backend=backend),
        follow_redirects=False,
        headers={"User-Agent": "assetgen-provider-adapter/0.1"},
    )


async def _fetch_json(client: httpx.AsyncClient, url: str) -> Any:
    """A provider's public document (a JWKS), through the guarded client."""
    response = await client.get(url, timeout=10.0)
    response.raise_for_status()
    return response.json()


async def run_server(
    settings: ProviderAdapterSettings,
    *,
    port: int | None = None,
    http_client: DirectClient | None = None,
    retry_policy: RetryPolicy | None = None,
    cache_ttl: float = 5.0,
) -> RunningService:
    """Starts the provider-adapter: catalog database (migrated), HTTP client and gRPC server."""
    load_presets()  # a broken preset must stop the start, not the first call
    async with Cleanups() as opened:
        metrics_port = await open_metrics(opened, settings.metrics_port)
        await migrate_database(settings)
        engine = create_engine(settings.resolved_catalog_database_url)
        opened.push_async_callback(engine.dispose)
        sessions = session_factory(engine)
        box = load_secret_box(settings.secret_key, settings.data_dir)
        storage_channel = open_channel(
            settings.storage_addr, interceptors=token_interceptors(settings.service_token)
        )
        opened.push_async_callback(storage_channel.close)
        guard = NetworkGuard(settings.allowed_fetch_networks)
        client = http_client or new_http_client(settings, guard)
        if http_client is None:
            opened.push_async_callback(client.aclose)
        results = ResultStore(
            storage_pb2_grpc.StorageServiceStub(storage_channel),
            client,
            guard,
            download_timeout=settings.http_timeout_seconds,
        )
        opened.push_async_callback(results.close)
        catalog = Catalog(
            sessions,
            box,
            cache_ttl=cache_ttl,
            references=KeyReferences(os.environ, settings.provider_secrets_dir),
            egress=ProviderEgress(guard, settings.provider_hosts),
            key_ref_allowlist=KeyRefAllowList(settings.key_ref_allowlist),
        )
        opened.push_async_callback(catalog.aclose)
        servicer = ProviderAdapterServicer(
            catalog,
            SubmissionLedger(engine, write_linger=settings.db_write_linger_ms / 1000),
            ProviderEngine(
                client,
                default_timeout=settings.http_timeout_seconds,
                retry=retry_policy,
                guard=guard,
                max_inline_bytes=settings.max_inline_result_bytes,
            ),
            results,
            poll_concurrency=settings.poll_concurrency,
            keys=KeyPool(engine, sessions, box, KeyReferences(os.environ, settings.provider_secrets_dir)),
            queue=SubmissionQueue(engine),
            webhook_secrets=WebhookSecrets(sessions, box),
            jwks=JwksCache(functools.partial(_fetch_json, client)),
        )
        # Submissions still running when the server stopped reach their recorded outcome first.
        opened.push_async_callback(servicer.aclose, settings.shutdown_grace_seconds)
        register = provider_adapter_pb2_grpc.add_ProviderAdapterServiceServicer_to_server
        server = await build_grpc_server(
            [(register, servicer, SERVICE_NAME)],
            host=settings.grpc_host,
            port=settings.grpc_port if port is None else port,
            interceptors=server_interceptors(settings.service_token),
            metrics_name="provider-adapter",
            cleanups=opened,
        )
        await server.set_serving()
        return RunningService(
            grpc=server,
            grace=settings.shutdown_grace_seconds,
            cleanups=opened.pop_all(),
            metrics_port=metrics_port,
        )


def main(argv: list[str] | None = None) -> None:
    """``assetgen-provider-adapter`` serves; ``assetgen-provider-adapter migrate`` migrates and exits."""
    args = sys.argv[1:] if argv is None else argv
    settings = load(ProviderAdapterSettings)
    if args[:1] == ["migrate"]:
        configure_logging("provider-adapter", settings.log_level)
        asyncio.run(migrate_database(settings))
        return
    if args:
        raise SystemExit(f"usage: assetgen-provider-adapter [migrate], got {' '.join(args)}")
    run_service(settings, "provider-adapter", run_server)


if __name__ == "__main__":
    main()
