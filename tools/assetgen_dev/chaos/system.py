"""The system under chaos: every piece its own process on loopback, supervised as `make run` does.

NATS (with a user per service) and SeaweedFS from `embedded`, two fresh PostgreSQL databases
(``chaos_<pid>_<random>_assets`` and ``_catalog``, dropped at the end), the chaos providers' process
(not supervised: its memory is the record), and the four services as console scripts under
``run.Supervisor``, which brings back any of them, NATS or S3 that dies. Disruptions and supervision
take ``lock`` in turn, so an S3 server held down on purpose is not brought back early.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc
from minio import Minio

from assetgen_dev.chaos.faults import FaultPlan
from assetgen_dev.chaos.providers import FAMILIES
from assetgen_dev.chaos.snapshot import Code
from assetgen_dev.embedded import (
    EmbeddedProcess,
    S3Server,
    binary,
    free_port,
    start_nats,
    start_seaweedfs,
    wait_for_port,
)
from assetgen_dev.nats_users import PERMISSIONS as NATS_PERMISSIONS
from assetgen_dev.nats_users import NatsUser
from assetgen_dev.nats_users import url_for as nats_url_for
from assetgen_dev.run import Child, Supervisor

__all__ = ["MODELS", "SERVICES", "ChaosSystem", "start_system"]

logger = logging.getLogger(__name__)

SERVICES = ("storage", "provider-adapter", "orchestrator", "gateway")  # start order
POSTGRES_ADMIN_URL = os.environ.get(
    "ASSETGEN_CHAOS_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PROVIDER_KEY = "chaos-provider-key-0123456789"
BUCKET = "assetgen-chaos"

# family → (preset, base path after the fake's root, model type, request schema)
MODELS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "kie": ("kie-ai", "", "IMAGE", {"model": "chaos/image", "input": {"prompt": "{{prompt}}"}}),
    "replicate": (
        "replicate",
        "",
        "IMAGE",
        {"version": "black-forest-labs/flux-schnell", "input": {"prompt": "{{prompt}}"}},
    ),
    "luma": ("luma", "/dream-machine/v1", "VIDEO", {"prompt": "{{prompt}}", "model": "ray-2"}),
}


@dataclass
class ChaosSystem:
    """A running AssetGen under supervision, the chaos providers, and how to reach them."""

    root: Path
    supervisor: Supervisor
    nats: EmbeddedProcess
    s3: S3Server
    providers: subprocess.Popen[bytes]
    provider_urls: dict[str, str]
    http_url: str
    grpc_ports: dict[str, int]
    token: str
    database_names: list[str]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    http: httpx.AsyncClient | None = None

    def child(self, name: str) -> Child:
        """The supervised service ``name``."""
        return next(child for child in self.supervisor.children if child.name == name)

    async def supervise(self) -> None:
        """Brings back whatever died, every half second, until cancelled."""
        while True:
            async with self.lock:
                await asyncio.to_thread(self.supervisor.restart_exited)
            await asyncio.sleep(0.5)

    async def serving(self, name: str) -> bool:
        """Whether service ``name`` answers its health check with SERVING."""
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.grpc_ports[name]}") as channel:
            try:
                answer = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=2
                )
            except grpc.aio.AioRpcError:
                return False
        return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

    async def configure(self) -> dict[str, str]:
        """Registers one provider and one model per family; family → model name."""
        assert self.http is not None
        models = {}
        for family, (preset, base_path, model_type, schema) in MODELS.items():
            provider = f"chaos-{family}"
            body = {
                "name": provider,
                "preset": preset,
                "base_url": self.provider_urls[family] + base_path,
                "api_key": PROVIDER_KEY,
            }
            response = await self.http.post("/api/providers/", json=body)
            if response.status_code != 201:
                raise RuntimeError(f"creating provider {provider}: {response.status_code} {response.text}")
            model = f"{provider}-{model_type.lower()}"
            model_body = {
                "provider": provider,
                "name": model,
                "model_type": model_type,
                "request_schema": schema,
            }
            response = await self.http.post("/api/models/", json=model_body)
            if response.status_code != 201:
                raise RuntimeError(f"creating model {model}: {response.status_code} {response.text}")
            models[family] = model
        return models

    async def provider_records(self) -> list[dict[str, Any]]:
        """What each chaos provider saw (``GET /_chaos/record``)."""
        async with httpx.AsyncClient(timeout=60) as client:
            records = []
            for family in FAMILIES:
                response = await client.get(f"{self.provider_urls[family]}/_chaos/record")
                response.raise_for_status()
                records.append(response.json())
            return records

    def bucket_objects(self) -> dict[str, str]:
        """Every object in the bucket: key → SHA-256 of its bytes (blocking: run it in a thread)."""
        client = Minio(
            urlsplit(self.s3.url).netloc,
            access_key=self.s3.access_key,
            secret_key=self.s3.secret_key,
            secure=False,
        )
        objects = {}
        for item in client.list_objects(BUCKET, recursive=True):
            assert item.object_name is not None
            response = client.get_object(BUCKET, item.object_name)
            try:
                objects[item.object_name] = hashlib.sha256(response.read()).hexdigest()
            finally:
                response.close()
                response.release_conn()
        return objects

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last lines of a service's log."""
        path = self.root / "logs" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def stop(self, *, keep: bool = False) -> None:
        """Stops everything (services first), drops the databases and, unless ``keep``, the files."""
        if self.http is not None:
            await self.http.aclose()
        async with self.lock:
            await asyncio.to_thread(self.supervisor.shutdown)
        if self.providers.poll() is None:
            self.providers.terminate()
            await asyncio.to_thread(self.providers.wait)
        await _drop_databases(self.database_names)
        if not keep:
            shutil.rmtree(self.root, ignore_errors=True)


async def _pg_execute(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _drop_databases(names: list[str]) -> None:
    for name in names:
        with contextlib.suppress(Exception):
            await _pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _spawn(argv: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


async def _wait_serving(system: ChaosSystem, name: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    child = system.child(name)
    while not await system.serving(name):
        if child.process is not None and child.process.poll() is not None:
            raise RuntimeError(f"{name} exited with {child.process.returncode}:\n{system.log_tail(name)}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not SERVING within {timeout}s:\n{system.log_tail(name)}")
        await asyncio.sleep(0.2)


async def start_system(plan: FaultPlan, code: Code, *, settings: dict[str, str] | None = None) -> ChaosSystem:
    """Starts everything, the services from ``code`` with ``settings`` (environment variables) on top
    of their defaults; returns once the gateway serves HTTP. ``stop()`` undoes it all."""
    root = Path(tempfile.mkdtemp(prefix="assetgen-chaos-"))
    logs = root / "logs"
    logs.mkdir()
    supervisor = Supervisor(root)
    stem = f"chaos_{os.getpid()}_{secrets.token_hex(3)}"
    names = [f"{stem}_assets", f"{stem}_catalog"]
    for name in names:
        await _pg_execute(f'CREATE DATABASE "{name}"')
    providers: subprocess.Popen[bytes] | None = None
    try:
        users = [NatsUser(name, secrets.token_urlsafe(18)) for name in NATS_PERMISSIONS]
        nats = start_nats(root / "nats", users=users)
        supervisor.infra.append(nats)
        s3 = start_seaweedfs(root / "s3", access_key="chaos", secret_key=secrets.token_urlsafe(18))
        supervisor.infra.append(s3)

        provider_ports = {family: free_port() for family in FAMILIES}
        argv = [sys.executable, "-m", "assetgen_dev.chaos.providers", "--api-key", PROVIDER_KEY]
        argv += ["--plan", plan.to_json()]
        for family, port in provider_ports.items():
            argv += [f"--{family}-port", str(port)]
        providers = _spawn(argv, logs / "providers.log")
        for port in provider_ports.values():
            await asyncio.to_thread(wait_for_port, port, process=providers)

        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        token = secrets.token_urlsafe(18)
        ports = {name: free_port() for name in SERVICES}
        http_port = free_port()
        env = {
            **os.environ,
            "ASSETGEN_DATA_DIR": str(root),
            "PYTHONUNBUFFERED": "1",
            "ASSETGEN_API_TOKENS": token,
            "ASSETGEN_WATCH_TOKEN_SECRET": secrets.token_urlsafe(32),
            "ASSETGEN_SERVICE_TOKEN": secrets.token_urlsafe(32),
            "ASSETGEN_SECRET_KEY": secrets.token_urlsafe(32),
            "ASSETGEN_ALLOWED_FETCH_NETWORKS": "127.0.0.0/8",
            "ASSETGEN_S3_ENDPOINT": s3.url,
            "ASSETGEN_S3_ACCESS_KEY": s3.access_key,
            "ASSETGEN_S3_SECRET_KEY": s3.secret_key,
            "ASSETGEN_S3_BUCKET": BUCKET,
            "ASSETGEN_DATABASE_URL": f"{base}/{names[0]}",
            "ASSETGEN_CATALOG_DATABASE_URL": f"{base}/{names[1]}",
            "ASSETGEN_HTTP_PORT": str(http_port),
            "ASSETGEN_STORAGE_ADDR": f"127.0.0.1:{ports['storage']}",
            "ASSETGEN_PROVIDER_ADAPTER_ADDR": f"127.0.0.1:{ports['provider-adapter']}",
            "ASSETGEN_ORCHESTRATOR_ADDR": f"127.0.0.1:{ports['orchestrator']}",
            "ASSETGEN_SHUTDOWN_GRACE_SECONDS": "5",
        }
        env.update(settings or {})
        if code.pythonpath:
            env["PYTHONPATH"] = code.pythonpath
        nats_urls = {user.name: nats_url_for(nats.url, user) for user in users}
        system = ChaosSystem(
            root=root,
            supervisor=supervisor,
            nats=nats,
            s3=s3,
            providers=providers,
            provider_urls={family: f"http://127.0.0.1:{port}" for family, port in provider_ports.items()},
            http_url=f"http://127.0.0.1:{http_port}",
            grpc_ports=ports,
            token=token,
            database_names=names,
        )
        for name in SERVICES:
            child_env = {**env, "ASSETGEN_GRPC_PORT": str(ports[name])}
            if name != "gateway":
                child_env["ASSETGEN_GRPC_HOST"] = "127.0.0.1"
            if name in nats_urls:
                child_env["ASSETGEN_NATS_URL"] = nats_urls[name]
            child = Child(
                name=name,
                argv=code.argv(name, binary(f"assetgen-{name}")),
                env=child_env,
                log_path=logs / f"{name}.log",
                port=ports[name],
            )
            child.start()
            supervisor.children.append(child)
            await _wait_serving(system, name)
        await asyncio.to_thread(wait_for_port, http_port, timeout=60)
        system.http = httpx.AsyncClient(
            base_url=system.http_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    except BaseException:
        await asyncio.to_thread(supervisor.shutdown)
        if providers is not None and providers.poll() is None:
            providers.kill()
            providers.wait()
        await _drop_databases(names)
        shutil.rmtree(root, ignore_errors=True)
        raise
    return system
