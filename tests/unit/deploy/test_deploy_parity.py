"""Config parity: manifests set only settings the services read, every required one, and agree on
names and ports with the Services, the probes and the clients; credentials come only from Secrets."""

from __future__ import annotations

import re

import pytest
from deploy_manifests import (
    SECRET_LOOKING,
    SECRET_SETTINGS,
    SERVICES,
    Rendered,
    all_containers,
    container_port,
    effective,
    local_target,
    main_container,
    pod_labels,
    pod_spec,
    resolve_port,
    settings_defaults,
)


def test_every_assetgen_workload_is_known(overlay: Rendered) -> None:
    """A Deployment running an AssetGen image must be listed in SERVICES, so parity covers it."""
    for workload in overlay.workloads():
        for container in all_containers(workload):
            if re.search(r"(^|/)assetgen/", container["image"]):
                assert workload["metadata"]["name"] in SERVICES, (
                    f"{workload['metadata']['name']} is not in SERVICES"
                )
    assert set(overlay.services()) == set(SERVICES), f"{overlay.name} lacks a service"


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_set_is_a_setting_the_service_reads(overlay: Rendered, service: str) -> None:
    known = set(settings_defaults(service))
    for container in all_containers(overlay.services()[service]):
        unknown = set(overlay.env(container)) - known
        assert not unknown, (
            f"{overlay.name}: {service}/{container['name']} sets {sorted(unknown)}, which it never reads"
        )


@pytest.mark.parametrize("service", SERVICES)
def test_every_required_setting_is_set(overlay: Rendered, service: str) -> None:
    required = {var for var, default in settings_defaults(service).items() if default == "(required)"}
    env = overlay.env(main_container(overlay.services()[service]))
    assert required - set(env) == set(), f"{overlay.name}: {service} misses required settings"


@pytest.mark.parametrize("service", SERVICES)
def test_credentials_come_from_secrets(overlay: Rendered, service: str) -> None:
    """Every credential the service reads is set, and from a Secret; no other source holds one."""
    reads = set(settings_defaults(service)) & SECRET_SETTINGS
    for container in all_containers(overlay.services()[service]):
        env = overlay.env(container)
        for var, value in env.items():
            if var in SECRET_SETTINGS or SECRET_LOOKING.search(var):
                assert value.source == "secret", f"{overlay.name}: {service} gets {var} from a {value.source}"
    env = overlay.env(main_container(overlay.services()[service]))
    assert reads - set(env) == set(), f"{overlay.name}: {service} gets no {sorted(reads - set(env))}"


def test_no_config_map_holds_a_credential(overlay: Rendered) -> None:
    for config in overlay.of_kind("ConfigMap"):
        for key, value in config.get("data", {}).items():
            assert not SECRET_LOOKING.search(key), f"{config['metadata']['name']}: {key} belongs in a Secret"
            assert not re.search(r"://[^/\s@]+:[^/\s@]+@", str(value)), (
                f"{config['metadata']['name']}: {key} carries a password in a URL"
            )


def test_no_workload_spells_out_a_secret(overlay: Rendered) -> None:
    for workload in overlay.workloads():
        for container in all_containers(workload):
            for item in container.get("env", []):
                if SECRET_LOOKING.search(item["name"]):
                    assert "value" not in item, f"{workload['metadata']['name']}: {item['name']} is a literal"


@pytest.mark.parametrize("service", SERVICES)
def test_ports_agree_across_settings_containers_services_and_probes(overlay: Rendered, service: str) -> None:
    deployment = overlay.services()[service]
    container = main_container(deployment)
    env = overlay.env(container)
    ports = {"grpc": int(effective(service, env, "ASSETGEN_GRPC_PORT"))}
    if "ASSETGEN_HTTP_PORT" in settings_defaults(service):
        ports["http"] = int(effective(service, env, "ASSETGEN_HTTP_PORT"))
    if int(effective(service, env, "ASSETGEN_METRICS_PORT")):
        ports["metrics"] = int(effective(service, env, "ASSETGEN_METRICS_PORT"))
    for name, number in ports.items():
        assert container_port(container, name) == number, f"{service}: containerPort {name} != setting"
    assert {p["containerPort"] for p in container["ports"]} == set(ports.values())

    # The Service named like the Deployment exposes each port under the same number and name.
    svc = overlay.get("Service", service)
    assert svc is not None, f"{overlay.name}: no Service {service}"
    assert svc["spec"]["selector"].items() <= pod_labels(deployment).items()
    exposed = {p["name"]: (p["port"], resolve_port(container, p["targetPort"])) for p in svc["spec"]["ports"]}
    assert exposed == {name: (number, number) for name, number in ports.items()}

    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[kind]
        handler = probe.get("grpc") or probe.get("httpGet")
        assert handler is not None, f"{service}: {kind} is neither gRPC nor HTTP"
        assert resolve_port(container, handler["port"]) in ports.values()
        if "grpc" in probe:
            assert probe["grpc"]["port"] == ports["grpc"]


@pytest.mark.parametrize("service", SERVICES)
def test_peer_addresses_name_the_peer_service_and_its_grpc_port(overlay: Rendered, service: str) -> None:
    env = overlay.env(main_container(overlay.services()[service]))
    addresses = [var for var in settings_defaults(service) if var.endswith("_ADDR")]
    for var in addresses:
        peer = var.removeprefix("ASSETGEN_").removesuffix("_ADDR").lower().replace("_", "-")
        target = local_target(effective(service, env, var))
        assert target is not None, f"{overlay.name}: {service} {var} does not point inside the namespace"
        workload = overlay.service_target(*target)
        assert workload["metadata"]["name"] == peer, f"{var} reaches {workload['metadata']['name']}"
        peer_env = overlay.env(main_container(workload))
        assert target[1] == int(effective(peer, peer_env, "ASSETGEN_GRPC_PORT"))


@pytest.mark.parametrize("service", SERVICES)
def test_peers_are_reached_on_every_replica(overlay: Rendered, service: str) -> None:
    """gRPC balances calls only over the addresses it resolves: a headless Service gives it every
    pod, and ``dns:///`` makes it resolve them (a ClusterIP would pin each caller to one pod)."""
    env = overlay.env(main_container(overlay.services()[service]))
    for var in (var for var in settings_defaults(service) if var.endswith("_ADDR")):
        address = effective(service, env, var)
        assert address.startswith("dns:///"), f"{overlay.name}: {service} {var} = {address!r}"
        target = local_target(address)
        assert target is not None
        peer_service = overlay.get("Service", target[0])
        assert peer_service is not None and peer_service["spec"].get("clusterIP") == "None"


def _peer_targets(overlay: Rendered, container: dict) -> list[tuple[str, int]]:
    """(Service, port) pairs that the container's settings point at inside the namespace."""
    targets = []
    for var, value in overlay.env(container).items():
        if value.value is None or not (var.endswith("_ADDR") or "://" in value.value):
            continue
        if (target := local_target(value.value)) is not None:
            targets.append(target)
    return targets


def _callers(overlay: Rendered) -> dict[tuple[str, int], set[str]]:
    """(workload, container port) → the AssetGen services whose settings point at it."""
    callers: dict[tuple[str, int], set[str]] = {}
    for service, deployment in overlay.services().items():
        for container in all_containers(deployment):
            for host, port in _peer_targets(overlay, container):
                peer = overlay.service_target(host, port)
                key = (peer["metadata"]["name"], _container_port_behind(overlay, host, port, peer))
                callers.setdefault(key, set()).add(service)
    return callers


def _container_port_behind(overlay: Rendered, host: str, port: int, workload: dict) -> int:
    service = overlay.get("Service", host)
    assert service is not None
    target = next(p["targetPort"] for p in service["spec"]["ports"] if p["port"] == port)
    for container in pod_spec(workload)["containers"]:
        for exposed in container.get("ports", []):
            if target in (exposed.get("name"), exposed["containerPort"]):
                return exposed["containerPort"]
    raise AssertionError(f"{host}:{port} targets no container port")


def _allowed_sources(overlay: Rendered, workload: dict, port: int) -> set[str] | None:
    """Workloads allowed to reach ``port`` of ``workload``'s pods; None means anyone, anywhere."""
    labels = pod_labels(workload)
    container_ports = {
        p.get("name"): p["containerPort"]
        for c in pod_spec(workload)["containers"]
        for p in c.get("ports", [])
    }
    allowed: set[str] = set()
    for policy in overlay.of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", ["Ingress"]):
            continue
        if not spec["podSelector"].get("matchLabels", {}).items() <= labels.items():
            continue
        for rule in spec.get("ingress", []):
            rule_ports = {container_ports.get(p["port"], p["port"]) for p in rule.get("ports", [])}
            if rule_ports and port not in rule_ports:
                continue
            if not rule.get("from"):
                return None
            for peer in rule["from"]:
                if set(peer) == {"namespaceSelector"}:
                    namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    allowed.add(f"namespace:{namespace}")
                    continue
                assert set(peer) == {"podSelector"}, (
                    f"{policy['metadata']['name']}: only same-namespace peers expected"
                )
                for source in overlay.selected_workloads(peer["podSelector"].get("matchLabels", {})):
                    allowed.add(source["metadata"]["name"])
    return allowed


def test_ingress_is_denied_by_default(overlay: Rendered) -> None:
    assert any(
        policy["spec"]["podSelector"] == {}
        and not policy["spec"].get("ingress")
        and policy["spec"]["policyTypes"] == ["Ingress"]
        for policy in overlay.of_kind("NetworkPolicy")
    ), f"{overlay.name} has no default-deny ingress policy"


def test_only_the_gateway_is_open_to_everyone(overlay: Rendered) -> None:
    gateway = overlay.services()["gateway"]
    for port in gateway["spec"]["template"]["spec"]["containers"][0]["ports"]:
        if port["name"] != "metrics":
            assert _allowed_sources(overlay, gateway, port["containerPort"]) is None
    for workload in overlay.workloads():
        if workload["metadata"]["name"] == "gateway":
            continue
        for container in pod_spec(workload)["containers"]:
            for port in container.get("ports", []):
                where = f"{overlay.name}: {workload['metadata']['name']}:{port['containerPort']}"
                assert _allowed_sources(overlay, workload, port["containerPort"]) is not None, where


def test_metrics_are_scraped_only_from_the_monitoring_namespace(overlay: Rendered) -> None:
    for name, workload in overlay.services().items():
        container = main_container(workload)
        metrics = container_port(container, "metrics")
        assert _allowed_sources(overlay, workload, metrics) == {"namespace:monitoring"}, name
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(metrics), name


def test_each_internal_workload_accepts_exactly_its_callers(overlay: Rendered) -> None:
    callers = _callers(overlay)
    assert callers, "no service calls another: the call graph is not being read"
    for (target, port), sources in callers.items():
        workload = next(w for w in overlay.workloads() if w["metadata"]["name"] == target)
        assert _allowed_sources(overlay, workload, port) == sources, (
            f"{overlay.name}: {target}:{port} should accept exactly {sorted(sources)}"
        )


def test_dev_dependencies_are_reached_in_cluster(render_overlay) -> None:
    """In dev, NATS, both databases and S3 resolve to the in-cluster StatefulSets."""
    callers = _callers(render_overlay("dev"))
    assert callers.get(("nats", 4222)) == {"orchestrator", "gateway"}
    assert callers.get(("postgres", 5432)) == {"orchestrator", "provider-adapter"}
    assert callers.get(("minio", 9000)) == {"storage"}


def test_dev_database_credentials_match_postgres_and_minio(render_overlay) -> None:
    dev = render_overlay("dev")
    postgres = dev.env(
        main_container(next(w for w in dev.workloads() if w["metadata"]["name"] == "postgres"))
    )
    password = postgres["POSTGRES_PASSWORD"].value
    user = postgres["POSTGRES_USER"].value
    for service, var in (
        ("orchestrator", "ASSETGEN_DATABASE_URL"),
        ("provider-adapter", "ASSETGEN_CATALOG_DATABASE_URL"),
    ):
        url = dev.env(main_container(dev.services()[service]))[var].value
        assert url is not None and url.startswith(f"postgresql+asyncpg://{user}:{password}@postgres:5432/")
    minio = dev.env(main_container(next(w for w in dev.workloads() if w["metadata"]["name"] == "minio")))
    storage = dev.env(main_container(dev.services()["storage"]))
    assert storage["ASSETGEN_S3_ACCESS_KEY"].value == minio["MINIO_ROOT_USER"].value
    assert storage["ASSETGEN_S3_SECRET_KEY"].value == minio["MINIO_ROOT_PASSWORD"].value


def test_dev_creates_both_databases(render_overlay) -> None:
    dev = render_overlay("dev")
    postgres_env = dev.env(
        main_container(next(w for w in dev.workloads() if w["metadata"]["name"] == "postgres"))
    )
    init_sql = "\n".join(dev.get("ConfigMap", "postgres-init")["data"].values())  # type: ignore[index]
    created = {postgres_env["POSTGRES_DB"].value, *re.findall(r"CREATE DATABASE (\w+)", init_sql)}
    for service, var in (
        ("orchestrator", "ASSETGEN_DATABASE_URL"),
        ("provider-adapter", "ASSETGEN_CATALOG_DATABASE_URL"),
    ):
        url = dev.env(main_container(dev.services()[service]))[var].value
        assert url is not None and url.rsplit("/", 1)[1] in created


def test_dev_secret_references_resolve(render_overlay) -> None:
    """Dev renders its Secrets, so every reference must find its key (production's are checked
    against the README's table instead: the operator creates them)."""
    dev: Rendered = render_overlay("dev")
    referenced = 0
    for workload in dev.workloads():
        for container in all_containers(workload):
            for value in dev.env(container).values():
                if value.source == "secret":
                    referenced += 1
                    assert value.value is not None, f"Secret {value.name} is referenced but not rendered"
    assert referenced
