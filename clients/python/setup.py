"""Builds the assetgen-client wheel: generates assetgen.v1 stubs (with .pyi types) from the repo's protos.

`pip install ./clients/python` (or a git URL with `#subdirectory=clients/python`) runs this in the
repository checkout, so the protos are read from ../../protos; nothing generated is committed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
PROTOS = HERE.parent.parent / "protos"
GENERATED = HERE / "assetgen"


def generate_stubs() -> None:
    """Writes assetgen/v1/*_pb2*.py and their .pyi next to this file, from scratch.

    Runs on every build hook (setuptools needs the package folders to exist even to list its
    requirements); generation is deterministic and takes well under a second.
    """
    import google.api
    from grpc_tools import protoc

    if not PROTOS.is_dir():
        raise SystemExit(f"protos not found at {PROTOS}: build this package from the AssetGen repository")
    shutil.rmtree(GENERATED, ignore_errors=True)
    (GENERATED / "v1").mkdir(parents=True)
    googleapis = Path(google.api.__path__[0]).parent.parent
    grpc_proto_include = Path(protoc.__file__).parent / "_proto"
    plugin = shutil.which("protoc-gen-mypy_grpc") or str(Path(sys.executable).parent / "protoc-gen-mypy_grpc")
    sources = sorted(str(path) for path in (PROTOS / "assetgen" / "v1").glob("*.proto"))
    status = protoc.main(
        [
            "protoc",
            f"-I{PROTOS}",
            f"-I{googleapis}",
            f"-I{grpc_proto_include}",
            f"--python_out={HERE}",
            f"--pyi_out={HERE}",
            f"--grpc_python_out={HERE}",
            f"--plugin=protoc-gen-mypy_grpc={plugin}",
            f"--mypy_grpc_out={HERE}",
            *sources,
        ]
    )
    if status != 0:
        raise SystemExit(f"protoc failed with status {status}")
    for marker in (GENERATED / "__init__.py", GENERATED / "v1" / "__init__.py", GENERATED / "py.typed"):
        marker.touch()


generate_stubs()
setup()
