from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.errors import ConfigError
from infra.kubernetes.config import load, validate

SOURCE = Path("/etc/gameday/platform.yaml")
DOC: dict[str, Any] = {
    "version": 1,
    "name": "shop",
    "driver": "kubernetes",
    "jurisdictions": {"us": {"regions": ["us-east"]}, "eu": {"regions": ["eu-west"]}},
    "regions": {
        "us-east": {
            "jurisdiction": "us",
            "kubernetes": {
                "context": "kind-us",
                "namespace": "shop-us-east",
                "selector": {"gameday.dev/region": "us-east"},
                "deployments": ["inference"],
                "statefulsets": ["redis"],
            },
        },
        "eu-west": {
            "jurisdiction": "eu",
            "kubernetes": {
                "context": "kind-eu",
                "namespace": "shop-eu-west",
                "selector": {"gameday.dev/region": "eu-west"},
                "cidrs": ["10.20.0.0/16", "fd00::/64"],
                "replicas": {
                    "features": {
                        "selector": {"app.kubernetes.io/name": "redis"},
                        "container": "redis",
                        "command": ["redis-cli", "DEBUG", "SET-ACTIVE-EXPIRE", "0"],
                    }
                },
            },
            "aws": {"anything": "belongs to the aws driver"},
        },
    },
    "traffic": {"base_urls": ["https://shop.example"]},
    "prometheus": {"url": "http://127.0.0.1:9090"},
    "allow": {
        "hosts": ["https://shop.example"],
        "kubernetes": {
            "contexts": ["kind-us", "kind-eu"],
            "namespaces": ["shop-us-east", "shop-eu-west"],
        },
        "aws": {"account_id": "123456789012"},
    },
}


def _with(where: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    node = doc
    *path, last = where.split(".")
    for key in path:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return doc


def test_a_whole_platform_document_validates_and_other_sections_are_ignored() -> None:
    target = validate(DOC, SOURCE)
    assert target.source == "platform.yaml"
    assert sorted(target.regions) == ["eu-west", "us-east"]
    assert target.jurisdictions == {"us-east": "us", "eu-west": "eu"}
    us = target.region("us-east")
    assert (us.context, us.namespace, us.deployments, us.statefulsets) == (
        "kind-us",
        "shop-us-east",
        ["inference"],
        ["redis"],
    )
    assert us.replicas == {}
    eu = target.region("eu-west")
    assert eu.cidrs == ["10.20.0.0/16", "fd00::/64"]
    assert eu.replicas["features"].container == "redis"
    assert target.allow.servers == []


@pytest.mark.parametrize(
    ("where", "value", "error"),
    [
        pytest.param(
            "regions.us-east.kubernetes.selector",
            {},
            "platform.yaml: regions.us-east.kubernetes.selector: an empty selector would "
            "match every pod of the namespace",
            id="empty-selector",
        ),
        pytest.param(
            "regions.us-east.kubernetes.selector",
            {"gameday.dev/region": "us east"},
            "platform.yaml: regions.us-east.kubernetes.selector: label value 'us east' of "
            "'gameday.dev/region' is not a valid label value",
            id="bad-label-value",
        ),
        pytest.param(
            "regions.us-east.kubernetes.namespace",
            "Shop_US",
            "platform.yaml: regions.us-east.kubernetes.namespace: 'Shop_US' is not a valid "
            "namespace name (RFC 1123 label)",
            id="bad-namespace",
        ),
        pytest.param(
            "regions.us-east.kubernetes.deployments",
            ["inference", "inference"],
            "platform.yaml: regions.us-east.kubernetes.deployments: names are repeated: "
            "['inference', 'inference']",
            id="repeated-deployment",
        ),
        pytest.param(
            "regions.us-east.kubernetes.statefulsets",
            ["Redis"],
            "platform.yaml: regions.us-east.kubernetes.statefulsets: 'Redis' is not a valid "
            "Kubernetes object name",
            id="bad-statefulset-name",
        ),
        pytest.param(
            "regions.eu-west.kubernetes.cidrs",
            ["10.20.0.1/16"],
            "platform.yaml: regions.eu-west.kubernetes.cidrs: '10.20.0.1/16' is not a CIDR "
            "block: 10.20.0.1/16 has host bits set",
            id="bad-cidr",
        ),
        pytest.param(
            "regions.us-east.kubernetes.kontext",
            "kind-us",
            "platform.yaml: regions.us-east.kubernetes.kontext: Extra inputs are not permitted",
            id="unknown-field",
        ),
        pytest.param(
            "regions.us-east.kubernetes.context",
            KeyError,
            "platform.yaml: regions.us-east.kubernetes.context: Field required",
            id="missing-context",
        ),
        pytest.param(
            "regions.eu-west.kubernetes.replicas.features.command",
            [],
            "platform.yaml: regions.eu-west.kubernetes.replicas.features.command: List should "
            "have at least 1 item after validation, not 0",
            id="empty-command",
        ),
        pytest.param(
            "regions.eu-west.kubernetes.replicas.weights",
            {"selector": {"a": "b"}, "container": "c", "command": ["x"]},
            "platform.yaml: regions.eu-west.kubernetes.replicas.weights.[key]: Input should be "
            "'model' or 'features'",
            id="unknown-replica-kind",
        ),
        pytest.param(
            "regions.us-east.kubernetes",
            KeyError,
            "platform.yaml: regions.us-east.kubernetes: required for driver 'kubernetes'",
            id="missing-section",
        ),
        pytest.param(
            "regions.us-east.kubernetes",
            "kind-us",
            "platform.yaml: regions.us-east.kubernetes: Input should be a valid dictionary or "
            "instance of KubernetesRegion",
            id="section-not-a-mapping",
        ),
        pytest.param(
            "allow.kubernetes",
            KeyError,
            "platform.yaml: allow.kubernetes: required: the contexts and namespaces that may "
            "be touched",
            id="missing-allow",
        ),
        pytest.param(
            "allow.kubernetes.contexts",
            [],
            "platform.yaml: allow.kubernetes.contexts: List should have at least 1 item after "
            "validation, not 0",
            id="empty-allowed-contexts",
        ),
        pytest.param(
            "allow.kubernetes.namespaces",
            ["shop-us-east"],
            "platform.yaml: regions.eu-west.kubernetes.namespace: 'shop-eu-west' is not in "
            "allow.kubernetes.namespaces (shop-us-east)",
            id="namespace-not-allowed",
        ),
        pytest.param(
            "allow.kubernetes.contexts",
            ["kind-us"],
            "platform.yaml: regions.eu-west.kubernetes.context: 'kind-eu' is not in "
            "allow.kubernetes.contexts (kind-us)",
            id="context-not-allowed",
        ),
        pytest.param("regions", {}, "platform.yaml: regions: at least one region", id="no-regions"),
        pytest.param(
            "regions", ["us-east"], "platform.yaml: regions: expected a mapping", id="regions-list"
        ),
    ],
)
def test_a_bad_section_is_an_error_naming_file_and_field(
    where: str, value: Any, error: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        validate(_with(where, value), SOURCE)
    assert str(caught.value).startswith(error), str(caught.value)


def test_two_regions_in_one_namespace_are_refused() -> None:
    # They would share the deny-all policies: killing one would kill both.
    doc = _with("regions.eu-west.kubernetes.context", "kind-us")
    doc["regions"]["eu-west"]["kubernetes"]["namespace"] = "shop-us-east"
    with pytest.raises(ConfigError) as caught:
        validate(doc, SOURCE)
    assert str(caught.value) == (
        "platform.yaml: regions.eu-west.kubernetes.namespace: 'shop-us-east' in context "
        "'kind-us' is already region 'us-east''s"
    )


def test_an_unknown_region_names_the_known_ones() -> None:
    target = validate(DOC, SOURCE)
    with pytest.raises(ConfigError, match=r"unknown region 'ap-south' \(known: eu-west, us-east\)"):
        target.region("ap-south")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param("", "driver: None is not 'kubernetes'", id="empty-file"),
        pytest.param("regions: [\n", "not valid YAML", id="malformed-yaml"),
        pytest.param("driver: aws\n", "driver: 'aws' is not 'kubernetes'", id="other-driver"),
    ],
)
def test_load_refuses_empty_malformed_and_foreign_files(
    tmp_path: Path, text: str, error: str
) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=error):
        load(path)


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(DOC), encoding="utf-8")
    assert load(path).region("us-east").namespace == "shop-us-east"
    with pytest.raises(ConfigError, match="cannot read platform file"):
        load(tmp_path / "absent.yaml")
