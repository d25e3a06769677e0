"""Internal trust in the manifests: the service credential and NATS users from Secrets, the in-cluster
NATS's users and permissions, and egress policies that keep fetching services off the cluster."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
from typing import Any

import pytest
from deploy_manifests import SERVICES, Rendered, main_container

from assetgen_dev.embedded import binary
from assetgen_dev.nats_users import PERMISSIONS


def _secret(name: str) -> str:
    """A Secret's name without the content hash a secretGenerator appends."""
    return re.sub(r"-[a-z0-9]{10}$", "", name)


NATS_CLIENTS = {"orchestrator": "orchestrator-url", "gateway": "gateway-url"}
NOT_THE_INTERNET = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_gets_the_service_credential_from_a_secret(overlay: Rendered, service: str) -> None:
    value = overlay.env(main_container(overlay.services()[service]))["ASSETGEN_SERVICE_TOKEN"]
    assert (value.source, _secret(value.name), value.key) == ("secret", "assetgen-service-token", "token")


@pytest.mark.parametrize("service", SERVICES)
def test_only_the_orchestrator_gets_the_callback_key_from_a_secret(overlay: Rendered, service: str) -> None:
    # Every replica must sign and check callback URLs alike, and restarts must not change the key.
    env = overlay.env(main_container(overlay.services()[service]))
    if service != "orchestrator":
        assert "ASSETGEN_CALLBACK_SECRET" not in env
        return
    value = env["ASSETGEN_CALLBACK_SECRET"]
    assert (value.source, _secret(value.name), value.key) == ("secret", "assetgen-callbacks", "secret")


@pytest.mark.parametrize("service", SERVICES)
def test_nats_clients_connect_as_their_own_user(overlay: Rendered, service: str) -> None:
    env = overlay.env(main_container(overlay.services()[service]))
    if service not in NATS_CLIENTS:
        assert "ASSETGEN_NATS_URL" not in env
        return
    value = env["ASSETGEN_NATS_URL"]
    assert (value.source, _secret(value.name), value.key) == (
        "secret",
        "assetgen-nats",
        NATS_CLIENTS[service],
    )
    if value.value is not None:  # rendered by the in-cluster component
        assert value.value.startswith(f"nats://{service}:")


def test_the_in_cluster_nats_has_a_user_per_client_with_its_permissions(render_overlay: Any) -> None:
    dev = render_overlay("dev")
    config = dev.get("ConfigMap", "nats-config")["data"]["nats.conf"]
    for user, (publish, subscribe) in PERMISSIONS.items():
        entry = config[config.index(f'{{user: "{user}"') :]
        entry = entry[: entry.index("}}") + 2]
        assert f"password: $NATS_{user.upper()}_PASSWORD" in entry
        assert f"publish: {{allow: {json.dumps(list(publish))}}}" in entry
        assert f"subscribe: {{allow: {json.dumps(list(subscribe))}}}" in entry
    nats = dev.get("StatefulSet", "nats")
    env = {
        item["name"]: item.get("valueFrom", {})
        for item in nats["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    for user in PERMISSIONS:
        ref = env[f"NATS_{user.upper()}_PASSWORD"]["secretKeyRef"]
        assert (_secret(ref["name"]), ref["key"]) == ("assetgen-nats", f"{user}-password")


def test_the_in_cluster_nats_config_is_one_nats_server_accepts(render_overlay: Any, tmp_path: Any) -> None:
    # The packaged nats-server checks the whole file (e.g. it refuses a lame duck shorter than 30 s).
    config = render_overlay("dev").get("ConfigMap", "nats-config")["data"]["nats.conf"]
    (tmp_path / "nats.conf").write_text(config)
    variables = {name: "test" for name in re.findall(r"\$([A-Z_][A-Z0-9_]*)", config)}
    checked = subprocess.run(
        [binary("nats-server"), "-t", "-c", str(tmp_path / "nats.conf")],
        env={**os.environ, **variables},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _egress(overlay: Rendered, service: str) -> list[dict[str, Any]]:
    rules = []
    for policy in overlay.of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if (
            "Egress" in spec.get("policyTypes", [])
            and spec["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == service
        ):
            rules.extend(spec.get("egress", []))
    return rules


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_egress_rules_and_none_reaches_everywhere(overlay: Rendered, service: str) -> None:
    rules = _egress(overlay, service)
    assert rules, f"{overlay.name}: {service} has no egress policy"
    for rule in rules:
        assert rule.get("to"), f"{overlay.name}: {service} has an egress rule to anywhere"
        for peer in rule["to"]:
            block = peer.get("ipBlock")
            if block:
                assert "169.254.0.0/16" in block.get("except", []), (
                    f"{service} may reach the metadata address"
                )


@pytest.mark.parametrize("service", ["provider-adapter", "storage", "orchestrator"])
def test_fetching_services_reach_the_internet_but_not_private_or_metadata_ranges(
    overlay: Rendered, service: str
) -> None:
    portless = [rule for rule in _egress(overlay, service) if not rule.get("ports")]
    blocks = [peer["ipBlock"] for rule in portless for peer in rule["to"] if "ipBlock" in peer]
    assert blocks and all(block["cidr"] == "0.0.0.0/0" for block in blocks)
    for block in blocks:
        assert set(NOT_THE_INTERNET) <= set(block["except"])
        assert all(ipaddress.ip_network(cidr) for cidr in block["except"])
    assert all(
        "podSelector" not in peer and "namespaceSelector" not in peer
        for rule in portless
        for peer in rule["to"]
    )
