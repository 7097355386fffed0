"""The Helm chart: helm lint, a render with default and with production-like values, and every rendered
object validated offline against the Kubernetes JSON schemas (kubernetes-validate ships them)."""

from __future__ import annotations

import posixpath
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from broker.config.models import TENANTS_DIRECTORY
from tests.deploy.chart import (
    CHART,
    KUBERNETES_VERSIONS,
    PRODUCTION_VALUES,
    Manifest,
    config_map,
    kinds,
    one,
    render,
    tenants_config_map,
)
from tests.fixtures.helm import helm

# Custom resources have no schema in the Kubernetes set; the tests check them field by field.
CUSTOM_KINDS = {"ServiceMonitor"}
# The production values also take the Redis URL from a Secret (redis.urlSecret), so that variant is
# validated against the schemas too.
VALUES = {"default": (), "production": (PRODUCTION_VALUES,)}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_helm_lint_passes_strict_with_default_and_production_values(version: str) -> None:
    default = helm("lint", "--strict", "--kube-version", version, str(CHART))
    production = helm(
        "lint", "--strict", "--kube-version", version, str(CHART), "--values", str(PRODUCTION_VALUES)
    )
    summary = [out.strip().splitlines()[-1] for out in (default, production)]
    print(f"helm lint --strict, Kubernetes {version}: default {summary[0]}; production {summary[1]}")
    assert "0 chart(s) failed" in default
    assert "0 chart(s) failed" in production


@pytest.mark.parametrize("name", sorted(VALUES))
def test_every_rendered_object_matches_the_kubernetes_schemas(name: str) -> None:
    checked = 0
    for version in KUBERNETES_VERSIONS:
        objects = render(*VALUES[name], kube_version=version)
        for obj in objects:
            if obj["kind"] in CUSTOM_KINDS:
                continue
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']} invalid for {version}: {exc}")
            checked += 1
    print(
        f"{name} values: {len(objects)} objects ({', '.join(kinds(objects))}); {checked} validations "
        f"against Kubernetes {' and '.join(KUBERNETES_VERSIONS)}, strict"
    )
    assert checked == len(KUBERNETES_VERSIONS) * len([o for o in objects if o["kind"] not in CUSTOM_KINDS])


def _pod(objects: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def test_default_render_runs_three_hardened_replicas_with_grpc_probes() -> None:
    objects = render()
    assert kinds(objects) == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Service",
            "ServiceAccount",
        ]
    )
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    pod = _pod(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"] == {"port": 50051, "service": ""}, probe
    spread = {c["topologyKey"]: c["whenUnsatisfiable"] for c in pod["topologySpreadConstraints"]}
    assert spread == {
        "topology.kubernetes.io/zone": "ScheduleAnyway",
        "kubernetes.io/hostname": "DoNotSchedule",
    }
    assert one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    ports = {p["name"]: p["port"] for p in one(objects, "Service")["spec"]["ports"]}
    assert ports == {"grpc": 50051, "metrics": 9464}
    # Secrets reach the pod by reference only: the chart renders no Secret and no literal env value.
    assert all("valueFrom" in env and "value" not in env for env in container["env"])
    mounts = {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]}
    # Read-only root filesystem: only the audit volume and an emptyDir for temporary files are writable.
    writable = sorted(path for path, read_only in mounts.items() if not read_only)
    assert writable == ["/tmp", "/var/lib/helseid-broker/audit"]  # noqa: S108 (a path in the pod)
    policy = one(objects, "NetworkPolicy")["spec"]
    egress_ports = sorted(p["port"] for rule in policy["egress"] for p in rule["ports"])
    replicas = deployment["spec"]["replicas"]
    print(f"default: {replicas} replicas, grpc probes, writable {writable}, egress ports {egress_ports}")
    assert egress_ports == [53, 53, 443, 6379]


def test_production_render_has_hpa_servicemonitor_tls_probes_and_a_port_per_worker() -> None:
    objects = render(PRODUCTION_VALUES)
    assert {"HorizontalPodAutoscaler", "ServiceMonitor"} <= set(kinds(objects))
    deployment = one(objects, "Deployment")
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (container,) = _pod(objects)["containers"]
    assert container["image"].endswith("@sha256:" + "0123456789abcdef" * 4)
    command = container["livenessProbe"]["exec"]["command"]
    assert command[:2] == ["python", "/opt/helseid-broker/healthcheck.py"]
    assert "--tls-cert" in command, "mTLS: the probe presents a client certificate"
    # An exec probe starts Python and grpcio: Kubernetes' default 1 s timeout is too short for that.
    probes = ("startupProbe", "livenessProbe", "readinessProbe")
    assert all(container[probe]["timeoutSeconds"] >= 3 for probe in probes)
    metrics_ports = sorted(p["containerPort"] for p in container["ports"] if p["name"].startswith("metrics"))
    assert metrics_ports == [9464, 9465], "workers = 2: worker i serves metrics on 9464 + i"
    monitor = one(objects, "ServiceMonitor")
    service_ports = {p["name"] for p in one(objects, "Service")["spec"]["ports"]}
    endpoints = [e["port"] for e in monitor["spec"]["endpoints"]]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(endpoints) == {"metrics", "metrics-1"} <= service_ports
    assert monitor["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    config = config_map(objects)["data"]["broker.toml"]
    assert 'client_ca = { file = "../tls/ca.crt" }' in config
    # redis.urlSecret: the URL (with its password) comes from the Secret; the ConfigMap names the variable.
    assert tomllib.loads(config)["store"]["url"] == {"env": "BROKER_REDIS_URL"}
    assert "redis://" not in config
    assert "rediss://" not in config
    redis_url = next(env for env in container["env"] if env["name"] == "BROKER_REDIS_URL")
    assert redis_url["valueFrom"] == {"secretKeyRef": {"name": "helseid-broker-redis", "key": "url"}}
    scale = f"{hpa['minReplicas']}-{hpa['maxReplicas']}"
    print(f"production: HPA {scale} replicas, scrape ports {endpoints}, exec probes with mTLS")


def test_chart_folder_holds_no_secret_material() -> None:
    texts = [p.read_text() for p in Path(CHART).rglob("*") if p.is_file()]
    assert not any('"d":' in t or "PRIVATE KEY" in t for t in texts)


def test_values_file_documents_every_top_level_value() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    keys = [(i, line.split(":")[0]) for i, line in enumerate(lines) if line[:1].isalpha()]
    undocumented = [key for i, key in keys if not lines[i - 1].startswith("#")]
    print(f"values.yaml: {len(keys)} top-level values, {len(undocumented)} without a comment above")
    assert not undocumented


def _tenants_mount(objects: list[Manifest]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The container's mount of the tenants volume and that volume."""
    pod = _pod(objects)
    (container,) = pod["containers"]
    (volume,) = [v for v in pod["volumes"] if v.get("configMap", {}).get("name", "").endswith("-tenants")]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    return mount, volume


@pytest.mark.parametrize("name", sorted(VALUES))
def test_tenants_are_a_configmap_mounted_whole_as_the_tenants_directory(name: str) -> None:
    objects = render(*VALUES[name])
    tenants = tenants_config_map(objects)["data"]
    assert tenants, "the example tenants are in the tenants ConfigMap"
    for key, text in tenants.items():
        assert key.endswith(".toml")
        assert not key.startswith(".")
        assert {"client", "targets"} <= set(tomllib.loads(text)), key
    config = tomllib.loads(config_map(objects)["data"]["broker.toml"])
    assert "tenants" not in config, "no tenant left in the main configuration"
    mount, _ = _tenants_mount(objects)
    # A subPath mount is never updated; only a whole-volume mount follows the ConfigMap (its ..data link).
    assert "subPath" not in mount
    assert mount["readOnly"] is True
    (container,) = _pod(objects)["containers"]
    config_file = container["args"][container["args"].index("--config") + 1]
    directory = posixpath.normpath(posixpath.join(posixpath.dirname(config_file), config[TENANTS_DIRECTORY]))
    print(f"{name}: {sorted(tenants)} mounted at {mount['mountPath']}, tenants_directory {directory}")
    assert directory == mount["mountPath"]


def test_a_change_of_tenants_only_keeps_the_pods_checksum(tmp_path: Path) -> None:
    checksum = "checksum/config"

    def rendered(values: str) -> tuple[str, dict[str, str]]:
        path = tmp_path / f"values-{len(list(tmp_path.iterdir()))}.yaml"
        path.write_text(values)
        objects = render(path)
        annotations = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return annotations[checksum], tenants_config_map(objects)["data"]

    before, tenants_before = rendered("{}")
    # The example tenant dropped, another added: Helm merges maps, so null is how a key is removed.
    after, tenants_after = rendered(
        "tenants:\n"
        "  oslo-legevakt: null\n"
        "  bergen-legevakt: |\n"
        '    client = "supplier"\n'
        '    orgnr_parent = "912345678"\n'
        '    targets = ["sfm"]\n'
    )
    assert sorted(tenants_before) == ["oslo-legevakt.toml"]
    assert sorted(tenants_after) == ["bergen-legevakt.toml"]
    assert after == before, "a tenants change must not roll the pods: the broker reloads them itself"
    # The annotation does follow the main configuration: this test would notice if it hashed nothing.
    changed, _ = rendered("telemetry:\n  logLevel: DEBUG\n")
    print(f"{checksum}: {before[:12]} before and after a tenants change, {changed[:12]} after a config one")
    assert changed != before


def test_tenant_names_a_configmap_key_cannot_hold_are_refused(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text('tenants:\n  ".hidden": |\n    client = "supplier"\n')
    with pytest.raises(pytest.fail.Exception) as caught:
        render(values)
    assert "tenants..hidden: a tenant's name must be" in str(caught.value)
