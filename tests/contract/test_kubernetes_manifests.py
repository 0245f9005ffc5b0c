"""The Kubernetes manifests, the example platform file and the Kubernetes experiments.

Every overlay builds; every object passes kubernetes-validate --strict for the pinned
Kubernetes version; selectors match the pods they mean; names are valid; the platform
files name workloads that exist; `chaos validate` accepts every Kubernetes experiment,
and the local catalog does not list them as local drills.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from experiments import catalog
from infra.kubernetes.config import load, validate
from tests.conftest import REPO
from tests.contract.kube_api import SCHEMA_VERSION
from tests.contract.kustomize import KustomizeError, build

MANIFESTS = REPO / "infra" / "kubernetes" / "manifests"
REGIONS = ["us-east", "us-west", "eu-west", "eu-central"]
BUILDS = [f"overlays/{r}" for r in REGIONS] + ["global"]
EXAMPLE = REPO / "infra" / "kubernetes" / "platform.example.yaml"
EXPERIMENTS = sorted((REPO / "experiments" / "kubernetes").glob("*.yaml"))
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$")
WORKLOADS = ("Deployment", "StatefulSet")


def _objects(name: str) -> list[dict[str, Any]]:
    return build(MANIFESTS / name)


def _key(obj: dict[str, Any]) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def _pod_specs(obj: dict[str, Any]) -> list[tuple[dict[str, str], dict[str, Any]]]:
    if obj["kind"] in (*WORKLOADS, "Job"):
        template = obj["spec"]["template"]
    elif obj["kind"] == "CronJob":
        template = obj["spec"]["jobTemplate"]["spec"]["template"]
    else:
        return []
    return [(template["metadata"].get("labels", {}), template["spec"])]


@pytest.mark.parametrize("name", BUILDS)
def test_every_object_passes_kubernetes_validate_strict(name: str) -> None:
    objects = _objects(name)
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)


def test_a_wrong_field_fails_the_strict_schema() -> None:
    # The check above can fail: a typo in a Deployment is caught.
    [deployment] = [
        o for o in _objects("overlays/us-east") if _key(o)[::2] == ("Deployment", "inference")
    ]
    deployment["spec"]["replica"] = 3
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, SCHEMA_VERSION, strict=True)


@pytest.mark.parametrize("region", REGIONS)
def test_a_region_overlay_holds_one_region(region: str) -> None:
    objects = _objects(f"overlays/{region}")
    namespace = f"gameday-{region}"
    assert {o["metadata"].get("namespace", namespace) for o in objects} == {namespace}
    assert ("Namespace", "", namespace) in {_key(o) for o in objects}
    for obj in objects:
        assert obj["metadata"]["labels"]["gameday.dev/region"] == region, _key(obj)
    config = next(o for o in objects if o["metadata"]["name"] == "inference-config")
    assert yaml.safe_load(config["data"]["service.json"])["region"] == region


@pytest.mark.parametrize("name", BUILDS)
def test_selectors_match_the_pods_they_mean(name: str) -> None:
    objects = _objects(name)
    templates = [labels for obj in objects for labels, _ in _pod_specs(obj)]
    for obj in objects:
        if obj["kind"] in WORKLOADS:
            selector = obj["spec"]["selector"]["matchLabels"]
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), _key(obj)
        if obj["kind"] == "Service":
            selector = obj["spec"]["selector"]
            matched = [t for t in templates if selector.items() <= t.items()]
            assert len(matched) == 1, f"{_key(obj)} selects {len(matched)} pod templates"
            ports = {
                p["name"]
                for obj2 in objects
                for labels, spec in _pod_specs(obj2)
                if labels is matched[0]
                for c in spec["containers"]
                for p in c.get("ports", [])
            }
            for port in obj["spec"]["ports"]:
                assert port["targetPort"] in ports, (_key(obj), port)


@pytest.mark.parametrize("name", BUILDS)
def test_names_are_valid(name: str) -> None:
    for obj in _objects(name):
        meta_name = obj["metadata"]["name"]
        assert SUBDOMAIN.match(meta_name) and len(meta_name) <= 253, _key(obj)
        if obj["kind"] in ("Service", "Namespace"):
            assert DNS1035.match(meta_name), _key(obj)
        for _, spec in _pod_specs(obj):
            for container in spec.get("initContainers", []) + spec["containers"]:
                assert LABEL.match(container["name"]), (_key(obj), container["name"])
                for port in container.get("ports", []):
                    assert PORT_NAME.match(port["name"]), (_key(obj), port["name"])
                    assert port.get("protocol", "TCP") in ("TCP", "UDP", "SCTP")
            volumes = {v["name"] for v in spec.get("volumes", [])}
            for container in spec.get("initContainers", []) + spec["containers"]:
                for mount in container.get("volumeMounts", []):
                    assert mount["name"] in volumes, (_key(obj), mount["name"])


def test_config_maps_and_claims_that_pods_use_exist() -> None:
    for name in BUILDS:
        objects = _objects(name)
        present = {(o["kind"], o["metadata"]["name"]) for o in objects}
        for obj in objects:
            for _, spec in _pod_specs(obj):
                for volume in spec.get("volumes", []):
                    if "configMap" in volume:
                        assert ("ConfigMap", volume["configMap"]["name"]) in present
                    if "persistentVolumeClaim" in volume:
                        claim = volume["persistentVolumeClaim"]["claimName"]
                        assert ("PersistentVolumeClaim", claim) in present
                if "serviceAccountName" in spec:
                    assert ("ServiceAccount", spec["serviceAccountName"]) in present


def test_the_renderer_refuses_what_it_does_not_support(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: []\nconfigMapGenerator: []\n")
    with pytest.raises(KustomizeError, match="configMapGenerator"):
        build(tmp_path)


# kubectl never needs a cluster here: an empty kubeconfig keeps it from reaching one.
_NO_CLUSTER = {**os.environ, "KUBECONFIG": os.devnull}


def _kubectl_kustomize() -> str | None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    done = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
        env=_NO_CLUSTER,
    )
    version = (yaml.safe_load(done.stdout or "{}") or {}).get("kustomizeVersion", "v0")
    return kubectl if int(version.lstrip("v").split(".")[0] or 0) >= 5 else None


@pytest.mark.skipif(_kubectl_kustomize() is None, reason="no kubectl with kustomize v5 here")
@pytest.mark.parametrize("name", BUILDS)
def test_the_renderer_agrees_with_kubectl_kustomize(name: str) -> None:
    kubectl = _kubectl_kustomize()
    assert kubectl
    done = subprocess.run(
        [kubectl, "kustomize", str(MANIFESTS / name)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env=_NO_CLUSTER,
    )
    theirs = sorted((d for d in yaml.safe_load_all(done.stdout) if d), key=_key)
    ours = sorted(_objects(name), key=_key)
    assert [_key(o) for o in ours] == [_key(o) for o in theirs]
    for mine, kubectls in zip(ours, theirs, strict=True):
        assert mine == kubectls, _key(mine)


# --------------------------------------------------------------------------- platform files
def _platform_files() -> list[tuple[str, dict[str, Any]]]:
    cronjob = next(o for o in _objects("global") if o["metadata"]["name"] == "gameday-platform")
    return [
        ("platform.example.yaml", yaml.safe_load(EXAMPLE.read_text())),
        ("cronjob platform.yaml", yaml.safe_load(cronjob["data"]["platform.yaml"])),
    ]


@pytest.mark.parametrize(("label", "doc"), _platform_files(), ids=["example", "cronjob"])
def test_the_platform_files_name_what_the_manifests_deploy(label: str, doc: dict[str, Any]) -> None:
    target = validate(doc, Path(label))
    assert sorted(target.regions) == sorted(REGIONS)
    for region, section in target.regions.items():
        objects = _objects(f"overlays/{region}")
        assert section.namespace == f"gameday-{region}"
        workloads = {
            (o["kind"], o["metadata"]["name"]): o for o in objects if o["kind"] in WORKLOADS
        }
        for kind, names in (
            ("Deployment", section.deployments),
            ("StatefulSet", section.statefulsets),
        ):
            for name in names:
                assert (kind, name) in workloads, (region, kind, name)
        # The region selector takes every pod of the region's workloads and no other.
        for obj in workloads.values():
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert section.selector.items() <= labels.items(), (region, _key(obj))
        for what, damage in section.replicas.items():
            matched = [
                o
                for o in workloads.values()
                if damage.selector.items() <= o["spec"]["template"]["metadata"]["labels"].items()
            ]
            assert len(matched) == 1, (region, what)
            containers = [c["name"] for c in matched[0]["spec"]["template"]["spec"]["containers"]]
            assert damage.container in containers, (region, what)


def test_the_example_platform_file_loads() -> None:
    assert load(EXAMPLE).allow.contexts == ["kind-gameday"]


# --------------------------------------------------------------------------- experiments
def test_there_is_a_kubernetes_experiment_per_catalog_drill() -> None:
    assert [p.stem for p in EXPERIMENTS] == [
        "network-partition",
        "region-kill",
        "replica-corruption",
    ]


def test_the_kubernetes_experiments_are_not_local_drills() -> None:
    # They need a cluster: the local catalog's listing must not offer them.
    assert not {p.stem for p in EXPERIMENTS} & {f"kubernetes/{n}" for n in catalog.names()}
    assert all("/" not in n and "kubernetes" not in n for n in catalog.names())


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_chaos_validate_accepts_the_kubernetes_experiment(path: Path) -> None:
    chaos = Path(sys.executable).with_name("chaos")
    done = subprocess.run(
        [str(chaos), "validate", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_the_kubernetes_experiment_targets_regions_of_the_example_platform(path: Path) -> None:
    experiment = catalog.load(path)
    assert experiment["configuration"]["gameday_platform"] == "kubernetes"
    regions = set(load(EXAMPLE).regions)
    named: set[str] = set()
    for action in experiment["method"]:
        args = action["provider"].get("arguments", {})
        for key in ("region", "side_a", "side_b"):
            if key in args:
                named.update(args[key].split(","))
    assert named and named <= regions
    assert [r["provider"]["func"] for r in experiment["rollbacks"]] == ["revert_all"]
