"""open_channel across a peer killed and restarted: the first call after it serves again succeeds."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from assetgen_runtime.channels import open_channel

_PEER = """
import asyncio, sys
from assetgen_runtime.server import build_grpc_server

async def main() -> None:
    server = await build_grpc_server([], host="127.0.0.1", port=int(sys.argv[1]))
    await server.set_serving()
    print(server.port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class _Peer:
    """A gRPC server in its own process, so it can die as a crashed service does (SIGKILL)."""

    def __init__(self) -> None:
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Starts the peer on its port (a free one the first time) and returns once it serves."""
        self._process = subprocess.Popen(
            [sys.executable, "-c", _PEER, str(self.port)], stdout=subprocess.PIPE, text=True
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())

    def kill(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)
            if self._process.stdout is not None:
                self._process.stdout.close()
            self._process = None


@pytest.fixture
def peer() -> Iterator[_Peer]:
    peer = _Peer()
    peer.start()
    yield peer
    peer.kill()


async def test_a_call_right_after_a_killed_peer_serves_again_succeeds(peer: _Peer) -> None:
    channel = open_channel(f"127.0.0.1:{peer.port}")
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        first = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        # Each round keeps the peer down long enough for the channel's reconnect backoff to reach
        # its cap; with a one-second cap one round in five failed, so three rounds catch it often.
        for _ in range(3):
            peer.kill()
            await asyncio.sleep(1.5)  # the outage itself, not a wait for state
            await asyncio.to_thread(peer.start)
            response = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await channel.close()
