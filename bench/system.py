"""The system under test, started for one benchmark: every piece a process of its own, on loopback.

nats-server and SeaweedFS (the same way `make run` and the tests start them), two fresh PostgreSQL
databases (or SQLite files), the fake provider, and the four services through their console scripts,
so CPU and memory can be read per process from /proc. ``System.events`` follows every asset event on
NATS, which is how benchmarks learn when an asset COMPLETED (the event's own timestamp is used).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import grpc
import httpx
import nats
from grpc_health.v1 import health_pb2, health_pb2_grpc

from assetgen_dev.embedded import (
    EmbeddedProcess,
    S3Server,
    binary,
    free_port,
    start_nats,
    start_seaweedfs,
    wait_for_port,
)
from assetgen_dev.testing import eventually
from assetgen_runtime.http import ShardedTransport
from bench.events import EventLog
from bench.options import Options
from bench.procstat import Sampler

__all__ = ["SERVICES", "EventLog", "System", "postgres_available", "postgres_version", "start_system"]

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("gateway", "orchestrator", "provider-adapter", "storage")
POSTGRES_ADMIN_URL = os.environ.get(
    "ASSETGEN_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PROVIDER_KEY = "bench-provider-key"


@dataclass
class System:
    """A running AssetGen plus infrastructure; ``stop()`` tears every piece down."""

    root: Path
    nats: EmbeddedProcess
    s3: S3Server
    database: str
    database_names: list[str]
    provider_url: str
    http_url: str
    grpc_address: str
    token: str
    # The provider's webhook HMAC key when it calls back (the callbacks benchmark); '' : it does not.
    callback_secret: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Further replicas of a service beyond the one in ``processes`` (measured with it, as one group).
    replicas: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    events: EventLog = field(default_factory=EventLog)
    http: httpx.AsyncClient | None = None
    _nc: Any = None

    @property
    def pids(self) -> dict[str, int]:
        """Process id of each service and of the fake provider."""
        return {name: process.pid for name, process in self.processes.items()}

    def sampler(self, interval: float = 1.0) -> Sampler:
        """A sampler over the four services, NATS, S3, the database, the fake provider and this process."""
        fixed = {
            name: [self.processes[name].pid, *(replica.pid for replica in self.replicas.get(name, ()))]
            for name in (*SERVICES, "provider")
        }
        fixed.update(nats=[self.nats.process.pid], s3=[self.s3.process.pid], driver=[os.getpid()])
        groups: dict[str, Callable[[], list[int]]] = {
            name: functools.partial(list, pids) for name, pids in fixed.items()
        }
        groups["database"] = self._database_pids
        return Sampler(groups, interval)

    def _database_pids(self) -> list[int]:
        if self.database != "postgresql":
            return []
        # A PostgreSQL backend's title names its database: "postgres: 15/main: postgres <db> 127.0.0.1(…)".
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("postgres:") and any(f" {name} " in title for name in self.database_names):
                found.append(int(entry.name))
        return found

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.root / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def configure(self, *, interval: float, name: str = "bench") -> str:
        """Adds a Kie-shaped provider polled every ``interval`` seconds and its image model (returned).

        The kie-ai preset's webhook section stays: it matters only when the orchestrator has a public
        URL (the callbacks benchmark), and then the provider's webhook secret is the fake's key.
        """
        assert self.http is not None
        profile = json.loads(
            resources.files("assetgen_provider_adapter").joinpath("presets/kie-ai.json").read_text()
        )
        profile["name"] = name
        profile["poll"]["interval"] = {
            "initial": f"{interval:g}s",
            "backoff": 1.0,
            "max": f"{interval:g}s",
            "min": f"{min(interval, 1.0):g}s",
        }
        profile["poll"]["deadline"] = "6h"
        # The preset's 20 submissions per 10 s is Kie's account limit, not what a benchmark measures.
        profile.pop("limits", None)
        provider = {"name": name, "profile": profile, "base_url": self.provider_url, "api_key": PROVIDER_KEY}
        if self.callback_secret:
            provider["webhook_secret"] = self.callback_secret
        response = await self.http.post("/api/providers/", json=provider)
        response.raise_for_status()
        return await self.add_model(f"{name}-image", provider=name)

    async def add_model(self, model: str, model_type: str = "IMAGE", *, provider: str = "bench") -> str:
        """Adds a model of the bench provider whose task input carries the bench's timing and result
        variables (``finish_after``, ``hold``, ``size``, ``media``, ``seed``); returns its name."""
        assert self.http is not None
        response = await self.http.post(
            "/api/models/",
            json={
                "provider": provider,
                "name": model,
                "model_type": model_type,
                "request_schema": {
                    "model": f"bench/{model}",
                    "input": {
                        "prompt": "{{prompt}}",
                        "finish_after": "{{finish_after?}}",
                        "hold": "{{hold?}}",
                        "size": "{{size?}}",
                        "media": "{{media?}}",
                        "seed": "{{seed?}}",
                    },
                },
            },
        )
        response.raise_for_status()
        return model

    async def create_box(self, name: str) -> str:
        assert self.http is not None
        response = await self.http.post("/api/boxes/", json={"name": name})
        response.raise_for_status()
        return str(response.json()["id"])

    async def generate(self, box: str, model: str, prompt: str, config: dict[str, Any] | None = None) -> str:
        """Starts one generation through the public HTTP API; returns the asset id."""
        assert self.http is not None
        body: dict[str, Any] = {"model": model, "prompt": prompt}
        if config:
            body["config"] = config
        response = await self.http.post(f"/api/boxes/{box}/generate/", json=body)
        if response.status_code != 202:
            raise RuntimeError(f"generate answered {response.status_code}: {response.text[:300]}")
        return str(response.json()["id"])

    async def provider_get(self, path: str) -> Any:
        async with httpx.AsyncClient(timeout=120) as client:
            response = await client.get(f"{self.provider_url}{path}")
            response.raise_for_status()
            return response.json()

    async def provider_post(self, path: str, body: dict[str, Any]) -> Any:
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.post(f"{self.provider_url}{path}", json=body)
            response.raise_for_status()
            return response.json()

    async def stop(self) -> None:
        """Stops services (gateway first), the provider, NATS, S3; drops the databases; removes files."""
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.close(), 10)
        if self.http is not None:
            await self.http.aclose()
        for name in ("gateway", "orchestrator", "provider-adapter", "storage", "provider"):
            for process in [self.processes.get(name), *self.replicas.get(name, ())]:
                if process is None or process.poll() is not None:
                    continue
                process.terminate()
                try:
                    await asyncio.to_thread(process.wait, 30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    await asyncio.to_thread(process.wait)
        self.nats.stop()
        self.s3.stop()
        if self.database == "postgresql":
            for name in self.database_names:
                await _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if os.environ.get("ASSETGEN_BENCH_KEEP") != "1":
            shutil.rmtree(self.root, ignore_errors=True)


async def _pg_execute(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def postgres_version() -> str:
    """The local PostgreSQL's ``server_version`` ('' when it does not answer)."""
    import asyncpg

    try:
        connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    except Exception:
        return ""
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


async def postgres_available() -> bool:
    """True if the local PostgreSQL answers."""
    try:
        await _pg_execute("SELECT 1")
    except Exception:
        return False
    return True


async def _serving(address: str, process: subprocess.Popen[bytes], name: str, root: Path) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)

        async def status() -> int:
            if process.poll() is not None:
                log = (root / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")
            try:
                return int((await health.Check(health_pb2.HealthCheckRequest(), timeout=2)).status)
            except grpc.aio.AioRpcError:
                return -1

        await eventually(
            status,
            lambda s: s == health_pb2.HealthCheckResponse.SERVING,
            timeout=120,
            interval=0.2,
            what=f"{name} SERVING",
        )


async def start_system(
    options: Options,
    *,
    result_bytes: int = 100 * 1024,
    callbacks: bool = False,
    extra_keys: tuple[str, ...] = (),
    per_key_limit: int = 0,
    digest_downloads: bool = False,
) -> System:
    """Starts everything and returns once the gateway serves and events are followed.

    The database, log level and adapter replicas come from ``options``. With more than one adapter
    replica, the provider-adapter runs as that many processes and its callers spread their calls
    over all of them, as they do over a headless Service's pods. With ``callbacks`` the orchestrator
    has a public URL (the gateway's), so submits carry a callback URL, and the fake provider calls
    finished tasks back there. ``extra_keys`` and ``per_key_limit`` go to the fake provider: the
    other accounts' keys it accepts, and the most tasks one key may run there. With
    ``digest_downloads`` it records the SHA-256 of every result it sends (the realistic work's check).
    """
    database, log_level, adapter_replicas = options.database, options.log_level, options.adapter_replicas
    root = Path(tempfile.mkdtemp(prefix="assetgen-bench-"))
    logs = root / "logs"
    logs.mkdir()
    nats_server = start_nats(root / "nats")
    s3 = start_seaweedfs(root / "s3", access_key="bench", secret_key=secrets.token_urlsafe(18))
    names: list[str] = []
    env = {
        **os.environ,
        "ASSETGEN_DATA_DIR": str(root),
        "ASSETGEN_NATS_URL": nats_server.url,
        "ASSETGEN_S3_ENDPOINT": s3.url,
        "ASSETGEN_S3_ACCESS_KEY": s3.access_key,
        "ASSETGEN_S3_SECRET_KEY": s3.secret_key,
        "ASSETGEN_ALLOWED_FETCH_NETWORKS": "127.0.0.0/8",
        "ASSETGEN_SECRET_KEY": "bench-secret",
        "ASSETGEN_LOG_LEVEL": log_level,
        "ASSETGEN_SHUTDOWN_GRACE_SECONDS": "5",
        "PYTHONUNBUFFERED": "1",
    }
    if database == "postgresql":
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        stem = f"bench_{uuid.uuid4().hex[:10]}"
        names = [f"{stem}_assets", f"{stem}_catalog"]
        for name in names:
            await _pg_execute(f'CREATE DATABASE "{name}"')
        env["ASSETGEN_DATABASE_URL"] = f"{base}/{names[0]}"
        env["ASSETGEN_CATALOG_DATABASE_URL"] = f"{base}/{names[1]}"
    token = secrets.token_urlsafe(18)
    ports = {name: free_port() for name in (*SERVICES, "provider", "http")}
    adapter_ports = [ports["provider-adapter"], *(free_port() for _ in range(adapter_replicas - 1))]
    env.update(
        ASSETGEN_API_TOKENS=token,
        ASSETGEN_HTTP_PORT=str(ports["http"]),
        ASSETGEN_STORAGE_ADDR=f"127.0.0.1:{ports['storage']}",
        ASSETGEN_PROVIDER_ADAPTER_ADDR="ipv4:" + ",".join(f"127.0.0.1:{port}" for port in adapter_ports),
        ASSETGEN_ORCHESTRATOR_ADDR=f"127.0.0.1:{ports['orchestrator']}",
    )
    callback_secret = secrets.token_urlsafe(18) if callbacks else ""
    if callbacks:
        env.update(
            ASSETGEN_PUBLIC_URL=f"http://127.0.0.1:{ports['http']}",
            ASSETGEN_CALLBACK_SECRET=secrets.token_urlsafe(32),
        )
    system = System(
        root=root,
        nats=nats_server,
        s3=s3,
        database=database,
        database_names=names,
        provider_url=f"http://127.0.0.1:{ports['provider']}",
        http_url=f"http://127.0.0.1:{ports['http']}",
        grpc_address=f"127.0.0.1:{ports['gateway']}",
        token=token,
        callback_secret=callback_secret,
    )
    try:
        provider_argv = [
            sys.executable,
            "-m",
            "bench.provider",
            "--port",
            str(ports["provider"]),
            "--api-key",
            PROVIDER_KEY,
            "--result-bytes",
            str(result_bytes),
            *(["--callback-secret", callback_secret] if callback_secret else []),
            *(part for key in extra_keys for part in ("--extra-key", key)),
            *(["--per-key-limit", str(per_key_limit)] if per_key_limit else []),
            *(["--digest-downloads"] if digest_downloads else []),
        ]
        system.processes["provider"] = _spawn(
            provider_argv, {**env, "PYTHONPATH": str(REPO)}, logs / "provider.log"
        )
        await asyncio.to_thread(wait_for_port, ports["provider"], process=system.processes["provider"])
        for name in ("storage", "provider-adapter", "orchestrator", "gateway"):
            process = _spawn(
                [binary(f"assetgen-{name}")],
                {**env, "ASSETGEN_GRPC_PORT": str(ports[name])},
                logs / f"{name}.log",
            )
            system.processes[name] = process
            await _serving(f"127.0.0.1:{ports[name]}", process, name, root)
            if name == "provider-adapter":
                for number, port in enumerate(adapter_ports[1:], start=2):
                    replica = _spawn(
                        [binary(f"assetgen-{name}")],
                        {**env, "ASSETGEN_GRPC_PORT": str(port)},
                        logs / f"{name}-{number}.log",
                    )
                    system.replicas.setdefault(name, []).append(replica)
                    await _serving(f"127.0.0.1:{port}", replica, f"{name}-{number}", root)
        await asyncio.to_thread(wait_for_port, ports["http"], process=system.processes["gateway"])
        # The driver shares the cores with the system it measures, and one httpx pool of 32+ busy
        # connections examines every one of them on each request (encode/httpcore#1035), so it
        # uses the services' own client transport — eight small pools over asyncio's streams
        # (what that saved: bench/README.md).
        system.http = httpx.AsyncClient(
            base_url=system.http_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
            transport=ShardedTransport(8, httpx.Limits(max_connections=8, max_keepalive_connections=8)),
        )
        system._nc = await nats.connect(nats_server.url, name="assetgen-bench")
        await system._nc.subscribe(
            "assetgen.events.>",
            cb=system.events.on_message,
            pending_msgs_limit=1_000_000,
            pending_bytes_limit=1024**3,
        )
    except BaseException:
        await system.stop()
        raise
    return system


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
