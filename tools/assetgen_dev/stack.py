"""The four services started in this process, on free ports, wired to given NATS, S3 and databases.

Tests build the system exactly as `main()` does, through each service's ``run_server``; only
addresses differ. ``start_stack`` starts the services; ``whole_stack`` adds a NATS of its own, the
fake providers to serve and an authenticated HTTP client (the integration tests' ``whole_stack``
fixture, tests/integration/conftest.py).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from assetgen_dev.embedded import EmbeddedProcess, S3Server, start_nats
from assetgen_gateway.main import run_server as run_gateway
from assetgen_gateway.settings import GatewaySettings
from assetgen_orchestrator.main import run_server as run_orchestrator
from assetgen_orchestrator.settings import OrchestratorSettings
from assetgen_provider_adapter.main import run_server as run_provider_adapter
from assetgen_provider_adapter.settings import ProviderAdapterSettings
from assetgen_runtime.server import RunningService
from assetgen_storage.main import run_server as run_storage
from assetgen_storage.settings import StorageSettings

__all__ = ["ServedFake", "Stack", "WholeStack", "WholeStackFactory", "start_stack", "whole_stack"]


@dataclass
class Stack:
    """A running AssetGen: where to reach the gateway, and the services to stop."""

    http_url: str
    grpc_address: str
    token: str
    bucket: str
    services: list[RunningService] = field(default_factory=list)
    orchestrator_settings: OrchestratorSettings | None = None
    storage_addr: str = ""
    provider_adapter_addr: str = ""

    async def stop(self) -> None:
        """Stops the services, gateway first, as a rolling shutdown would."""
        for service in reversed(self.services):
            await service.stop()


async def start_stack(
    data_dir: Path,
    *,
    nats_url: str,
    s3: S3Server,
    database_url: str = "",
    catalog_database_url: str = "",
    allowed_fetch_networks: tuple[str, ...] = ("127.0.0.0/8",),
    token: str = "",
    max_object_bytes: int = 2 * 1024**3,
    orchestrator_overrides: dict[str, object] | None = None,
    external_orchestrator_addr: str = "",
    service_token: str = "",
    gateway_http_port: int = 0,
) -> Stack:
    """Starts storage, provider-adapter, orchestrator and gateway, in that order.

    With ``external_orchestrator_addr`` no orchestrator is started here: the gateway calls that one
    (tests run it as a process of its own, to kill and restart it). With ``service_token`` every
    internal service requires it and every service attaches it to its calls.
    ``gateway_http_port`` pins the gateway's HTTP port (to name it in ``ASSETGEN_PUBLIC_URL``).
    """
    token = token or uuid.uuid4().hex
    bucket = f"assetgen-{uuid.uuid4().hex[:12]}"
    data_dir.mkdir(parents=True, exist_ok=True)
    services: list[RunningService] = []
    try:
        storage = await run_storage(
            StorageSettings(
                s3_endpoint=s3.url,
                s3_access_key=s3.access_key,
                s3_secret_key=s3.secret_key,
                s3_bucket=bucket,
                allowed_fetch_networks=allowed_fetch_networks,
                max_object_bytes=max_object_bytes,
                service_token=service_token,
            ),
            port=0,
        )
        services.append(storage)
        storage_addr = f"127.0.0.1:{storage.port}"
        adapter = await run_provider_adapter(
            ProviderAdapterSettings(
                data_dir=str(data_dir),
                catalog_database_url=catalog_database_url,
                storage_addr=storage_addr,
                allowed_fetch_networks=allowed_fetch_networks,
                secret_key="test-secret",
                service_token=service_token,
            ),
            port=0,
        )
        services.append(adapter)
        adapter_addr = f"127.0.0.1:{adapter.port}"
        orchestrator_settings = OrchestratorSettings(
            data_dir=str(data_dir),
            database_url=database_url,
            nats_url=nats_url,
            provider_adapter_addr=adapter_addr,
            storage_addr=storage_addr,
            service_token=service_token,
            **(orchestrator_overrides or {}),  # type: ignore[arg-type]
        )
        if external_orchestrator_addr:
            orchestrator_addr = external_orchestrator_addr
        else:
            orchestrator = await run_orchestrator(orchestrator_settings, port=0)
            services.append(orchestrator)
            orchestrator_addr = f"127.0.0.1:{orchestrator.port}"
        gateway = await run_gateway(
            GatewaySettings(
                orchestrator_addr=orchestrator_addr,
                provider_adapter_addr=adapter_addr,
                storage_addr=storage_addr,
                nats_url=nats_url,
                api_tokens=(token,),
                max_object_bytes=max_object_bytes,
                service_token=service_token,
            ),
            port=0,
            http_port=gateway_http_port,
        )
        services.append(gateway)
    except BaseException:
        for service in reversed(services):
            await service.stop()
        raise
    return Stack(
        http_url=f"http://127.0.0.1:{gateway.http_port}",
        grpc_address=f"127.0.0.1:{gateway.port}",
        token=token,
        bucket=bucket,
        services=services,
        orchestrator_settings=orchestrator_settings,
        storage_addr=storage_addr,
        provider_adapter_addr=adapter_addr,
    )


class ServedFake(Protocol):
    """A fake provider served for a whole stack's lifetime."""

    api_key: str
    base_url: str

    async def start(self) -> str: ...

    async def stop(self) -> None: ...


@dataclass
class WholeStack:
    """A running AssetGen: its services, its NATS, an HTTP client authenticated to the gateway, its fakes."""

    stack: Stack
    nats: EmbeddedProcess
    http: httpx.AsyncClient
    fakes: list[ServedFake] = field(default_factory=list)

    @property
    def provider_url(self) -> str:
        """The base URL of the (first) fake provider it serves."""
        return self.fakes[0].base_url

    async def add_provider(self, name: str, fake: ServedFake, *, preset: str = "kie-ai") -> None:
        """Registers ``fake`` as provider ``name`` from ``preset``, with the fake's key."""
        body = {"name": name, "preset": preset, "base_url": fake.base_url, "api_key": fake.api_key}
        _created(await self.http.post("/api/providers/", json=body))

    async def add_model(self, provider: str, name: str, model_type: str, schema: dict[str, Any]) -> None:
        """Registers model ``name`` of ``provider`` with its request schema."""
        body = {"provider": provider, "name": name, "model_type": model_type, "request_schema": schema}
        _created(await self.http.post("/api/models/", json=body))


def _created(response: httpx.Response) -> None:
    if response.status_code != 201:
        raise RuntimeError(f"{response.request.url.path} answered {response.status_code}: {response.text}")


WholeStackFactory = Callable[..., AbstractAsyncContextManager[WholeStack]]
"""``whole_stack`` with its S3 server bound, as the integration tests' fixture hands it out."""


@contextlib.asynccontextmanager
async def whole_stack(
    data_dir: Path,
    *,
    s3: S3Server,
    fakes: Iterable[ServedFake] = (),
    nats_port: int | None = None,
    **stack_options: Any,
) -> AsyncIterator[WholeStack]:
    """NATS of its own (under ``data_dir``), ``fakes`` served, the services, an authenticated client.

    ``nats_port`` pins NATS's port (to restart it there); other options go to :func:`start_stack`.
    Everything stops in reverse order, also when starting fails halfway.
    """
    async with contextlib.AsyncExitStack() as cleanup:
        nats = start_nats(data_dir / "nats", port=nats_port)
        cleanup.callback(nats.stop)
        served = list(fakes)
        for fake in served:
            await fake.start()
            cleanup.push_async_callback(fake.stop)
        stack = await start_stack(data_dir / "stack", nats_url=nats.url, s3=s3, **stack_options)
        cleanup.push_async_callback(stack.stop)
        http = httpx.AsyncClient(
            base_url=stack.http_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30
        )
        cleanup.push_async_callback(http.aclose)
        yield WholeStack(stack=stack, nats=nats, http=http, fakes=served)
