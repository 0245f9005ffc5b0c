"""Fixtures for the Kubernetes contract tests: a fake API, its kubeconfig, a platform file."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes.config import kube_config

from tests.contract.kube_api import Cluster, FakeKubeAPI

REGIONS = {
    # region: (context, namespace, jurisdiction)
    "us-east": ("fake-us", "gameday-us-east", "us"),
    "us-west": ("fake-us", "gameday-us-west", "us"),
    "eu-west": ("fake-eu", "gameday-eu-west", "eu"),
}
CORRUPT_MODEL = ["sh", "-c", "printf corrupt | dd of=/models/model.skops bs=1 seek=64 conv=notrunc"]


def workload(kind: str, name: str, namespace: str, region: str, replicas: int) -> dict[str, Any]:
    """A Deployment or StatefulSet of the reference platform, as the manifests declare it."""
    labels = {"app.kubernetes.io/name": name, "gameday.dev/region": region}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": labels},
        "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": name, "image": f"gameday/{name}:0.1.0"}]},
        },
    }
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }


def seeded_cluster() -> Cluster:
    cluster = Cluster()
    for region, (_, namespace, _) in REGIONS.items():
        cluster.add(workload("Deployment", "inference", namespace, region, 3))
        cluster.add(workload("Deployment", "router", namespace, region, 2))
        cluster.add(workload("StatefulSet", "redis", namespace, region, 1))
    return cluster


def platform_doc(server: str) -> dict[str, Any]:
    regions: dict[str, Any] = {}
    for region, (context, namespace, jurisdiction) in REGIONS.items():
        section: dict[str, Any] = {
            "context": context,
            "namespace": namespace,
            "selector": {"gameday.dev/region": region},
            "deployments": ["inference", "router"],
            "statefulsets": ["redis"],
            "replicas": {
                "model": {
                    "selector": {"app.kubernetes.io/name": "inference"},
                    "container": "inference",
                    "command": CORRUPT_MODEL,
                }
            },
        }
        if region == "eu-west":
            section["cidrs"] = ["10.20.0.0/16"]
        regions[region] = {"jurisdiction": jurisdiction, "kubernetes": section}
    return {
        "version": 1,
        "name": "shop-inference",
        "driver": "kubernetes",
        "jurisdictions": {
            "us": {"regions": ["us-east", "us-west"]},
            "eu": {"regions": ["eu-west"]},
        },
        "regions": regions,
        # Sections of other owners are passed through untouched.
        "traffic": {"base_urls": ["http://127.0.0.1:1"]},
        "allow": {
            "hosts": ["http://127.0.0.1:1"],
            "kubernetes": {
                "contexts": ["fake-us", "fake-eu"],
                "namespaces": sorted(ns for _, ns, _ in REGIONS.values()),
                "servers": [server],
            },
        },
    }


def loopback_only(kubeconfig: Path) -> None:
    """Refuse a kubeconfig naming any server that is not on 127.0.0.1."""
    doc = yaml.safe_load(kubeconfig.read_text(encoding="utf-8"))
    for cluster in doc["clusters"]:
        host = urlsplit(cluster["cluster"]["server"]).hostname or ""
        assert ipaddress.ip_address(host).is_loopback, f"non-loopback API server {host!r}"


class Rig:
    """A fake API with its kubeconfig, a platform file and the configuration to use them."""

    def __init__(self, api: FakeKubeAPI, tmp: Path) -> None:
        self.api = api
        self.tmp = tmp
        self.kubeconfig = api.write_kubeconfig(
            tmp / "kubeconfig", {"fake-us": "default", "fake-eu": "default"}
        )
        loopback_only(self.kubeconfig)
        self.events = tmp / "run" / "events.jsonl"
        self.write_platform(platform_doc(api.url))

    def write_platform(self, doc: dict[str, Any]) -> Path:
        self.platform = self.tmp / "platform.yaml"
        self.platform.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return self.platform

    @property
    def configuration(self) -> dict[str, Any]:
        return {
            "gameday_platform": "kubernetes",
            "gameday_platform_file": str(self.platform),
            "gameday_events": str(self.events),
        }


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    api = FakeKubeAPI(seeded_cluster()).start()
    try:
        setup = Rig(api, tmp_path)
        monkeypatch.setenv("KUBECONFIG", str(setup.kubeconfig))
        # The client fixed its default kubeconfig path when first imported; a process
        # sets KUBECONFIG once, a test suite needs one kubeconfig per test.
        monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(setup.kubeconfig))
        monkeypatch.delenv("GAMEDAY_EVENTS", raising=False)
        monkeypatch.delenv("CHAOSTOOLKIT_IN_POD", raising=False)
        # The client must reach 127.0.0.1 directly, whatever proxy the shell sets.
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.delenv(var, raising=False)
        yield setup
    finally:
        api.stop()
