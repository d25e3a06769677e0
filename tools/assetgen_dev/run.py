"""`make run`: the whole system on one machine, supervised the way Kubernetes would.

Starts NATS (JetStream) and SeaweedFS (S3) unless ASSETGEN_NATS_URL / ASSETGEN_S3_ENDPOINT point
elsewhere, the demo provider (the Kie.ai jobs API, producing real PNGs and MP4s), and the four
services on SQLite (unless database URLs are given); configures the `demo` provider with the models
`demo-image` and `demo-video`; prints one "ready" line; restarts any process that dies (NATS and
SeaweedFS too, on the same address over their data); and on Ctrl-C or SIGTERM stops everything,
services first, leaving nothing running. Data lives in ASSETGEN_DATA_DIR (default .assetgen).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from assetgen.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from assetgen_dev.embedded import (
    EmbeddedProcess,
    binary,
    free_port,
    start_nats,
    start_seaweedfs,
    wait_for_port,
)
from assetgen_dev.nats_users import PERMISSIONS as NATS_PERMISSIONS
from assetgen_dev.nats_users import NatsUser
from assetgen_dev.nats_users import url_for as nats_url_for

__all__ = ["main"]

logger = logging.getLogger("assetgen.run")

DEMO_PROVIDER = "demo"
DEMO_MODELS = {
    "demo-image": (
        common_pb2.MODEL_TYPE_IMAGE,
        {"model": "demo/image", "input": {"prompt": "{{prompt}}", "aspect_ratio": "{{aspect_ratio?}}"}},
    ),
    "demo-video": (
        common_pb2.MODEL_TYPE_VIDEO,
        {
            "model": "demo/video",
            "input": {
                "prompt": "{{prompt}}",
                "image_urls": "{{image_urls?}}",
                "duration": "{{duration?}}",
                "resolution": "{{resolution?}}",
            },
        },
    ),
}


@dataclass
class Child:
    """A supervised process: how to start it, and the running one."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    log_file: BinaryIO | None = field(default=None, repr=False)

    def start(self) -> None:
        """Starts (or restarts) the process, appending to its log file."""
        if self.log_file is not None:
            self.log_file.close()  # the previous run's handle, on a restart
        # Stays open for the child's life: the child writes to it directly.
        handle = open(self.log_path, "ab")
        self.log_file = handle
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started_at = time.monotonic()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL if it lingers."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


class Supervisor:
    """Owns every process of the local system."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.infra: list[EmbeddedProcess] = []
        self.children: list[Child] = []
        self.stopping = False

    def shutdown(self) -> None:
        """Stops services (reverse start order), then the infrastructure."""
        self.stopping = True
        for child in reversed(self.children):
            child.stop()
        for process in reversed(self.infra):
            process.stop()

    def watch(self) -> None:
        """Restarts any process that exits, with a growing pause if it keeps dying."""
        while not self.stopping:
            self.restart_exited()
            time.sleep(0.5)

    def restart_exited(self) -> None:
        """One round of supervision: NATS and the S3 server first (the services need them), then the
        services and the demo provider. Infrastructure comes back on its own address over its data, so
        the services' clients reconnect and nothing in flight is lost.
        """
        for server in self.infra:
            if server.process.poll() is not None and not self.stopping:
                logger.warning(
                    "%s exited with %s; restarting it on %s (see %s)",
                    server.name,
                    server.process.returncode,
                    server.url,
                    server.log_path,
                )
                try:
                    server.restart()
                except (RuntimeError, TimeoutError) as exc:
                    logger.error("%s did not come back (%s); trying again", server.name, exc)
        for child in self.children:
            if child.process is not None and child.process.poll() is not None and not self.stopping:
                code = child.process.returncode
                logger.warning("%s exited with %s; restarting (see %s)", child.name, code, child.log_path)
                if time.monotonic() - child.started_at < 10:
                    child.restarts += 1
                else:
                    child.restarts = 0
                time.sleep(min(2**child.restarts, 30) * 0.25)
                child.start()


def _secret_file(path: Path, make: str) -> str:
    if path.exists():
        return path.read_text().strip()
    path.write_text(make + "\n")
    path.chmod(0o600)
    return make


def _wait_serving(address: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    raise TimeoutError(f"{address} did not become SERVING within {timeout}s")


def _configure_demo(grpc_address: str, token: str, demo_url: str, demo_key: str) -> None:
    """Creates the demo provider and models through the public API, unless they exist."""
    metadata = [("authorization", f"Bearer {token}")]
    with grpc.insecure_channel(grpc_address) as channel:
        api = gateway_pb2_grpc.GatewayServiceStub(channel)
        try:
            api.GetProvider(gateway_pb2.GetProviderRequest(id=DEMO_PROVIDER), metadata=metadata, timeout=10)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                raise
            api.CreateProvider(
                gateway_pb2.CreateProviderRequest(
                    name=DEMO_PROVIDER, preset="kie-ai", base_url=demo_url, api_key=demo_key
                ),
                metadata=metadata,
                timeout=10,
            )
        for name, (model_type, schema) in DEMO_MODELS.items():
            try:
                api.GetModel(gateway_pb2.GetModelRequest(id=name), metadata=metadata, timeout=10)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                    raise
                api.CreateModel(
                    gateway_pb2.CreateModelRequest(
                        provider=DEMO_PROVIDER,
                        name=name,
                        model_type=model_type,
                        request_schema_json=json.dumps(schema),
                    ),
                    metadata=metadata,
                    timeout=10,
                )


def _start(supervisor: Supervisor, environ: dict[str, str]) -> tuple[str, int, str]:
    data_dir = supervisor.data_dir
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    token = environ.get("ASSETGEN_API_TOKENS", "").split(",")[0].strip() or _secret_file(
        data_dir / "api-token", secrets.token_urlsafe(24)
    )
    env = {**environ, "ASSETGEN_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    env.setdefault("ASSETGEN_API_TOKENS", token)
    if "ASSETGEN_WATCH_TOKEN_SECRET" not in environ:
        # Kept across restarts, so a browser's watch token outlives a restart of the gateway.
        env["ASSETGEN_WATCH_TOKEN_SECRET"] = _secret_file(
            data_dir / "watch-token-secret", secrets.token_urlsafe(32)
        )
    if "ASSETGEN_SERVICE_TOKEN" not in environ:
        # The credential internal services require of each other; kept across restarts of a child.
        env["ASSETGEN_SERVICE_TOKEN"] = _secret_file(data_dir / "service-token", secrets.token_urlsafe(32))
    if "ASSETGEN_CALLBACK_SECRET" not in environ:
        # Signs callback URLs: kept across restarts, so a provider's callback for a task submitted
        # before the orchestrator restarted still finds its asset (a new key would answer 404).
        callback_secret = _secret_file(data_dir / "callback-secret", secrets.token_urlsafe(32))
        env["ASSETGEN_CALLBACK_SECRET"] = callback_secret
    env.setdefault("ASSETGEN_ALLOWED_FETCH_NETWORKS", "127.0.0.0/8")

    nats_urls: dict[str, str] = {}  # each NATS client's own URL, its user's credentials in it
    if "ASSETGEN_NATS_URL" not in environ:
        users = [
            NatsUser(name, _secret_file(data_dir / f"nats-{name}-password", secrets.token_urlsafe(24)))
            for name in NATS_PERMISSIONS
        ]
        nats = start_nats(data_dir / "nats", users=users)
        supervisor.infra.append(nats)
        nats_urls = {user.name: nats_url_for(nats.url, user) for user in users}
    if "ASSETGEN_S3_ENDPOINT" not in environ:
        credentials_path = data_dir / "s3" / "credentials.json"
        credentials_path.parent.mkdir(parents=True, exist_ok=True)
        if not credentials_path.exists():
            credentials_path.write_text(
                json.dumps({"access_key": "assetgen", "secret_key": secrets.token_urlsafe(24)})
            )
            credentials_path.chmod(0o600)
        credentials = json.loads(credentials_path.read_text())
        s3 = start_seaweedfs(
            data_dir / "s3", access_key=credentials["access_key"], secret_key=credentials["secret_key"]
        )
        supervisor.infra.append(s3)
        env.update(
            ASSETGEN_S3_ENDPOINT=s3.url,
            ASSETGEN_S3_ACCESS_KEY=credentials["access_key"],
            ASSETGEN_S3_SECRET_KEY=credentials["secret_key"],
        )

    # The web console may show pictures and videos from where storage's file URLs point, and no other origin.
    file_origin = _origin(
        env.get("ASSETGEN_S3_PUBLIC_BASE_URL")
        or env.get("ASSETGEN_S3_PUBLIC_ENDPOINT")
        or env.get("ASSETGEN_S3_ENDPOINT", "")
    )
    if file_origin:
        env.setdefault("ASSETGEN_CONSOLE_MEDIA_ORIGINS", file_origin)

    demo_port = int(environ.get("ASSETGEN_DEMO_PROVIDER_PORT", "0")) or free_port()
    demo_key = _secret_file(data_dir / "demo-provider-key", secrets.token_urlsafe(16))
    demo_url = f"http://127.0.0.1:{demo_port}"
    delay = environ.get("ASSETGEN_DEMO_DELAY_SECONDS", "3")
    python = sys.executable
    ports = {
        "storage": int(environ.get("ASSETGEN_STORAGE_PORT", "50054")),
        "provider-adapter": int(environ.get("ASSETGEN_PROVIDER_ADAPTER_PORT", "50053")),
        "orchestrator": int(environ.get("ASSETGEN_ORCHESTRATOR_PORT", "50052")),
        "gateway": int(environ.get("ASSETGEN_GRPC_PORT", "50051")),
    }
    metrics_base = int(environ.get("ASSETGEN_METRICS_PORT_BASE", "9464"))
    metrics_ports = {
        name: metrics_base + index
        for index, name in enumerate(("gateway", "orchestrator", "provider-adapter", "storage"))
    }
    env.setdefault("ASSETGEN_STORAGE_ADDR", f"127.0.0.1:{ports['storage']}")
    env.setdefault("ASSETGEN_PROVIDER_ADAPTER_ADDR", f"127.0.0.1:{ports['provider-adapter']}")
    env.setdefault("ASSETGEN_ORCHESTRATOR_ADDR", f"127.0.0.1:{ports['orchestrator']}")

    internal = {"ASSETGEN_GRPC_HOST": "127.0.0.1"}
    specs: list[tuple[str, list[str], int, dict[str, str]]] = [
        (
            "demo-provider",
            [
                python,
                "-m",
                "assetgen_dev.demo_provider",
                "--host",
                "127.0.0.1",
                "--port",
                str(demo_port),
                "--api-key",
                demo_key,
                "--delay",
                delay,
            ],
            demo_port,
            {},
        ),
        # Internal services answer this machine only; the gateway is the way in.
        ("storage", [binary("assetgen-storage")], ports["storage"], internal),
        ("provider-adapter", [binary("assetgen-provider-adapter")], ports["provider-adapter"], internal),
        ("orchestrator", [binary("assetgen-orchestrator")], ports["orchestrator"], internal),
        ("gateway", [binary("assetgen-gateway")], ports["gateway"], {}),
    ]
    for name, argv, port, extra in specs:
        child_env = {**env, **extra}
        if name in nats_urls:
            child_env["ASSETGEN_NATS_URL"] = nats_urls[name]
        if name != "demo-provider":
            child_env["ASSETGEN_GRPC_PORT"] = str(port)
            child_env["ASSETGEN_METRICS_PORT"] = str(metrics_ports[name])
        child = Child(name=name, argv=argv, env=child_env, log_path=logs / f"{name}.log", port=port)
        child.start()
        supervisor.children.append(child)
        if name == "demo-provider":
            wait_for_port(port, process=child.process)
        else:
            _wait_serving(f"127.0.0.1:{port}")
        if name in metrics_ports:
            logger.info("%s is up on port %d (metrics on %d)", name, port, metrics_ports[name])
        else:
            logger.info("%s is up on port %d", name, port)

    _configure_demo(f"127.0.0.1:{ports['gateway']}", token, demo_url, demo_key)
    http_port = int(env.get("ASSETGEN_HTTP_PORT", "8080"))
    return f"http://127.0.0.1:{http_port}", ports["gateway"], token


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, or "" when it has none."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def main() -> None:
    """Runs the whole system until Ctrl-C / SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s run: %(message)s", datefmt="%H:%M:%S")
    data_dir = Path(os.environ.get("ASSETGEN_DATA_DIR", ".assetgen")).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(data_dir)

    def on_signal(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl-C must stop everything even if this process was started with SIGINT ignored (a
    # background job of a non-interactive shell is), in which case Python installs no handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        http_url, grpc_port, token = _start(supervisor, dict(os.environ))
        print(
            f"AssetGen ready: HTTP {http_url}  console {http_url}/  gRPC 127.0.0.1:{grpc_port}  "
            f"token {token}  (logs in {data_dir / 'logs'}; Ctrl-C stops everything)",
            flush=True,
        )
        supervisor.watch()
    except KeyboardInterrupt:
        logger.info("stopping")
    finally:
        supervisor.shutdown()
        logger.info("stopped")


if __name__ == "__main__":
    main()
