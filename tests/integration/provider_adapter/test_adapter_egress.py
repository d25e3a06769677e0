"""The adapter's gRPC catalog with loopback not allowed (production's default): loopback names and
addresses are refused, and the operator's provider host list applies to stored providers too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from assetgen.v1 import gateway_pb2, provider_adapter_pb2_grpc
from assetgen_provider_adapter.main import run_server
from assetgen_provider_adapter.settings import ProviderAdapterSettings
from assetgen_runtime.settings import load


@pytest.fixture
async def adapter(tmp_path: Path) -> AsyncIterator[provider_adapter_pb2_grpc.ProviderAdapterServiceStub]:
    settings = load(
        ProviderAdapterSettings,
        environ={},
        catalog_database_url=f"sqlite+aiosqlite:///{tmp_path}/catalog.db",
        data_dir=str(tmp_path),
        secret_key="s",
        provider_hosts=("localhost", "*.in-list.test", "[::1]", "::1", "127.0.0.1"),
    )
    service = await run_server(settings, port=0)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    try:
        yield provider_adapter_pb2_grpc.ProviderAdapterServiceStub(channel)
    finally:
        await channel.close()
        await service.stop()


async def _refusal(stub: provider_adapter_pb2_grpc.ProviderAdapterServiceStub, base_url: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateProvider(
            gateway_pb2.CreateProviderRequest(name="p", preset="kie-ai", base_url=base_url, api_key="k"),
            timeout=10,
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    return refused.value.details() or ""


async def test_loopback_is_refused_when_not_allowed(
    adapter: provider_adapter_pb2_grpc.ProviderAdapterServiceStub,
) -> None:
    assert await _refusal(adapter, "http://[::1]:8080") == "base_url: ::1 is loopback and not allowed"
    assert (
        await _refusal(adapter, "http://127.0.0.1:8080") == "base_url: 127.0.0.1 is loopback and not allowed"
    )
    details = await _refusal(adapter, "http://localhost:8080")
    assert details.startswith("base_url: localhost resolves to ") and "is loopback and not allowed" in details


async def test_hosts_outside_the_operator_list_are_refused(
    adapter: provider_adapter_pb2_grpc.ProviderAdapterServiceStub,
) -> None:
    details = await _refusal(adapter, "https://api.kie.ai")
    assert "host 'api.kie.ai' is not among the allowed provider hosts" in details
    created = await adapter.CreateProvider(
        gateway_pb2.CreateProviderRequest(
            name="listed", preset="kie-ai", base_url="https://api.in-list.test", api_key="k"
        ),
        timeout=10,
    )
    assert created.base_url == "https://api.in-list.test"
