"""Starting an embedded server survives a process that dies before it listens, and says why it died."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from assetgen_dev.embedded import ServerExited, _start_listening, free_port

# A stand-in server: listens on the port it is given until killed.
_LISTEN = (
    "import socket, sys, time; s = socket.socket(); "
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(60)"
)
_DIE = "import sys; print('bind: address already in use', flush=True); sys.exit(255)"


def _spawner(
    scripts: list[str], log_path: Path, ports: list[int]
) -> Callable[[], tuple[subprocess.Popen[bytes], int]]:
    def spawn() -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        ports.append(port)
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", scripts.pop(0), str(port)], stdout=log, stderr=subprocess.STDOUT
            )
        return process, port

    return spawn


def test_a_server_that_exits_before_listening_is_started_again_on_fresh_ports(tmp_path: Path) -> None:
    log_path, ports = tmp_path / "server.log", []
    process, port = _start_listening(_spawner([_DIE, _LISTEN], log_path, ports), log_path, timeout=30)
    try:
        assert process.poll() is None
        assert port == ports[1] and len(ports) == 2
    finally:
        process.kill()
        process.wait()


def test_the_last_failure_reports_the_exit_code_and_the_log(tmp_path: Path) -> None:
    log_path, ports = tmp_path / "server.log", []
    with pytest.raises(ServerExited) as caught:
        _start_listening(_spawner([_DIE, _DIE], log_path, ports), log_path, timeout=30, attempts=2)
    message = str(caught.value)
    assert "exited with 255" in message and "attempt 2 of 2" in message
    assert "bind: address already in use" in message
    assert len(ports) == 2


def test_a_server_alive_but_silent_is_killed_at_the_timeout(tmp_path: Path) -> None:
    log_path, ports = tmp_path / "server.log", []
    silent = "import time; time.sleep(60)"
    spawned: list[subprocess.Popen[bytes]] = []

    def spawn() -> tuple[subprocess.Popen[bytes], int]:
        process, port = _spawner([silent], log_path, ports)()
        spawned.append(process)
        return process, port

    with pytest.raises(TimeoutError):
        _start_listening(spawn, log_path, timeout=0.5)
    assert spawned[0].poll() is not None  # killed, not left running
