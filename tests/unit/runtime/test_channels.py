"""open_channel: calls spread over every address of a peer, so replicas share the load."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from assetgen_runtime.channels import open_channel
from assetgen_runtime.server import GRPC_OPTIONS, SERVER_OPTIONS, GrpcServer, build_grpc_server


class _CallCounter(grpc.aio.ServerInterceptor):
    """Counts the calls a server receives under its name."""

    def __init__(self, name: str, counts: Counter[str]) -> None:
        self._name = name
        self._counts = counts

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        self._counts[self._name] += 1
        return await continuation(handler_call_details)


@pytest.fixture
async def two_replicas() -> AsyncIterator[tuple[list[GrpcServer], Counter[str]]]:
    counts: Counter[str] = Counter()
    servers = [
        await build_grpc_server([], host="127.0.0.1", interceptors=[_CallCounter(name, counts)])
        for name in ("first", "second")
    ]
    for server in servers:
        await server.set_serving()
    yield servers, counts
    for server in servers:
        await server.stop(0)


async def test_calls_are_spread_over_every_address_of_the_peer(
    two_replicas: tuple[list[GrpcServer], Counter[str]],
) -> None:
    servers, counts = two_replicas
    address = "ipv4:" + ",".join(f"127.0.0.1:{server.port}" for server in servers)
    channel = open_channel(address)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + 10
        # The second connection may become ready a moment after the first: call until both answer.
        while len(counts) < 2 and asyncio.get_running_loop().time() < deadline:
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
        for _ in range(20):
            await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        await channel.close()

    assert set(counts) == {"first", "second"}
    # Round-robin: once both are connected, they take turns.
    assert min(counts.values()) >= 10


def test_servers_age_out_connections_so_clients_find_new_replicas() -> None:
    assert dict(SERVER_OPTIONS)["grpc.max_connection_age_ms"] == 300_000


def test_servers_accept_the_keepalive_pings_of_idle_channels() -> None:
    client, server = dict(GRPC_OPTIONS), dict(SERVER_OPTIONS)
    assert client["grpc.keepalive_permit_without_calls"] == 1  # idle connections ping too
    # A ping sooner than the server's minimum is a strike, and two strikes close the connection
    # (GOAWAY "too_many_pings"); the default minimum is 5 minutes.
    assert server["grpc.http2.min_ping_interval_without_data_ms"] < client["grpc.keepalive_time_ms"]
