"""What a cluster operator checks before accepting the manifests: security contexts, resources,
probes, graceful termination, disruption budgets, autoscaling and the migration step."""

from __future__ import annotations

import re

import pytest
from deploy_manifests import (
    SERVICES,
    Rendered,
    all_containers,
    container_port,
    effective,
    main_container,
    pod_labels,
    pod_spec,
    settings_defaults,
)

_UNITS = {"": 1, "m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}


def _quantity(value: str | int | float) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value)).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def test_every_workload_runs_as_non_root_with_a_runtime_seccomp_profile(overlay: Rendered) -> None:
    for workload in overlay.workloads():
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        security = spec.get("securityContext", {})
        assert security.get("runAsNonRoot") is True, f"{overlay.name}: {name} may run as root"
        assert security.get("runAsUser", 0) != 0, f"{name} runs as uid 0"
        assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, f"{name} mounts an API token it never uses"
        assert spec.get("hostNetwork") is not True and spec.get("hostPID") is not True, name
        account = spec.get("serviceAccountName")
        assert account and overlay.get("ServiceAccount", account), (
            f"{name} runs as the default ServiceAccount"
        )


def test_every_container_is_locked_down(overlay: Rendered) -> None:
    for workload in overlay.workloads():
        for container in all_containers(workload):
            where = f"{overlay.name}: {workload['metadata']['name']}/{container['name']}"
            security = container.get("securityContext", {})
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("privileged") is not True, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not security.get("capabilities", {}).get("add"), where


def test_every_container_has_requests_within_limits(overlay: Rendered) -> None:
    for workload in overlay.workloads():
        for container in all_containers(workload):
            where = f"{overlay.name}: {workload['metadata']['name']}/{container['name']}"
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request is not None and limit is not None, f"{where}: {resource} request and limit"
                assert _quantity(request) <= _quantity(limit), f"{where}: {resource} request above limit"


def test_every_long_running_container_has_readiness_and_liveness_probes(overlay: Rendered) -> None:
    for workload in overlay.workloads():
        for container in pod_spec(workload)["containers"]:
            where = f"{overlay.name}: {workload['metadata']['name']}/{container['name']}"
            assert "readinessProbe" in container, where
            assert "livenessProbe" in container, where


@pytest.mark.parametrize("service", sorted(set(SERVICES) - {"gateway"}))
def test_grpc_services_probe_the_grpc_health_service(overlay: Rendered, service: str) -> None:
    container = main_container(overlay.services()[service])
    port = container_port(container, "grpc")
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        # Native gRPC probe on the whole server ("" service), which the runtime reports on.
        assert container[kind].get("grpc") == {"port": port}, f"{service} {kind}"


def test_gateway_probes_its_http_health_endpoints(overlay: Rendered) -> None:
    container = main_container(overlay.services()["gateway"])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_liveness_is_more_patient_than_readiness(overlay: Rendered) -> None:
    """A dependency outage flips health to NOT_SERVING; pods should leave the Service long before
    the kubelet restarts them (a restart cannot fix a dependency)."""
    for service, deployment in overlay.services().items():
        container = main_container(deployment)

        def window(probe: dict) -> int:
            return probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)

        assert window(container["livenessProbe"]) >= 4 * window(container["readinessProbe"]), service


@pytest.mark.parametrize("service", SERVICES)
def test_termination_grace_exceeds_shutdown_grace(overlay: Rendered, service: str) -> None:
    deployment = overlay.services()[service]
    container = main_container(deployment)
    shutdown = float(effective(service, overlay.env(container), "ASSETGEN_SHUTDOWN_GRACE_SECONDS"))
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] > pre_stop + shutdown


@pytest.mark.parametrize("service", SERVICES)
def test_services_write_only_to_an_empty_dir_at_tmp(overlay: Rendered, service: str) -> None:
    deployment = overlay.services()[service]
    volumes = {v["name"]: v for v in pod_spec(deployment).get("volumes", [])}
    for container in all_containers(deployment):
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        writable = {path for path, mount in mounts.items() if not mount.get("readOnly")}
        assert writable == {"/tmp"}, f"{service}/{container['name']} writes to {sorted(writable)}"
        for path, mount in mounts.items():
            if path != "/tmp":
                assert "secret" in volumes[mount["name"]], f"{service}: read-only {path} is not a Secret"
        tmp = volumes[mounts["/tmp"]["name"]]
        assert "emptyDir" in tmp and tmp["emptyDir"].get("sizeLimit"), (
            f"{service}: /tmp is an unbounded emptyDir"
        )


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_disruption_budget_that_allows_eviction(overlay: Rendered, service: str) -> None:
    deployment = overlay.services()[service]
    budgets = [
        pdb
        for pdb in overlay.of_kind("PodDisruptionBudget")
        if pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(deployment).items()
    ]
    assert len(budgets) == 1, f"{overlay.name}: {service} has {len(budgets)} PodDisruptionBudgets"
    # maxUnavailable ≥ 1 never blocks a node drain, whatever the replica count.
    assert budgets[0]["spec"].get("maxUnavailable", 0) >= 1


@pytest.mark.parametrize("service", SERVICES)
def test_each_stateless_service_autoscales(overlay: Rendered, service: str) -> None:
    scalers = [
        hpa
        for hpa in overlay.of_kind("HorizontalPodAutoscaler")
        if hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
    ]
    assert len(scalers) == 1, f"{overlay.name}: {service} has {len(scalers)} autoscalers"
    spec = scalers[0]["spec"]
    assert 1 <= spec["minReplicas"] < spec["maxReplicas"]
    assert any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in spec["metrics"])
    # With an autoscaler, a replica count in the Deployment would reset the scale on every apply.
    assert "replicas" not in overlay.services()[service]["spec"]


def test_production_runs_at_least_two_of_each_service(render_overlay) -> None:
    for hpa in render_overlay("production").of_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] >= 2, hpa["metadata"]["name"]


@pytest.mark.parametrize("service", SERVICES)
def test_services_with_a_database_migrate_before_starting(overlay: Rendered, service: str) -> None:
    database_vars = [var for var in settings_defaults(service) if var.endswith("DATABASE_URL")]
    deployment = overlay.services()[service]
    init = pod_spec(deployment).get("initContainers", [])
    if not database_vars:
        assert init == [], f"{service} has no database to migrate"
        return
    assert [c["name"] for c in init] == ["migrate"], (
        f"{overlay.name}: {service} needs a migrate init container"
    )
    migrate, main = init[0], main_container(deployment)
    assert migrate["image"] == main["image"]
    assert migrate.get("args") == ["migrate"] and "command" not in migrate
    migrate_env, main_env = overlay.env(migrate), overlay.env(main)
    for var in database_vars:
        assert migrate_env[var] == main_env[var], f"{service}: migrate and server use different {var}"


def test_images_are_the_dockerfile_targets(overlay: Rendered) -> None:
    for service, deployment in overlay.services().items():
        for container in all_containers(deployment):
            repository = container["image"].rpartition(":")[0]
            assert repository.endswith(f"assetgen/{service}"), f"{service} runs {container['image']}"


def test_dev_nats_is_a_three_node_jetstream_cluster(render_overlay) -> None:
    dev = render_overlay("dev")
    nats = dev.get("StatefulSet", "nats")
    assert nats is not None and nats["spec"]["replicas"] == 3
    assert nats["spec"]["podManagementPolicy"] == "Parallel"
    config = dev.get("ConfigMap", "nats-config")["data"]["nats.conf"]  # type: ignore[index]
    assert "jetstream" in config
    routes = re.findall(r"nats://(nats-\d)\.nats-headless:6222", config)
    assert routes == [f"nats-{i}" for i in range(3)]
    headless = dev.get("Service", "nats-headless")
    assert headless is not None and headless["spec"]["clusterIP"] == "None"
    assert nats["spec"]["serviceName"] == "nats-headless"
    assert nats["spec"]["volumeClaimTemplates"], "JetStream data must outlive the pod"


def test_dev_stateful_dependencies_keep_data_on_volumes(render_overlay) -> None:
    dev = render_overlay("dev")
    for name in ("nats", "postgres", "minio"):
        stateful = dev.get("StatefulSet", name)
        assert stateful is not None, name
        claims = {c["metadata"]["name"] for c in stateful["spec"]["volumeClaimTemplates"]}
        mounted = {m["name"] for c in pod_spec(stateful)["containers"] for m in c["volumeMounts"]}
        assert claims <= mounted, name
