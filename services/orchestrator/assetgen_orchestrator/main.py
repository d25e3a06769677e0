"""Entry point of the orchestrator: ``assetgen-orchestrator`` (serve) or ``assetgen-orchestrator migrate``."""

from __future__ import annotations

import asyncio
import functools
import secrets
import sys
from pathlib import Path

import httpx

from assetgen.v1 import orchestrator_pb2, orchestrator_pb2_grpc, provider_adapter_pb2_grpc, storage_pb2_grpc
from assetgen_orchestrator.access import AccessStore
from assetgen_orchestrator.access_service import AccessServicer
from assetgen_orchestrator.callback_service import CallbackServicer
from assetgen_orchestrator.callback_tokens import CallbackUrls
from assetgen_orchestrator.cost_ledger import CostLedger
from assetgen_orchestrator.events import EventPublisher
from assetgen_orchestrator.jobs import JobPublisher, JobRunner, setup_streams
from assetgen_orchestrator.lifecycle import Lifecycle, LifecycleConfig
from assetgen_orchestrator.metrics import start_gauge_refresh
from assetgen_orchestrator.reconciler import start_reconciler
from assetgen_orchestrator.scope import ProjectScope
from assetgen_orchestrator.service import OrchestratorServicer
from assetgen_orchestrator.settings import OrchestratorSettings
from assetgen_orchestrator.store import AssetStore
from assetgen_orchestrator.webhook_fanout import WebhookFanout, setup_webhook_stream
from assetgen_orchestrator.webhook_metrics import start_webhook_gauge_refresh
from assetgen_orchestrator.webhook_policy import parse_retry_schedule
from assetgen_orchestrator.webhook_sender import WebhookSender
from assetgen_orchestrator.webhook_service import WebhookServicer
from assetgen_orchestrator.webhooks import WebhookDestinations, WebhookStore
from assetgen_runtime import jetstream
from assetgen_runtime.channels import open_channel
from assetgen_runtime.database import create_engine, migrate
from assetgen_runtime.guarded_backend import GuardedNetworkBackend
from assetgen_runtime.http import AsyncioHTTPTransport, cookieless_jar
from assetgen_runtime.jsonlog import configure_logging
from assetgen_runtime.netguard import NetworkGuard
from assetgen_runtime.server import Cleanups, RunningService, build_grpc_server, open_metrics
from assetgen_runtime.service import run_service
from assetgen_runtime.servicetoken import server_interceptors, token_interceptors
from assetgen_runtime.settings import load

__all__ = ["main", "migrate_database", "run_server"]

MIGRATIONS = str(Path(__file__).parent / "migrations")
SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
ACCESS_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["AccessService"].full_name
WEBHOOK_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["WebhookService"].full_name
CALLBACK_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["CallbackService"].full_name


async def migrate_database(settings: OrchestratorSettings) -> None:
    """Brings the asset database to the newest schema."""
    url = settings.resolved_database_url
    if url.startswith("sqlite") and not settings.database_url:
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    await migrate(url, MIGRATIONS, version_table="alembic_version_orchestrator")


async def run_server(settings: OrchestratorSettings, *, port: int | None = None) -> RunningService:
    """Starts the orchestrator: database, NATS streams, job runner and gRPC server."""
    async with Cleanups() as opened:
        metrics_port = await open_metrics(opened, settings.metrics_port)
        await migrate_database(settings)
        engine = create_engine(settings.resolved_database_url)
        opened.push_async_callback(engine.dispose)
        store = AssetStore(engine, write_linger=settings.db_write_linger_ms / 1000)
        ledger = CostLedger(engine)
        storage_channel = open_channel(
            settings.storage_addr, interceptors=token_interceptors(settings.service_token)
        )
        opened.push_async_callback(storage_channel.close)
        adapter_channel = open_channel(
            settings.provider_adapter_addr, interceptors=token_interceptors(settings.service_token)
        )
        opened.push_async_callback(adapter_channel.close)
        nc = await jetstream.connect(settings.nats_url, "assetgen-orchestrator")
        opened.push_async_callback(nc.drain)
        js = nc.jetstream(timeout=10)
        ensure_streams = functools.partial(
            setup_streams, js, events_max_age=settings.events_max_age_seconds, replicas=settings.nats_replicas
        )
        await ensure_streams()
        adapter = provider_adapter_pb2_grpc.ProviderAdapterServiceStub(adapter_channel)
        storage = storage_pb2_grpc.StorageServiceStub(storage_channel)
        events = EventPublisher(nc)
        callback_urls = CallbackUrls(
            settings.public_url, settings.callback_secret.encode() or secrets.token_bytes(32)
        )
        lifecycle = Lifecycle(
            store,
            adapter,
            storage,
            events,
            LifecycleConfig(
                step_retries=settings.submit_retries,
                retry_base_seconds=settings.retry_base_seconds,
                rpc_timeout=settings.rpc_timeout_seconds,
                submit_timeout=settings.submit_timeout_seconds,
                ingest_timeout=settings.ingest_timeout_seconds,
                default_deadline=settings.default_deadline_seconds,
                max_pull_pause=settings.max_pull_pause_ms / 1000,
                retry_max_seconds=settings.retry_max_seconds,
            ),
            callback_url=callback_urls.url,
            ledger=ledger,
        )
        runner = JobRunner(
            js,
            lifecycle.handle,
            lifecycle.on_poison,
            concurrency=settings.worker_concurrency,
            ack_wait=settings.ack_wait_seconds,
            max_ack_pending=settings.max_in_flight,
            pull_pause=settings.max_pull_pause_ms / 1000,
            ensure_streams=ensure_streams,
        )
        jobs = JobPublisher(js, on_published=runner.job_published)
        access = AccessStore(engine)
        webhook_schedule = parse_retry_schedule(settings.webhook_retry_schedule)
        webhook_guard = NetworkGuard(settings.webhook_allowed_networks)
        webhooks = WebhookStore(engine)
        await setup_webhook_stream(js, replicas=settings.nats_replicas)
        # Deliveries go to callers' URLs: every connection through the egress guard, no redirect
        # followed, no cookie kept.
        webhook_client = httpx.AsyncClient(
            cookies=cookieless_jar(),
            transport=AsyncioHTTPTransport(network_backend=GuardedNetworkBackend(webhook_guard)),
            follow_redirects=False,
            timeout=settings.webhook_timeout_seconds,
        )
        opened.push_async_callback(webhook_client.aclose)
        servicer = OrchestratorServicer(
            store,
            adapter,
            storage,
            jobs,
            events,
            access=access,
            ledger=ledger,
            rpc_timeout=settings.rpc_timeout_seconds,
        )
        server = await build_grpc_server(
            [
                (orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server, servicer, SERVICE_NAME),
                (
                    orchestrator_pb2_grpc.add_AccessServiceServicer_to_server,
                    AccessServicer(access),
                    ACCESS_NAME,
                ),
                (
                    orchestrator_pb2_grpc.add_WebhookServiceServicer_to_server,
                    WebhookServicer(
                        webhooks, WebhookDestinations(webhook_guard), ProjectScope(store), access, js
                    ),
                    WEBHOOK_NAME,
                ),
                (
                    orchestrator_pb2_grpc.add_CallbackServiceServicer_to_server,
                    CallbackServicer(
                        store, adapter, jobs, events, callback_urls, rpc_timeout=settings.rpc_timeout_seconds
                    ),
                    CALLBACK_NAME,
                ),
            ],
            host=settings.grpc_host,
            port=settings.grpc_port if port is None else port,
            interceptors=server_interceptors(settings.service_token),
            metrics_name="orchestrator",
            cleanups=opened,
        )
        await runner.start()
        opened.push_async_callback(runner.stop, settings.shutdown_grace_seconds)
        fanout = WebhookFanout(js, store, webhooks)
        await fanout.start()
        opened.push_async_callback(fanout.stop)
        sender = WebhookSender(
            js,
            webhooks,
            webhook_client,
            schedule=webhook_schedule,
            timeout=settings.webhook_timeout_seconds,
        )
        await sender.start()
        opened.push_async_callback(sender.stop, settings.shutdown_grace_seconds)
        reconciler = start_reconciler(
            store,
            jobs,
            engine,
            nc,
            ensure_streams,
            interval=settings.reconcile_interval_seconds,
            quiet_after=settings.reconcile_quiet_seconds,
        )
        opened.push_async_callback(reconciler.stop)
        if settings.metrics_port:
            opened.push_async_callback(start_gauge_refresh(store))
            opened.push_async_callback(start_webhook_gauge_refresh(webhooks))
        await server.set_serving()
        return RunningService(
            grpc=server,
            grace=settings.shutdown_grace_seconds,
            cleanups=opened.pop_all(),
            metrics_port=metrics_port,
        )


def main(argv: list[str] | None = None) -> None:
    """Serves until SIGTERM; with the argument ``migrate``, migrates the database and exits."""
    args = sys.argv[1:] if argv is None else argv
    settings = load(OrchestratorSettings)
    if args[:1] == ["migrate"]:
        configure_logging("orchestrator", settings.log_level)
        asyncio.run(migrate_database(settings))
        return
    run_service(settings, "orchestrator", run_server)


if __name__ == "__main__":
    main()
