"""The aws sections of a platform file, the driver's state file, the AWS experiments."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiments import catalog
from infra.actions import PLATFORMS
from infra.aws import config, state
from infra.aws.driver import UNSUPPORTED, apply, plan
from infra.errors import ConfigError, UnsupportedFault

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path("platform.yaml")

DOC: dict[str, Any] = {
    "version": 1,
    "name": "shop",
    "driver": "aws",
    "jurisdictions": {"us": {"regions": ["us-east", "us-west"]}},
    "regions": {
        "us-east": {
            "jurisdiction": "us",
            "aws": {
                "region": "us-east-1",
                "vpc_id": "vpc-0abc",
                "tags": {"gameday-region": "us-east"},
                "target_groups": ["shop-us-east"],
            },
            "kubernetes": {"context": "not-ours", "anything": [1, 2]},
        },
        "us-west": {"jurisdiction": "us"},
    },
    "traffic": {"base_url": "https://shop.example"},
    "canaries": [{"whatever": True}],
    "allow": {
        "hosts": ["https://shop.example"],
        "kubernetes": {"contexts": ["x"]},
        "aws": {"account_id": "012345678901", "regions": ["us-east-1", "us-west-2"]},
    },
}


def _doc(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(DOC)
    for dotted, value in changes.items():
        *path, last = dotted.split("__")
        node = doc
        for key in path:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return doc


def test_validate_reads_only_the_aws_sections() -> None:
    target = config.validate(DOC, SOURCE)

    assert target.allow.account_id == "012345678901"
    assert target.allow.regions == ("us-east-1", "us-west-2")
    assert list(target.regions) == ["us-east"]
    east = target.region("us-east")
    assert east.target_groups == ("shop-us-east",)
    assert east.auto_scaling_groups == () and east.db_clusters == ()
    assert east.filters() == [
        {"Name": "vpc-id", "Values": ["vpc-0abc"]},
        {"Name": "tag:gameday-region", "Values": ["us-east"]},
    ]


def test_unquoted_account_id_keeps_its_leading_zero(tmp_path: Path) -> None:
    text = yaml.safe_dump(DOC).replace("'012345678901'", "012345678901")
    path = tmp_path / "platform.yaml"
    path.write_text(text.replace("account_id: 012345678901", "account_id: 12345678901"))

    assert config.load(path).allow.account_id == "012345678901"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"driver": "kubernetes"}, "driver: 'kubernetes' is not 'aws'", id="driver"),
        pytest.param({"allow__aws": None}, "allow.aws: required", id="no-allow"),
        pytest.param(
            {"allow__aws__account_id": "1234"},
            "allow.aws.account_id: '1234' is not a 12-digit AWS account id",
            id="account",
        ),
        pytest.param(
            {"allow__aws__regions": []},
            "allow.aws.regions: at least one AWS region the drill may touch is required",
            id="no-regions",
        ),
        pytest.param(
            {"allow__aws__regions": ["us-west-2"]},
            "regions.us-east.aws.region: 'us-east-1' is not in allow.aws.regions (us-west-2)",
            id="unlisted-region",
        ),
        pytest.param(
            {"regions__us-east__aws__tags": {}},
            "regions.us-east.aws.tags: an empty filter would select every subnet and instance",
            id="empty-filter",
        ),
        pytest.param(
            {"regions__us-east__aws__tags": {"gameday-region": " "}},
            "regions.us-east.aws.tags: tag keys and values must be non-empty",
            id="blank-tag",
        ),
        pytest.param(
            {"regions__us-east__aws__region": "virginia"},
            "regions.us-east.aws.region: 'virginia' is not an AWS region name",
            id="region-name",
        ),
        pytest.param(
            {"regions__us-east__aws__vpc_id": "subnet-1"},
            "regions.us-east.aws.vpc_id: 'subnet-1' is not a VPC id",
            id="vpc-id",
        ),
        pytest.param(
            {"regions__us-east__aws__subnets": ["subnet-1"]},
            "regions.us-east.aws.subnets: extra inputs are not permitted",
            id="unknown-field",
        ),
        pytest.param(
            {"regions__us-east__aws": None}, "regions: no region has an aws section", id="none"
        ),
        pytest.param({"regions": ["us-east"]}, "regions: expected a mapping", id="regions-list"),
        pytest.param({"allow": "everything"}, "allow: expected a mapping", id="allow-str"),
    ],
)
def test_validate_names_file_and_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.validate(_doc(**changes), SOURCE)
    assert str(err.value).startswith(f"platform.yaml: {message}")


def test_unknown_region_names_the_known_ones() -> None:
    target = config.validate(DOC, SOURCE)
    with pytest.raises(
        ConfigError, match=r"no region 'us-west' with an aws section \(known: us-east\)"
    ):
        target.region("us-west")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("driver: [", "not valid YAML", id="yaml"),
        pytest.param("- a list", "expected a mapping at the top level", id="list"),
        pytest.param("", "expected a mapping at the top level", id="empty"),
    ],
)
def test_load_malformed_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        config.load(path)
    assert str(err.value).startswith(str(path))


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read platform file"):
        config.load(tmp_path / "nowhere.yaml")


# --------------------------------------------------------------------------- state file
def test_state_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "aws-state.json"
    assert state.load(path) == []
    fault = state.ActiveFault(
        id="f1", fault="kill-region", target="us-east", aws_region="us-east-1"
    )
    fault.instances = ["i-1"]
    fault.associations.append(
        state.Association(
            subnet_id="subnet-1", association_id="aclassoc-2", original_acl_id="acl-1"
        )
    )

    state.save(path, [fault])

    assert state.load(path) == [fault]
    assert not path.with_suffix(".tmp").exists()


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param('{"active": [{"id": "x"}]}', "active.0.fault", id="missing-field"),
        pytest.param('{"active": 3}', "active", id="not-a-list"),
        pytest.param("not json", "document", id="not-json"),
        pytest.param('{"active": [], "extra": 1}', "extra", id="unknown-field"),
    ],
)
def test_state_malformed_names_file_and_field(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "aws-state.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        state.load(path)
    assert str(err.value).startswith(f"{path}: {where}")


# --------------------------------------------------------------------------- the seam
def test_aws_is_a_platform_of_the_actions() -> None:
    assert "aws" in PLATFORMS


@pytest.mark.parametrize("op", [*sorted(UNSUPPORTED), "launch-missiles"])
def test_unsupported_ops_are_refused_before_reading_anything(op: str) -> None:
    with pytest.raises(UnsupportedFault, match=f"fault {op!r} is not supported by the aws driver"):
        apply(op, {}, {"gameday_platform": "aws"})
    with pytest.raises(UnsupportedFault):
        plan(op, {}, {})


# --------------------------------------------------------------------------- experiments
AWS_EXPERIMENTS = sorted((REPO / "experiments" / "aws").glob("*.yaml"))


@pytest.mark.parametrize("path", AWS_EXPERIMENTS, ids=[p.stem for p in AWS_EXPERIMENTS])
def test_aws_experiment_is_valid_and_targets_aws(path: Path) -> None:
    from chaoslib.experiment import ensure_experiment_is_valid
    from chaoslib.loader import load_experiment

    experiment = load_experiment(str(path))
    ensure_experiment_is_valid(experiment)
    assert experiment["configuration"]["gameday_platform"] == "aws"
    assert [r["provider"]["func"] for r in experiment["rollbacks"]] == ["revert_all"]


def test_aws_experiments_exist_and_are_not_local_drills() -> None:
    assert {p.stem for p in AWS_EXPERIMENTS} >= {
        "region-kill",
        "zone-kill",
        "partition",
        "db-failover",
    }
    assert "region-kill" in catalog.names()  # the local one, still a drill
    assert all(catalog.resolve(n).parent == catalog.CATALOG for n in catalog.names())
