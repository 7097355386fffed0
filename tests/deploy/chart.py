"""Renders the Helm chart of deploy/helm with helm itself and hands back the objects, parsed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.helm import helm

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "helseid-broker"
PRODUCTION_VALUES = CHART / "ci" / "production-values.yaml"
RELEASE = "helseid-broker"
# The oldest Kubernetes the chart claims (Chart.yaml: kubeVersion >=1.27) and the newest whose schemas
# kubernetes-validate ships. helm built from source assumes Kubernetes 1.20 unless told, so every command
# names the version.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
NEWEST = KUBERNETES_VERSIONS[-1]

Manifest = dict[str, Any]


def render(*values_files: Path, kube_version: str = NEWEST) -> list[Manifest]:
    args = ["template", RELEASE, str(CHART), "--namespace", "helseid", "--kube-version", kube_version]
    for values in values_files:
        args += ["--values", str(values)]
    return [doc for doc in yaml.safe_load_all(helm(*args)) if doc]


def one(objects: list[Manifest], kind: str) -> Manifest:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def kinds(objects: list[Manifest]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def config_map(objects: list[Manifest], name: str = RELEASE) -> Manifest:
    """A ConfigMap by name: the main configuration's (the release's full name) or `<that>-tenants`."""
    found = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} ConfigMaps named {name}"
    return found[0]


def tenants_config_map(objects: list[Manifest]) -> Manifest:
    return config_map(objects, f"{RELEASE}-tenants")
