"""The assetgen CLI against an in-process fake gateway: arguments, output forms and exit codes."""

from __future__ import annotations

import io
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from assetgen.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from assetgen_cli.main import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, build_parser, run_cli
from assetgen_runtime.codec import message_to_json

TOKEN = "unit-token"


class FakeGateway(gateway_pb2_grpc.GatewayServiceServicer):
    """Answers a few RPCs and records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[object] = []
        self.final_status = common_pb2.ASSET_STATUS_COMPLETED

    async def ListModels(
        self, request: gateway_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ListModelsResponse:
        if dict(context.invocation_metadata() or ()).get("authorization") != f"Bearer {TOKEN}":
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")
        self.requests.append(request)
        return gateway_pb2.ListModelsResponse(
            items=[
                common_pb2.Model(
                    name="img",
                    provider="kie",
                    model_type=common_pb2.MODEL_TYPE_IMAGE,
                    request_schema_json='{"prompt": "{{prompt}}"}',
                    variables=["prompt", "ratio"],
                    required_variables=["prompt"],
                )
            ]
        )

    async def CreateModel(
        self, request: gateway_pb2.CreateModelRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Model:
        self.requests.append(request)
        return common_pb2.Model(id="mdl_1", name=request.name, provider=request.provider)

    async def GetAsset(
        self, request: gateway_pb2.GetAssetRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Asset:
        if request.id == "ast_missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "no asset ast_missing")
        return common_pb2.Asset(
            id=request.id,
            box="box_1",
            status=self.final_status,
            file_url="http://s3/file.png" if self.final_status == common_pb2.ASSET_STATUS_COMPLETED else "",
            error_message="provider said no" if self.final_status == common_pb2.ASSET_STATUS_FAILED else "",
            size_bytes=12,
        )

    async def Generate(
        self, request: gateway_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.Asset:
        self.requests.append(request)
        return common_pb2.Asset(id="ast_1", box=request.box_id, status=common_pb2.ASSET_STATUS_PENDING)

    async def WatchAsset(
        self, request: gateway_pb2.WatchAssetRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb2.AssetEvent]:
        for sequence, status in enumerate(
            [common_pb2.ASSET_STATUS_PENDING, common_pb2.ASSET_STATUS_PROCESSING, self.final_status], 1
        ):
            yield gateway_pb2.AssetEvent(asset_id=request.asset_id, status=status, sequence=sequence)

    async def WatchBox(
        self, request: gateway_pb2.WatchBoxRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gateway_pb2.AssetEvent]:
        # First call: two events, then the gateway goes away; the next resumes after the last seen.
        self.requests.append(request)
        calls = sum(isinstance(r, gateway_pb2.WatchBoxRequest) for r in self.requests)
        if calls == 1:
            for sequence in (1, 2):
                yield gateway_pb2.AssetEvent(asset_id="ast_1", box_id=request.box_id, sequence=sequence)
            await context.abort(grpc.StatusCode.UNAVAILABLE, "gateway shutting down")
        elif calls == 2:
            yield gateway_pb2.AssetEvent(asset_id="ast_1", box_id=request.box_id, sequence=3)


@dataclass
class Fake:
    """The fake gateway's address and servicer."""

    address: str
    servicer: FakeGateway
    environ: dict[str, str] = field(default_factory=dict)


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    server = grpc.aio.server()
    servicer = FakeGateway()
    gateway_pb2_grpc.add_GatewayServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    address = f"127.0.0.1:{port}"
    try:
        yield Fake(address, servicer, {"ASSETGEN_URL": address, "ASSETGEN_TOKEN": TOKEN})
    finally:
        await server.stop(None)


async def _run(argv: list[str], environ: dict[str, str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run_cli(argv, environ=environ, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _leaf_commands() -> list[list[str]]:
    parser = build_parser()
    leaves: list[list[str]] = []

    def walk(current: object, prefix: list[str]) -> None:
        actions = getattr(current, "_subparsers", None)
        if actions is None:
            leaves.append(prefix)
            return
        for action in actions._group_actions:
            for name, sub in action.choices.items():
                walk(sub, [*prefix, name])

    walk(parser, [])
    return leaves


def test_every_command_is_there() -> None:
    assert sorted(" ".join(leaf) for leaf in _leaf_commands()) == [
        "asset cancel",
        "asset retry",
        "asset show",
        "boxes create",
        "boxes list",
        "generate",
        "keys create",
        "keys list",
        "keys revoke",
        "models add",
        "models list",
        "presets list",
        "projects budget",
        "projects create",
        "projects delete",
        "projects get",
        "projects list",
        "projects rename",
        "provider-keys add",
        "provider-keys delete",
        "provider-keys list",
        "provider-keys set",
        "providers add",
        "providers list",
        "providers set",
        "upload",
        "usage",
        "watch",
        "webhooks create",
        "webhooks delete",
        "webhooks deliveries",
        "webhooks disable",
        "webhooks enable",
        "webhooks list",
        "webhooks redeliver",
    ]


@pytest.mark.parametrize("command", _leaf_commands(), ids=" ".join)
async def test_every_command_explains_itself(command: list[str]) -> None:
    code, out, _ = await _run([*command, "--help"], {})
    assert code == EXIT_OK
    assert out.startswith(f"usage: assetgen {' '.join(command)}")
    assert "--json" in out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["boxes"],
        ["generate", "box_1", "--prompt", "x"],
        ["models", "add", "m", "--provider", "p", "--type", "AUDIO", "--schema", "{}"],
        ["watch", "box_1", "--after", "not-a-number"],
    ],
)
async def test_bad_arguments_exit_2(argv: list[str]) -> None:
    code, _, err = await _run(argv, {})
    assert code == EXIT_USAGE
    assert "usage:" in err or "error" in err


async def test_usage_errors_found_before_calling_exit_2(fake: Fake, tmp_path: Path) -> None:
    code, _, err = await _run(
        ["providers", "add", "kie", "--preset", "kie-ai", "--api-key-env", "NOT_SET_ANYWHERE"], fake.environ
    )
    assert code == EXIT_USAGE and "NOT_SET_ANYWHERE" in err
    base = ["models", "add", "m", "--provider", "p", "--type", "image"]
    assert (await _run([*base, "--schema", "{nope"], fake.environ))[0] == EXIT_USAGE
    assert (await _run([*base, "--schema", "[1]"], fake.environ))[0] == EXIT_USAGE
    assert (await _run([*base, "--schema", f"@{tmp_path}/missing.json"], fake.environ))[0] == EXIT_USAGE
    code, _, err = await _run(
        ["generate", "box_1", "--model", "m", "--prompt", "p", "--set", "x"], fake.environ
    )
    assert code == EXIT_USAGE and "key=value" in err
    assert fake.servicer.requests == []


async def test_json_output_is_the_http_apis_json(fake: Fake) -> None:
    code, out, _ = await _run(["models", "list", "--json"], fake.environ)
    assert code == EXIT_OK
    data = json.loads(out)
    assert data["items"][0]["request_schema"] == {"prompt": "{{prompt}}"}
    assert data["items"][0]["model_type"] == "IMAGE"
    code, out, _ = await _run(["models", "list"], fake.environ)
    assert code == EXIT_OK and "prompt*, ratio" in out and "IMAGE" in out


async def test_models_add_reads_the_schema_file_and_upper_cases_the_type(fake: Fake, tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"model": "x", "input": {"prompt": "{{prompt}}"}}')
    code, _, _ = await _run(
        [
            "models",
            "add",
            "m",
            "--provider",
            "kie",
            "--type",
            "video",
            "--schema",
            f"@{schema}",
            "--endpoint",
            "/x",
        ],
        fake.environ,
    )
    assert code == EXIT_OK
    request = fake.servicer.requests[-1]
    assert isinstance(request, gateway_pb2.CreateModelRequest)
    assert request.model_type == common_pb2.MODEL_TYPE_VIDEO and request.api_endpoint == "/x"
    assert json.loads(request.request_schema_json) == {"model": "x", "input": {"prompt": "{{prompt}}"}}


async def test_generate_wait_prints_progress_then_the_url(fake: Fake) -> None:
    argv = ["generate", "box_1", "--model", "img", "--prompt", "fox", "--set", "ratio=16:9", "--set", "n:=2"]
    code, out, err = await _run([*argv, "--wait"], fake.environ)
    assert code == EXIT_OK
    assert out.strip() == "http://s3/file.png"
    assert [line.split()[1] for line in err.splitlines()] == ["PENDING", "PROCESSING", "COMPLETED"]
    request = fake.servicer.requests[-1]
    assert isinstance(request, gateway_pb2.GenerateRequest)
    assert json.loads(request.config_json) == {"ratio": "16:9", "n": 2}


async def test_generate_wait_exits_1_when_the_asset_fails(fake: Fake) -> None:
    fake.servicer.final_status = common_pb2.ASSET_STATUS_FAILED
    argv = ["generate", "box_1", "--model", "img", "--prompt", "fox", "--wait", "--json"]
    code, out, _ = await _run(argv, fake.environ)
    assert code == EXIT_FAILED
    assert json.loads(out)["status"] == "FAILED"
    assert json.loads(out)["error_message"] == "provider said no"


async def test_asset_show(fake: Fake) -> None:
    code, out, _ = await _run(["asset", "show", "ast_9", "--json"], fake.environ)
    assert code == EXIT_OK
    assert json.loads(out) == message_to_json(
        common_pb2.Asset(
            id="ast_9",
            box="box_1",
            status=common_pb2.ASSET_STATUS_COMPLETED,
            file_url="http://s3/file.png",
            size_bytes=12,
        )
    )
    code, out, _ = await _run(["asset", "show", "ast_9"], fake.environ)
    assert "status:       COMPLETED" in out
    code, _, err = await _run(["asset", "show", "ast_missing"], fake.environ)
    assert code == EXIT_USAGE and "ast_missing" in err


async def test_unreachable_or_refused_exits_3(fake: Fake) -> None:
    code, _, err = await _run(["models", "list"], {**fake.environ, "ASSETGEN_TOKEN": "wrong"})
    assert code == EXIT_UNREACHABLE and "ASSETGEN_TOKEN" in err
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    code, _, err = await _run(["--url", closed, "--timeout", "5", "models", "list"], fake.environ)
    assert code == EXIT_UNREACHABLE and closed in err


async def test_watch_resumes_after_the_last_event_when_the_stream_is_lost(fake: Fake) -> None:
    code, out, err = await _run(["watch", "box_1"], fake.environ)
    assert code == EXIT_OK
    assert [int(line.split()[0]) for line in out.splitlines()] == [1, 2, 3]
    asked = [r.after_sequence for r in fake.servicer.requests if isinstance(r, gateway_pb2.WatchBoxRequest)]
    assert asked == [0, 2, 3]
    assert "resuming after event 2" in err
