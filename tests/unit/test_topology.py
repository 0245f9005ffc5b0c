from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infra.errors import ConfigError
from infra.local.topology import DEFAULT_TOPOLOGY, load_topology, parse_topology
from infra.types import StoreSettings

REPO_TOPOLOGY_DIR = DEFAULT_TOPOLOGY.parent


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


GUARDED = REPO_TOPOLOGY_DIR / "topology-guarded.yaml"


def _with_groups(groups: object) -> dict[str, object]:
    doc = _regions(
        ("us-east", "aws", "us", "primary"),
        ("eu-west", "aws", "eu", "primary"),
        ("eu-central", "gcp", "eu", "replica"),
    )
    doc["data_groups"] = groups
    return doc


def test_the_guarded_topology_guards_only_the_eu_group() -> None:
    topology = load_topology(GUARDED)
    assert topology.regions == load_topology(DEFAULT_TOPOLOGY).regions
    assert topology.store_settings("eu") == StoreSettings(1, 2)
    assert topology.store_settings("us") is None
    assert load_topology(DEFAULT_TOPOLOGY).data_groups == ()
    assert StoreSettings(1, 2).as_redis() == {
        "min-replicas-to-write": 1,
        "min-replicas-max-lag": 2,
    }


def test_a_group_may_turn_the_guard_off_with_zero() -> None:
    groups = {"eu": {"min-replicas-to-write": 0, "min-replicas-max-lag": 10}}
    topology = parse_topology(_with_groups(groups), source="x.yaml")
    assert topology.data_groups == (("eu", StoreSettings(0, 10)),)


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        pytest.param([], "x.yaml: data_groups: expected a mapping", id="not-a-mapping"),
        pytest.param(
            {"apac": {"min-replicas-to-write": 1, "min-replicas-max-lag": 2}},
            "x.yaml: data_groups.apac: no region has jurisdiction 'apac' (jurisdictions: us, eu)",
            id="unknown-group",
        ),
        pytest.param(
            {"eu": 1}, "x.yaml: data_groups.eu: expected a mapping", id="group-not-mapping"
        ),
        pytest.param(
            {"eu": {"min-replicas-to-write": 1}},
            "x.yaml: data_groups.eu.min-replicas-max-lag: required, an integer (got None)",
            id="missing-lag",
        ),
        pytest.param(
            {"eu": {"min-replicas-to-write": "1", "min-replicas-max-lag": 2}},
            "x.yaml: data_groups.eu.min-replicas-to-write: required, an integer (got '1')",
            id="string-count",
        ),
        pytest.param(
            {"eu": {"min-replicas-to-write": True, "min-replicas-max-lag": 2}},
            "x.yaml: data_groups.eu.min-replicas-to-write: required, an integer (got True)",
            id="bool-count",
        ),
        pytest.param(
            {"eu": {"min-replicas-to-write": 2, "min-replicas-max-lag": 2}},
            "x.yaml: data_groups.eu.min-replicas-to-write: 2 must be between 0 and the "
            "group's 1 replica(s); more would refuse every write",
            id="more-than-the-replicas",
        ),
        pytest.param(
            {"us": {"min-replicas-to-write": 1, "min-replicas-max-lag": 2}},
            "x.yaml: data_groups.us.min-replicas-to-write: 1 must be between 0 and the "
            "group's 0 replica(s)",
            id="group-without-replicas",
        ),
        pytest.param(
            {"eu": {"min-replicas-to-write": 1, "min-replicas-max-lag": 0}},
            "x.yaml: data_groups.eu.min-replicas-max-lag: 0 must be at least 1 s",
            id="zero-lag",
        ),
        pytest.param(
            {"eu": {"min-replicas-to-write": 1, "min-replicas-max-lag": 2, "maxmemory": 1}},
            "x.yaml: data_groups.eu: unknown field 'maxmemory'",
            id="unknown-setting",
        ),
    ],
)
def test_bad_store_settings_name_file_and_field(groups: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_topology(_with_groups(groups), source="x.yaml")
    assert message in str(info.value)


def test_an_unknown_top_level_field_is_named() -> None:
    doc = _with_groups(None)
    doc["stores"] = {}
    with pytest.raises(ConfigError, match=r"x\.yaml: unknown field 'stores'"):
        parse_topology(doc, source="x.yaml")
