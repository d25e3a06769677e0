"""deploy/README.md stays accurate to the files: overlays, components, Secrets, paths, commands."""

from __future__ import annotations

import re

from deploy_manifests import DEPLOY, OVERLAYS, REPO, Rendered, all_containers

README = (DEPLOY / "README.md").read_text()


def test_every_overlay_and_component_is_documented() -> None:
    for overlay in OVERLAYS:
        assert f"kubectl apply -k deploy/overlays/{overlay}" in README, overlay
    for component in (DEPLOY / "components").iterdir():
        assert f"{component.name}/" in README, component.name


def test_render_command_is_documented_and_in_the_makefile() -> None:
    assert "make deploy-render OVERLAY=production" in README
    makefile = (REPO / "Makefile").read_text()
    assert re.search(
        r"^deploy-render:.*\n(.*\n)*?\t.*kustomize deploy/overlays/\$\(OVERLAY\)", makefile, re.M
    )


def test_every_secret_production_needs_is_documented(render_overlay) -> None:
    production: Rendered = render_overlay("production")
    needed = {
        (value.name, value.key, var)
        for workload in production.workloads()
        for container in all_containers(workload)
        for var, value in production.env(container).items()
        if value.source == "secret"
    }
    assert needed
    rows = set(re.findall(r"^\s*\|\s*`([\w-]+)`\s*\|\s*`([\w-]+)`\s*\|\s*`(\w+)`", README, re.M))
    assert needed == rows, f"README Secrets table differs from the manifests: {sorted(needed ^ rows)}"


def test_every_deploy_path_the_readme_names_exists() -> None:
    paths = set(re.findall(r"(?:deploy/)?((?:overlays|components|base)/[\w./-]+)", README))
    assert paths
    for path in paths:
        assert (DEPLOY / path.rstrip("/.")).exists(), f"README names {path}, which does not exist"
