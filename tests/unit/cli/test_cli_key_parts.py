"""``assetgen providers add --api-key-part NAME=env:VAR``: a key of named parts read from the
environment (never the command line), and a retired preset's warning on stderr.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import grpc
import pytest

from assetgen.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from assetgen_cli.main import EXIT_OK, EXIT_USAGE, run_cli

TOKEN = "unit-token"


class _Gateway(gateway_pb2_grpc.GatewayServiceServicer):
    def __init__(self) -> None:
        self.created: list[gateway_pb2.CreateProviderRequest] = []

    async def CreateProvider(
        self, request: gateway_pb2.CreateProviderRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Provider:
        self.created.append(request)
        warning = "preset 'openai-videos' is retired upstream" if request.preset == "openai-videos" else ""
        return common_pb2.Provider(id="prv_1", name=request.name, preset=request.preset, warning=warning)


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[_Gateway, dict[str, str]]]:
    server = grpc.aio.server()
    servicer = _Gateway()
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, {"ASSETGEN_URL": f"127.0.0.1:{port}", "ASSETGEN_TOKEN": TOKEN}
    finally:
        await server.stop(None)


async def _run(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run_cli(argv, environ=environ, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def test_key_parts_are_read_from_the_environment(gateway: tuple[_Gateway, dict[str, str]]) -> None:
    servicer, environ = gateway
    environ = {**environ, "KLING_AK": "ak-1", "KLING_SK": "sk-1"}
    argv = ["providers", "add", "kling", "--preset", "kling"]
    argv += ["--api-key-part", "access_key=env:KLING_AK", "--api-key-part", "secret_key=env:KLING_SK"]
    code, _, err = await _run(argv, environ)
    assert code == EXIT_OK, err
    assert dict(servicer.created[0].api_key_parts) == {"access_key": "ak-1", "secret_key": "sk-1"}
    assert servicer.created[0].api_key == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--api-key-part", "access_key=ak-in-the-clear"], "expected NAME=env:VAR"),
        (["--api-key-part", "access_key=env:UNSET_VAR"], "UNSET_VAR is not set"),
        (["--api-key-part", "access_key=env:KLING_AK", "--api-key-env", "KLING_AK"], "not both"),
    ],
)
async def test_bad_key_parts_are_usage_errors(
    gateway: tuple[_Gateway, dict[str, str]], extra: list[str], message: str
) -> None:
    servicer, environ = gateway
    code, _, err = await _run(
        ["providers", "add", "k", "--preset", "kling", *extra], {**environ, "KLING_AK": "a"}
    )
    assert code == EXIT_USAGE and message in err
    assert servicer.created == []


async def test_a_retired_preset_warns_on_stderr(gateway: tuple[_Gateway, dict[str, str]]) -> None:
    _, environ = gateway
    code, out, err = await _run(["providers", "add", "sora", "--preset", "openai-videos"], environ)
    assert code == EXIT_OK
    assert "retired upstream" in err and "retired" not in out
