"""A start-up step that fails closes what the earlier steps opened: connections, channels, ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from nats.aio.client import Client

from assetgen_dev.embedded import EmbeddedProcess, free_port
from assetgen_gateway import main as gateway_main
from assetgen_gateway.settings import GatewaySettings
from assetgen_orchestrator import main as orchestrator_main
from assetgen_orchestrator.settings import OrchestratorSettings
from assetgen_runtime.channels import open_channel
from assetgen_runtime.jetstream import connect


class _Opened:
    """Spies on what a service's ``run_server`` opens: its NATS connections and gRPC channels."""

    def __init__(self) -> None:
        self.nats: list[Client] = []
        self.channels: list[grpc.aio.Channel] = []

    async def connect(self, *args: Any, **kwargs: Any) -> Client:
        nc = await connect(*args, **kwargs)
        self.nats.append(nc)
        return nc

    def open_channel(self, address: str, **options: Any) -> grpc.aio.Channel:
        channel = open_channel(address, **options)
        self.channels.append(channel)
        return channel


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else already listens on."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


async def test_gateway_whose_http_port_is_taken_closes_nats_channels_and_its_other_ports(
    nats_server: EmbeddedProcess, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = _Opened()
    monkeypatch.setattr(gateway_main, "connect", opened.connect)
    monkeypatch.setattr(gateway_main, "open_channel", opened.open_channel)
    grpc_port, metrics_port = free_port(), free_port()
    settings = GatewaySettings(
        nats_url=nats_server.url,
        api_tokens=("t",),
        grpc_port=grpc_port,
        http_port=taken_port,
        metrics_port=metrics_port,
    )

    with pytest.raises(OSError):
        await gateway_main.run_server(settings)

    assert [nc.is_closed for nc in opened.nats] == [True]
    assert [channel.get_state() for channel in opened.channels] == [grpc.ChannelConnectivity.SHUTDOWN] * 3
    assert _is_free(grpc_port), "the gRPC server still holds its port"
    assert _is_free(metrics_port), "/metrics is still served"


async def test_orchestrator_whose_job_runner_fails_to_start_closes_what_it_opened(
    nats_server: EmbeddedProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = _Opened()
    monkeypatch.setattr(orchestrator_main.jetstream, "connect", opened.connect)
    monkeypatch.setattr(orchestrator_main, "open_channel", opened.open_channel)

    async def refuse_to_start(self: object) -> None:
        raise RuntimeError("the job runner cannot start")

    monkeypatch.setattr(orchestrator_main.JobRunner, "start", refuse_to_start)
    grpc_port, metrics_port = free_port(), free_port()
    settings = OrchestratorSettings(
        nats_url=nats_server.url,
        data_dir=str(tmp_path),
        grpc_port=grpc_port,
        metrics_port=metrics_port,
    )

    with pytest.raises(RuntimeError, match="cannot start"):
        await orchestrator_main.run_server(settings)

    assert [nc.is_closed for nc in opened.nats] == [True]
    assert [channel.get_state() for channel in opened.channels] == [grpc.ChannelConnectivity.SHUTDOWN] * 2
    assert _is_free(grpc_port), "the gRPC server still holds its port"
    assert _is_free(metrics_port), "/metrics is still served"
