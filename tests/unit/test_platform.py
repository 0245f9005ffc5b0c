"""The platform file: validation (errors name file and field) and what layers ask of it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.errors import ConfigError
from infra.local.describe import REFERENCE_PLATFORM, platform_document
from infra.local.topology import load_topology, parse_topology
from infra.platform import Platform, golden_scores, load_platform, parse_platform

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "infra" / "examples").glob("*.yaml"))


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(REFERENCE_PLATFORM.read_text())
    return copy.deepcopy(doc)


def _parse(doc: dict[str, Any]) -> Platform:
    return parse_platform(doc, Path("platform.yaml"))


@pytest.mark.parametrize("path", [REFERENCE_PLATFORM, *EXAMPLES], ids=lambda p: p.name)
def test_shipped_platform_files_are_valid(path: Path) -> None:
    platform = load_platform(path)
    assert platform.jurisdictions
    assert set(platform.region_jurisdictions()) == set(platform.regions)


def test_the_reference_platform_file_agrees_with_the_topology() -> None:
    platform = load_platform(REFERENCE_PLATFORM)
    topology = load_topology()
    assert platform.region_jurisdictions() == {r.name: r.jurisdiction for r in topology.regions}


def _set(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    *parents, last = dotted.split(".")
    node = doc
    for key in parents:
        node = node[key]
    node[last] = value
    return doc


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda d: _set(d, "colour", "blue"), r"platform\.yaml: colour: unknown field", id="top"
        ),
        pytest.param(
            lambda d: _set(d, "traffic.api.flavour", "x"),
            r"traffic\.api\.flavour: unknown field",
            id="nested-unknown-field",
        ),
        pytest.param(
            lambda d: _set(d, "jurisdictions.us.regions", ["us-east", "us-north"]),
            r"jurisdictions\.us\.regions: unknown region 'us-north'",
            id="unknown-region",
        ),
        pytest.param(
            lambda d: _set(d, "regions.us-west.jurisdiction", "eu"),
            r"regions\.us-west\.jurisdiction: 'eu' but jurisdictions\.us lists it",
            id="region-in-wrong-jurisdiction",
        ),
        pytest.param(
            lambda d: _set(d, "jurisdictions.eu.regions", ["eu-west", "eu-central", "us-west"]),
            r"'us-west' is already in jurisdiction 'us'",
            id="region-twice",
        ),
        pytest.param(
            lambda d: _set(d, "traffic.api", {"shape": "template", "path": "/score"}),
            r"traffic\.api: .*needs `score`",
            id="template-without-score",
        ),
        pytest.param(
            lambda d: _set(d, "traffic.api", {"shape": "oip-v2"}),
            r"traffic\.api: .*needs `model`",
            id="oip-without-model",
        ),
        pytest.param(
            lambda d: _set(d, "traffic.base_url", "http://prod.example.com"),
            r"traffic\.base_url: host of 'http://prod\.example\.com' is not in allow\.hosts",
            id="host-outside-allow-list",
        ),
        pytest.param(
            lambda d: _set(d, "driver", "mainframe"), r"driver: input should be", id="driver"
        ),
        pytest.param(
            lambda d: _set(d, "writes.readback", {"http": "/v1/events/{client}"}),
            r"writes\.readback: .*\{client\} and \{seq\}",
            id="readback-without-seq",
        ),
        pytest.param(
            lambda d: _set(d, "traffic.entities.template", "user-{n}"),
            r"traffic\.entities: .*needs both",
            id="entities-without-jurisdiction",
        ),
    ],
)
def test_a_bad_platform_file_names_the_file_and_the_field(change: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _parse(change(_doc()))


@pytest.mark.parametrize(
    ("driver", "message"),
    [
        ("kubernetes", r"platform\.yaml: regions\.us-east\.kubernetes: required for driver"),
        ("aws", r"platform\.yaml: allow\.aws: required \(the account_id and regions"),
    ],
)
def test_a_target_drivers_sections_are_checked_by_its_validator(driver: str, message: str) -> None:
    # The platform file keeps the driver sections opaque and hands them to
    # infra.<driver>.config.validate, whose error still names the file and the field.
    with pytest.raises(ConfigError, match=message):
        _parse(_set(_doc(), "driver", driver))


def test_not_yaml_and_not_a_mapping_are_errors(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text("version: [1\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: not valid YAML"):
        load_platform(bad)
    bad.write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: expected a mapping"):
        load_platform(bad)
    with pytest.raises(ConfigError, match="cannot read platform file"):
        load_platform(tmp_path / "absent.yaml")


def test_entity_ids_and_their_jurisdiction() -> None:
    doc = _set(_doc(), "traffic.entities", {"template": "cust-{jurisdiction}-{n}", "count": 5})
    platform = _parse(doc)
    assert platform.entity("eu", 3) == "cust-eu-3"
    assert platform.entity_jurisdiction("cust-eu-3") == "eu"
    assert platform.entity_jurisdiction("cust-apac-3") is None
    assert platform.entity_jurisdiction("eu-3") is None


def test_urls_per_jurisdiction_and_the_readback_url() -> None:
    doc = _doc()
    doc["traffic"]["urls"] = {"eu": "http://10.200.0.2:8081/"}
    doc["writes"]["readback"] = {"http": "/v1/events/{client}/{seq}"}
    platform = _parse(doc)
    assert platform.url_for("us") == "http://10.200.0.2:8080"
    assert platform.url_for("eu") == "http://10.200.0.2:8081"
    assert platform.readback_url("eu") == "http://10.200.0.2:8081/v1/events/{client}/{seq}"


def test_golden_scores_inline_and_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "golden.json").write_text('{"eu-1": 0.25}')
    doc = _doc()
    doc["canaries"] = {
        "file": "golden.json",
        "entities": [{"entity_id": "us-9", "jurisdiction": "us", "score": 0.5}],
    }
    platform = _parse(doc)
    assert golden_scores(platform, tmp_path / "platform.yaml") == {"us-9": 0.5, "eu-1": 0.25}
    (tmp_path / "golden.json").write_text('{"eu-1": "high"}')
    with pytest.raises(ConfigError, match=r"canaries\.file: .*entity id to score"):
        golden_scores(platform, tmp_path / "platform.yaml")


def test_the_reference_document_follows_a_three_jurisdiction_topology(tmp_path: Path) -> None:
    topology = parse_topology(
        {
            "regions": [
                {"name": f"{j}-{n}", "provider": "aws", "jurisdiction": j, "role": role}
                for j in ("us", "eu", "apac")
                for n, role in (("a", "primary"), ("b", "replica"))
            ]
        }
    )
    doc = platform_document(
        topology, router_url="http://127.0.0.1:18080", golden=tmp_path / "g.json", digest="d1"
    )
    platform = _parse(doc)
    assert list(platform.jurisdictions) == ["us", "eu", "apac"]
    assert platform.jurisdictions["apac"].regions == ["apac-a", "apac-b"]
    assert platform.traffic.base_url == "http://127.0.0.1:18080"
    assert "127.0.0.1" in platform.allow.hosts
    assert platform.model is not None and platform.model.digest == "d1"
