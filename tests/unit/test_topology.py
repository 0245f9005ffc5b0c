from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.errors import ConfigError
from infra.local.topology import DEFAULT_TOPOLOGY, load_topology, parse_topology


def _regions(*specs: tuple[str, str, str, str]) -> dict[str, object]:
    return {
        "regions": [
            dict(zip(("name", "provider", "jurisdiction", "role"), s, strict=True)) for s in specs
        ]
    }


def test_default_topology_has_two_jurisdictions_two_providers() -> None:
    topology = load_topology(DEFAULT_TOPOLOGY)
    assert [r.name for r in topology.regions] == ["us-east", "us-west", "eu-west", "eu-central"]
    assert topology.jurisdictions == ("us", "eu")
    assert topology.initial_primary("us").name == "us-east"
    assert topology.initial_primary("eu").name == "eu-west"
    assert {r.provider for r in topology.regions} == {"aws", "gcp"}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param([], "expected a mapping with a 'regions' list", id="not-a-mapping"),
        pytest.param({"regions": "x"}, "'regions' must be a list", id="regions-not-list"),
        pytest.param(_regions(("a1", "aws", "us", "primary")), "between 2 and 8", id="too-few"),
        pytest.param(
            _regions(*[(f"r{i}", "aws", "us", "replica") for i in range(9)]),
            "between 2 and 8",
            id="too-many",
        ),
        pytest.param(
            _regions(("us-east", "aws", "us", "primary"), ("us-east", "gcp", "us", "replica")),
            "declared twice",
            id="duplicate",
        ),
        pytest.param(
            _regions(("us-east", "aws", "us", "primary"), ("us-west", "gcp", "us", "primary")),
            "has 2 primaries",
            id="two-primaries",
        ),
        pytest.param(
            _regions(("us-east", "aws", "us", "replica"), ("us-west", "gcp", "us", "replica")),
            "has 0 primaries",
            id="no-primary",
        ),
        pytest.param(
            _regions(("US_EAST", "aws", "us", "primary"), ("us-west", "gcp", "us", "replica")),
            "regions[0].name",
            id="bad-name",
        ),
        pytest.param(
            _regions(("edge", "aws", "us", "primary"), ("us-west", "gcp", "us", "replica")),
            "not a valid region name",
            id="reserved-name",
        ),
        pytest.param(
            _regions(("us-east", "aws", "us", "leader"), ("us-west", "gcp", "us", "replica")),
            "regions[0].role",
            id="bad-role",
        ),
        pytest.param(
            {
                "regions": [
                    {"name": "us-east", "provider": "aws", "jurisdiction": "us"},
                    {"name": "b1", "provider": "a", "jurisdiction": "us", "role": "primary"},
                ]
            },
            "regions[0].role: required",
            id="missing-field",
        ),
        pytest.param(
            {
                "regions": [
                    {
                        "name": "us-east",
                        "provider": "aws",
                        "jurisdiction": "us",
                        "role": "primary",
                        "zone": "a",
                    },
                    {"name": "b1", "provider": "a", "jurisdiction": "us", "role": "replica"},
                ]
            },
            "unknown field 'zone'",
            id="unknown-field",
        ),
    ],
)
def test_malformed_topologies_name_the_field(doc: object, message: str) -> None:
    with pytest.raises(ConfigError, match=r"x\.yaml") as info:
        parse_topology(doc, source="x.yaml")
    assert message in str(info.value)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read topology"):
        load_topology(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("regions: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_topology(bad)


def test_eight_regions_three_jurisdictions(tmp_path: Path) -> None:
    specs = [
        (f"r{i}", "aws", "abc"[i % 3] * 2, "primary" if i < 3 else "replica") for i in range(8)
    ]
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(_regions(*specs)))
    topology = load_topology(path)
    assert topology.jurisdictions == ("aa", "bb", "cc")
    assert len(topology.in_jurisdiction("aa")) == 3
    with pytest.raises(KeyError, match="unknown region 'nope'"):
        topology.region("nope")
