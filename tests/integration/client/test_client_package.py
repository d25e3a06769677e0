"""The typed stubs install as a small client package, built from the repo's protos."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_client_wheel_carries_typed_stubs_that_import(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT / "clients" / "python"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("assetgen_client-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in ("common", "gateway", "orchestrator", "provider_adapter", "storage"):
        assert f"assetgen/v1/{module}_pb2.py" in names
        assert f"assetgen/v1/{module}_pb2.pyi" in names
    assert "assetgen/v1/gateway_pb2_grpc.pyi" in names and "assetgen/py.typed" in names

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from assetgen.v1 import gateway_pb2, gateway_pb2_grpc; "
            "print(gateway_pb2_grpc.__file__); print(gateway_pb2.GenerateRequest(model='m').model)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"},
    )
    assert probe.returncode == 0, probe.stderr
    location, model = probe.stdout.split()
    assert location.startswith(str(unpacked))
    assert model == "m"
