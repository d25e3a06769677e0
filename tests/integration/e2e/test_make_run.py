"""`make run`'s supervisor: the whole system from one command, the README's flow, restarts, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from assetgen_dev.embedded import free_port, free_port_run
from assetgen_dev.testing import eventually

pytestmark = pytest.mark.slow


def _processes_with(marker: str) -> dict[int, str]:
    """pid → command line of every process whose environment contains ``marker``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
    return found


def _environ(pid: int) -> dict[str, str]:
    """A process's environment."""
    items = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(item.split("=", 1) for item in items if "=" in item)


def _stderr_file(data_dir: Path) -> Path:
    """Where the fixture's ``make run`` writes its log, quoted when it dies before it is ready."""
    return data_dir.parent / "make-run.stderr"


@pytest.fixture
def system(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, str], Path]]:
    data_dir = tmp_path / "data"
    ports = {
        "ASSETGEN_HTTP_PORT": str(free_port()),
        "ASSETGEN_GRPC_PORT": str(free_port()),
        "ASSETGEN_ORCHESTRATOR_PORT": str(free_port()),
        "ASSETGEN_PROVIDER_ADAPTER_PORT": str(free_port()),
        "ASSETGEN_STORAGE_PORT": str(free_port()),
    }
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("ASSETGEN_") or key.startswith("ASSETGEN_TEST")
    }
    env.update(
        ports,
        ASSETGEN_DATA_DIR=str(data_dir),
        ASSETGEN_DEMO_DELAY_SECONDS="0.5",
        ASSETGEN_METRICS_PORT_BASE=str(free_port_run(4)),
    )
    ports["ASSETGEN_METRICS_PORT_BASE"] = env["ASSETGEN_METRICS_PORT_BASE"]
    with _stderr_file(data_dir).open("w") as stderr:  # the child keeps its own copy
        process = subprocess.Popen(
            [sys.executable, "-m", "assetgen_dev.run"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    yield process, ports, data_dir
    if process.poll() is None:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
    for pid in _processes_with(str(data_dir)):
        os.kill(pid, signal.SIGKILL)


async def _serving(port: int) -> bool:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=1
            )
        except grpc.aio.AioRpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def _ready_line(process: subprocess.Popen[str], stderr: Path) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("AssetGen ready"):
            return line
    tail = stderr.read_text()[-3000:]
    raise AssertionError(f"make run exited with {process.wait()} before it was ready:\n{tail}")


async def test_make_run_serves_the_readme_flow_restarts_and_stops_cleanly(
    system: tuple[subprocess.Popen[str], dict[str, str], Path],
) -> None:
    process, ports, data_dir = system
    line = await asyncio.wait_for(
        asyncio.to_thread(_ready_line, process, _stderr_file(data_dir)), timeout=120
    )
    token = (data_dir / "api-token").read_text().strip()
    assert f"127.0.0.1:{ports['ASSETGEN_HTTP_PORT']}" in line and token in line

    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{ports['ASSETGEN_HTTP_PORT']}"
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
        box = (await http.post("/api/boxes/", json={"name": "readme"})).json()["id"]

        async def generate(body: dict[str, object]) -> dict[str, object]:
            accepted = await http.post(f"/api/boxes/{box}/generate/", json=body)
            assert accepted.status_code == 202, accepted.text
            asset_id = accepted.json()["id"]

            async def read() -> dict[str, object]:
                return dict((await http.get(f"/api/assets/{asset_id}/")).json())

            return await eventually(read, lambda a: a["status"] in ("COMPLETED", "FAILED"), timeout=90)

        image = await generate({"model": "demo-image", "prompt": "a lighthouse at dusk"})
        assert image["status"] == "COMPLETED", image
        video = await generate({"model": "demo-video", "prompt": "waves", "parent_asset": image["id"]})
        assert video["status"] == "COMPLETED" and video["source_type"] == "IMG2VID", video
        async with httpx.AsyncClient(timeout=30) as plain:
            assert (await plain.get(str(image["file_url"]))).content.startswith(b"\x89PNG")
            assert (await plain.get(str(video["file_url"]))).content[4:8] == b"ftyp"

        # Every service serves Prometheus metrics, and they count what just happened.
        base = int(ports["ASSETGEN_METRICS_PORT_BASE"])
        async with httpx.AsyncClient(timeout=10) as plain:
            scraped = [
                (await plain.get(f"http://127.0.0.1:{base + offset}/metrics")).text for offset in range(4)
            ]
        gateway, orchestrator, adapter, storage = scraped
        assert 'assetgen_http_requests_total{method="POST",route="/api/boxes/{box_id}/generate/"' in gateway
        assert (
            "assetgen_polls_total" in orchestrator
            and 'assetgen_grpc_requests_total{code="OK"' in orchestrator
        )
        assert 'method="SubmitTask",service="provider-adapter"' in adapter
        assert 'assetgen_stored_bytes_total{kind="video"}' in storage

        # A dying service is noticed and restarted, as Kubernetes would.
        orchestrators = [
            pid for pid, cmd in _processes_with(str(data_dir)).items() if "assetgen-orchestrator" in cmd
        ]
        assert len(orchestrators) == 1
        # The callback secret is kept in the data dir, so a restarted orchestrator still knows the
        # callback URLs it handed out.
        callback_secret = (data_dir / "callback-secret").read_text().strip()
        assert len(callback_secret) >= 32
        assert _environ(orchestrators[0])["ASSETGEN_CALLBACK_SECRET"] == callback_secret
        os.kill(orchestrators[0], signal.SIGKILL)

        async def new_orchestrator() -> list[int]:
            return [
                pid
                for pid, cmd in _processes_with(str(data_dir)).items()
                if "assetgen-orchestrator" in cmd and pid != orchestrators[0]
            ]

        await eventually(new_orchestrator, bool, timeout=60, what="a restarted orchestrator")
        await eventually(
            lambda: _serving(int(ports["ASSETGEN_ORCHESTRATOR_PORT"])),
            bool,
            timeout=60,
            what="orchestrator SERVING",
        )
        again = await generate({"model": "demo-image", "prompt": "after the restart"})
        assert again["status"] == "COMPLETED"
        [restarted] = await new_orchestrator()
        assert _environ(restarted)["ASSETGEN_CALLBACK_SECRET"] == callback_secret

    process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(process.wait, 60) == 0
    leftovers = _processes_with(str(data_dir))
    assert leftovers == {}, leftovers


async def test_make_run_brings_back_a_killed_nats_and_s3_and_finishes_the_work_in_flight(
    system: tuple[subprocess.Popen[str], dict[str, str], Path],
) -> None:
    process, ports, data_dir = system
    await asyncio.wait_for(asyncio.to_thread(_ready_line, process, _stderr_file(data_dir)), timeout=120)
    token = (data_dir / "api-token").read_text().strip()
    base = f"http://127.0.0.1:{ports['ASSETGEN_HTTP_PORT']}"
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        box = (await http.post("/api/boxes/", json={"name": "infra restarts"})).json()["id"]
        in_flight = []
        for n in range(5):
            accepted = await http.post(
                f"/api/boxes/{box}/generate/", json={"model": "demo-image", "prompt": f"in flight {n}"}
            )
            assert accepted.status_code == 202, accepted.text
            in_flight.append(accepted.json()["id"])

        def infrastructure() -> dict[int, str]:
            return {
                pid: cmd
                for pid, cmd in _processes_with(str(data_dir)).items()
                if "nats-server" in cmd or "weed server" in cmd
            }

        killed = infrastructure()
        assert len(killed) == 2, killed
        for pid in killed:
            os.kill(pid, signal.SIGKILL)

        async def restarted() -> dict[int, str]:
            return {pid: cmd for pid, cmd in infrastructure().items() if pid not in killed}

        await eventually(restarted, lambda found: len(found) == 2, timeout=90, what="NATS and S3 restarted")

        async def statuses() -> list[str]:
            return [
                str((await http.get(f"/api/assets/{asset}/")).json().get("status")) for asset in in_flight
            ]

        ended = await eventually(
            statuses, lambda found: all(s in ("COMPLETED", "FAILED") for s in found), timeout=180
        )
        assert ended == ["COMPLETED"] * len(in_flight)
        after = await http.post(
            f"/api/boxes/{box}/generate/", json={"model": "demo-image", "prompt": "after"}
        )
        assert after.status_code == 202, after.text

        async def read_after() -> str:
            return str((await http.get(f"/api/assets/{after.json()['id']}/")).json().get("status"))

        assert await eventually(read_after, lambda s: s in ("COMPLETED", "FAILED"), timeout=90) == "COMPLETED"
        image = (await http.get(f"/api/assets/{in_flight[0]}/")).json()
        async with httpx.AsyncClient(timeout=30) as plain:
            assert (await plain.get(str(image["file_url"]))).content.startswith(b"\x89PNG")

    process.send_signal(signal.SIGINT)
    assert await asyncio.to_thread(process.wait, 60) == 0
