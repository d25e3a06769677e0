"""open_channel retries UNAVAILABLE only on methods whose repeat cannot do the work twice (issue 22)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest

from assetgen_runtime.channels import NOT_RETRIED, open_channel

RETRIED = ("assetgen.v1.OrchestratorService", "GetBox")


@pytest.fixture
async def unavailable_server() -> AsyncIterator[tuple[str, Counter[str]]]:
    """A server whose every method answers UNAVAILABLE; counts the calls per method."""
    calls: Counter[str] = Counter()

    def handler(method: str) -> grpc.RpcMethodHandler:
        async def answer(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            calls[method] += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "busy")
            return b""

        return grpc.unary_unary_rpc_method_handler(answer)

    server = grpc.aio.server()
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for service, method in (*NOT_RETRIED, RETRIED):
        by_service.setdefault(service, {})[method] = handler(f"{service}/{method}")
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler(service, methods) for service, methods in by_service.items()]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", calls
    await server.stop(0)


async def _call(channel: grpc.aio.Channel, service: str, method: str) -> grpc.StatusCode:
    call = channel.unary_unary(f"/{service}/{method}")
    try:
        await call(b"", timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    raise AssertionError("the server always answers UNAVAILABLE")


async def test_only_idempotent_methods_are_retried(unavailable_server: tuple[str, Counter[str]]) -> None:
    address, calls = unavailable_server
    channel = open_channel(address)
    try:
        assert await _call(channel, *RETRIED) == grpc.StatusCode.UNAVAILABLE
        for service, method in NOT_RETRIED:
            assert await _call(channel, service, method) == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()
    assert calls["/".join(RETRIED)] == 5
    assert {method: calls[f"{service}/{method}"] for service, method in NOT_RETRIED} == {
        method: 1 for _, method in NOT_RETRIED
    }
