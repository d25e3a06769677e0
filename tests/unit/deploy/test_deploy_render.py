"""Every overlay renders, and every rendered object is valid against the real Kubernetes schemas."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter

import kubernetes_validate
import pytest
from deploy_manifests import DEPLOY, OVERLAYS, REPO, Rendered, render_text

# The newest schemas kubernetes-validate ships, and the oldest release the manifests support
# (native sleep preStop hooks are on by default from 1.30; gRPC probes are GA since 1.27).
KUBERNETES_VERSIONS = ("1.37.0", "1.30.0")


def test_there_are_dev_and_production_overlays() -> None:
    assert {"dev", "production"} <= set(OVERLAYS)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_every_object_validates_strictly(render_overlay, name: str, version: str) -> None:
    rendered: Rendered = render_overlay(name)
    assert rendered.objects, f"{name} renders nothing"
    errors = []
    for obj in rendered.objects:
        label = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            # strict: unknown fields (a typo'd `readinessProbe`, say) are errors, not ignored.
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{label}: {'.'.join(map(str, error.path))}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"{label}: {error.message}")
    assert not errors, "\n".join(errors)


def test_validation_rejects_a_broken_object() -> None:
    """The validator itself catches what the test above relies on it to catch."""
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"selector": {}, "template": {"spec": {"containers": [{"name": "x", "readinesProbe": {}}]}}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_overlays_put_everything_in_their_own_namespace(overlay: Rendered) -> None:
    namespaces = overlay.of_kind("Namespace")
    assert len(namespaces) == 1, f"{overlay.name} should create exactly one Namespace"
    namespace = namespaces[0]["metadata"]["name"]
    stray = [
        f"{obj['kind']}/{obj['metadata']['name']}"
        for obj in overlay.objects
        if obj["kind"] != "Namespace" and obj["metadata"].get("namespace") != namespace
    ]
    assert not stray, f"{overlay.name}: outside namespace {namespace}: {stray}"
    assert namespaces[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_no_two_objects_share_kind_and_name(overlay: Rendered) -> None:
    counts = Counter((obj["kind"], obj["metadata"]["name"]) for obj in overlay.objects)
    assert [key for key, count in counts.items() if count > 1] == []


def test_production_uses_no_in_cluster_dependencies(render_overlay) -> None:
    production = render_overlay("production")
    assert production.of_kind("StatefulSet") == []
    assert production.of_kind("Secret") == [], "production Secrets are created by the operator, not committed"
    assert production.of_kind("Ingress"), "production carries the Ingress example"


def test_production_images_come_from_a_registry_with_a_tag(render_overlay) -> None:
    for deployment in render_overlay("production").of_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            repository, _, tag = container["image"].rpartition(":")
            assert "." in repository.split("/")[0], f"{container['image']} names no registry"
            assert tag and tag != "latest"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("name", OVERLAYS)
def test_make_deploy_render_prints_the_overlay(name: str) -> None:
    stamp = REPO / ".venv" / ".installed"
    if not stamp.exists():
        pytest.skip("the Makefile's venv is not set up here (no .venv/.installed)")
    # -o: treat the venv as up to date, so the test never reinstalls it.
    result = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "-s",
            "-o",
            str(stamp.relative_to(REPO)),
            "deploy-render",
            f"OVERLAY={name}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_text(DEPLOY / "overlays" / name)
