"""The aws driver against moto on 127.0.0.1: each fault, then its revert, checked by state.

moto keeps state only (no traffic, no health checks, no replication): these tests prove
what the actions do to the estate, never a recovery time. See docs/aws.md.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra import actions
from infra.aws import actions as aws_actions
from infra.aws import driver, kill, state
from infra.errors import ConfigError, FaultError, UnsupportedFault
from infra.types import read_events
from tests.integration import aws_emulator as em

REPO = Path(__file__).resolve().parents[2]
CHAOS = Path(sys.executable).with_name("chaos")

pytestmark = [
    pytest.mark.emulator,
    pytest.mark.skipif(
        shutil.which("moto_server", path=str(Path(sys.executable).parent)) is None,
        reason="moto[server] is not installed (pip install -e '.[dev]')",
    ),
]


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[em.Moto]:
    with em.moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@dataclass
class World:
    """The estate, the configuration an experiment would pass, and the server."""

    moto: em.Moto
    estate: dict[str, em.RegionEstate]
    configuration: dict[str, Any]
    platform: Path
    events: Path

    def client(self, service: str, region: str) -> Any:
        import boto3

        aws_region = self.estate[region].aws_region
        return boto3.client(service, region_name=aws_region, endpoint_url=self.moto.endpoint)

    # ----------------------------------------------------------------- what the estate is
    def acl_of(self, region: str, subnet: str) -> str:
        acls = self.client("ec2", region).describe_network_acls(
            Filters=[{"Name": "association.subnet-id", "Values": [subnet]}]
        )["NetworkAcls"]
        return str(acls[0]["NetworkAclId"])

    def acl_entries(self, region: str, acl: str) -> list[tuple[int, bool, str, str]]:
        found = self.client("ec2", region).describe_network_acls(NetworkAclIds=[acl])
        return sorted(
            (e["RuleNumber"], e["Egress"], e["RuleAction"], e.get("CidrBlock", ""))
            for e in found["NetworkAcls"][0]["Entries"]
        )

    def instance_state(self, region: str, instance: str) -> str:
        found = self.client("ec2", region).describe_instances(InstanceIds=[instance])
        return str(found["Reservations"][0]["Instances"][0]["State"]["Name"])

    def registered(self, region: str) -> set[str]:
        health = self.client("elbv2", region).describe_target_health(
            TargetGroupArn=self.estate[region].target_group_arn
        )
        return {t["Target"]["Id"] for t in health["TargetHealthDescriptions"]}

    def suspended(self, region: str) -> set[str]:
        groups = self.client("autoscaling", region).describe_auto_scaling_groups(
            AutoScalingGroupNames=[self.estate[region].asg]
        )["AutoScalingGroups"]
        return {p["ProcessName"] for p in groups[0]["SuspendedProcesses"]}

    def writer(self, region: str) -> str:
        cluster = self.client("rds", region).describe_db_clusters(
            DBClusterIdentifier=self.estate[region].cluster
        )["DBClusters"][0]
        return next(
            str(m["DBInstanceIdentifier"])
            for m in cluster["DBClusterMembers"]
            if m["IsClusterWriter"]
        )

    def acl_count(self, region: str) -> int:
        return len(self.client("ec2", region).describe_network_acls()["NetworkAcls"])

    def snapshot(self) -> dict[str, Any]:
        """Everything a fault may change, per region (compare before and after)."""
        shot: dict[str, Any] = {}
        for name, e in self.estate.items():
            subnets = [*e.subnets.values(), e.bystander_subnet]
            acls = {s: self.acl_of(name, s) for s in subnets}
            shot[name] = {
                "acls": acls,
                "entries": {a: self.acl_entries(name, a) for a in set(acls.values())},
                "acl_count": self.acl_count(name),
                "instances": {
                    i: self.instance_state(name, i)
                    for i in [*e.instances.values(), e.bystander_instance]
                },
                "registered": self.registered(name),
                "suspended": self.suspended(name),
                "writer": self.writer(name),
            }
        return shot

    def mutating_calls(self) -> list[tuple[str, str]]:
        reads = ("Describe", "Get", "List")
        return [(s, a) for s, a in self.moto.calls() if not a.startswith(reads)]


@pytest.fixture
def world(moto: em.Moto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    moto.reset()
    for key in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in em.FAKE_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", em.loopback_only(moto.endpoint))
    monkeypatch.delenv("GAMEDAY_EVENTS", raising=False)
    estate = {name: em.build_region(name, moto.endpoint) for name in em.REGIONS}
    platform = em.write_platform(tmp_path / "platform.yaml", em.platform_doc(estate))
    events = tmp_path / "run" / "events.jsonl"
    configuration = {
        "gameday_platform": "aws",
        "gameday_platform_file": str(platform),
        "gameday_events": str(events),
    }
    moto.post("/moto-api/recorder/reset-recording")
    return World(moto, estate, configuration, platform, events)


# --------------------------------------------------------------------------- the guard
@pytest.mark.parametrize(
    ("url", "ok"),
    [
        pytest.param("http://127.0.0.1:5000", True, id="loopback"),
        pytest.param("http://[::1]:5000", True, id="loopback-v6"),
        pytest.param("https://ec2.us-east-1.cloud.invalid", False, id="cloud-shaped"),
        pytest.param("http://10.0.0.5:5000", False, id="private"),
        pytest.param("http://localhost.example.com:5000", False, id="lookalike"),
    ],
)
def test_emulator_guard_refuses_non_loopback_endpoints(url: str, ok: bool) -> None:
    if ok:
        assert em.loopback_only(url) == url
    else:
        with pytest.raises(RuntimeError, match=r"only talk to 127\.0\.0\.1"):
            em.loopback_only(url)


# --------------------------------------------------------------------------- kill
def test_emulator_kill_region_then_restore(world: World) -> None:
    before = world.snapshot()
    east = world.estate["us-east"]

    record = actions.kill_region("us-east", configuration=world.configuration)

    blackhole = str(record["details"]["blackhole_acl"])
    assert record["fault"] == "kill-region" and record["target"] == "us-east"
    for subnet in east.subnets.values():
        assert world.acl_of("us-east", subnet) == blackhole
    assert (
        world.acl_of("us-east", east.bystander_subnet)
        == before["us-east"]["acls"][east.bystander_subnet]
    )
    assert world.acl_entries("us-east", blackhole) == [
        (1, False, "deny", "0.0.0.0/0"),
        (1, True, "deny", "0.0.0.0/0"),
    ]
    assert {world.instance_state("us-east", i) for i in east.instances.values()} == {"stopped"}
    assert world.instance_state("us-east", east.bystander_instance) == "running"
    assert world.registered("us-east") == {east.bystander_instance}
    assert world.suspended("us-east") == {"ScheduledActions", *driver.SUSPENDED_PROCESSES}
    assert world.snapshot()["us-west"] == before["us-west"]
    assert sorted(record["details"]["instances"]) == sorted(east.instances.values())

    revert = actions.restore_region("us-east", configuration=world.configuration)

    assert revert["details"]["fault_ids"] == [record["id"]]
    assert world.snapshot() == before  # the blackhole ACL is gone too (acl_count)
    assert [(r.type, r.fault, r.target) for r in read_events(world.events)] == [
        ("fault", "kill-region", "us-east"),
        ("revert", "kill-region", "us-east"),
    ]
    assert json.loads((world.events.parent / "aws-state.json").read_text())["active"] == []


def test_emulator_kill_zone_touches_only_that_zone(world: World) -> None:
    before = world.snapshot()
    east = world.estate["us-east"]

    # chaosaws's aws_region is experiment-wide; each call must use the platform file's.
    elsewhere = {**world.configuration, "aws_region": "eu-central-1"}
    record = aws_actions.kill_zone("us-east", "us-east-1a", configuration=elsewhere)

    assert record["target"] == "us-east/us-east-1a"
    blackhole = str(record["details"]["blackhole_acl"])
    assert world.acl_of("us-east", east.subnets["us-east-1a"]) == blackhole
    assert world.acl_of("us-east", east.subnets["us-east-1b"]) != blackhole
    assert world.instance_state("us-east", east.instances["us-east-1a"]) == "stopped"
    assert world.instance_state("us-east", east.instances["us-east-1b"]) == "running"
    assert world.registered("us-east") == {east.instances["us-east-1b"], east.bystander_instance}

    aws_actions.restore_zone("us-east", "us-east-1a", configuration=elsewhere)

    assert world.snapshot() == before


def test_emulator_second_kill_of_a_killed_region_is_refused(world: World) -> None:
    actions.kill_region("us-east", configuration=world.configuration)
    with pytest.raises(Exception, match="already has a kill applied"):
        aws_actions.kill_zone("us-east", "us-east-1b", configuration=world.configuration)
    actions.revert_all(configuration=world.configuration)


def test_emulator_a_kill_that_fails_half_way_is_recorded_and_reverted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = world.snapshot()
    east = world.estate["us-east"]
    stop = kill._stop

    def stop_then_lose_the_target_group(*args: Any, **kwargs: Any) -> None:
        stop(*args, **kwargs)
        # Someone deletes the target group mid-drill: the deregistration step fails.
        elb = world.client("elbv2", "us-east")
        balancer = elb.describe_load_balancers(Names=[east.asg])["LoadBalancers"][0]
        for listener in elb.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])[
            "Listeners"
        ]:
            elb.delete_listener(ListenerArn=listener["ListenerArn"])
        elb.delete_target_group(TargetGroupArn=east.target_group_arn)

    monkeypatch.setattr(kill, "_stop", stop_then_lose_the_target_group)

    with pytest.raises(FaultError, match="deregister"):
        actions.kill_region("us-east", configuration=world.configuration)

    (record,) = read_events(world.events)
    assert record.type == "fault" and record.applied_at is not None
    assert "TargetGroupNotFound" in str(record.details["incomplete"])
    instances = record.details["instances"]
    assert isinstance(instances, list)
    assert sorted(map(str, instances)) == sorted(east.instances.values())
    assert {world.instance_state("us-east", i) for i in east.instances.values()} == {"stopped"}

    result = actions.revert_all(configuration=world.configuration)

    assert result["errors"] == []
    for subnet, acl in before["us-east"]["acls"].items():
        assert world.acl_of("us-east", subnet) == acl
    assert world.acl_count("us-east") == before["us-east"]["acl_count"]
    for instance, was in before["us-east"]["instances"].items():
        assert world.instance_state("us-east", instance) == was
    assert world.suspended("us-east") == before["us-east"]["suspended"]
    assert state.load(world.events.parent / "aws-state.json") == []


def test_emulator_a_revert_that_fails_half_way_resumes_where_it_stopped(world: World) -> None:
    before = world.snapshot()
    east = world.estate["us-east"]
    actions.kill_region("us-east", configuration=world.configuration)
    asg = world.client("autoscaling", "us-east")
    asg.delete_auto_scaling_group(AutoScalingGroupName=east.asg, ForceDelete=True)

    result = actions.revert_all(configuration=world.configuration)

    assert result["records"] == []
    assert len(result["errors"]) == 1 and east.asg in result["errors"][0]
    (left,) = state.load(world.events.parent / "aws-state.json")
    assert (left.associations, left.blackhole_acl, left.instances, left.targets) == (
        [],
        None,
        [],
        [],
    )
    assert [s.name for s in left.suspensions] == [east.asg]
    for subnet, acl in before["us-east"]["acls"].items():
        assert world.acl_of("us-east", subnet) == acl
    assert {world.instance_state("us-east", i) for i in east.instances.values()} == {"running"}
    assert world.registered("us-east") == before["us-east"]["registered"]

    # The operator brings the group back; the retry does only what is left.
    asg.create_auto_scaling_group(
        AutoScalingGroupName=east.asg,
        LaunchTemplate={"LaunchTemplateName": east.asg},
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=0,
        VPCZoneIdentifier=",".join(east.subnets.values()),
    )
    world.moto.post("/moto-api/recorder/reset-recording")
    result = actions.revert_all(configuration=world.configuration)

    assert result["errors"] == []
    assert [(r["fault"], r["target"]) for r in result["records"]] == [("kill-region", "us-east")]
    assert [c for c in world.mutating_calls() if c[0] != "autoscaling"] == []
    assert state.load(world.events.parent / "aws-state.json") == []


# --------------------------------------------------------------------------- partition
def test_emulator_partition_then_heal(world: World) -> None:
    before = world.snapshot()
    east, west = world.estate["us-east"], world.estate["us-west"]

    record = actions.partition_regions("us-east", "us-west", configuration=world.configuration)

    assert record["target"] == "us-east|us-west"
    for name, other in (("us-east", west), ("us-west", east)):
        acl = world.acl_of(name, world.estate[name].subnets[f"{world.estate[name].aws_region}a"])
        denies = [e for e in world.acl_entries(name, acl) if e[2] == "deny" and e[3] == other.cidr]
        assert [(egress, cidr) for _, egress, _, cidr in denies] == [
            (False, other.cidr),
            (True, other.cidr),
        ]
        assert all(number < 100 for number, *_ in denies)  # ahead of the default allow rule

    with pytest.raises(UnsupportedFault, match="both directions"):
        actions.partition_regions(
            "us-east", "us-west", direction="a-to-b", configuration=world.configuration
        )

    actions.heal_partition(configuration=world.configuration)

    assert world.snapshot() == before


# --------------------------------------------------------------------------- database
def test_emulator_database_failover_then_failback(world: World) -> None:
    east = world.estate["us-east"]
    assert world.writer("us-east") == east.cluster_writer

    record = aws_actions.failover_database("us-east", configuration=world.configuration)

    assert record["details"]["clusters"] == {
        east.cluster: {"writer": east.cluster_writer, "promoted": east.cluster_reader}
    }
    assert world.writer("us-east") == east.cluster_reader
    assert world.writer("us-west") == world.estate["us-west"].cluster_writer

    aws_actions.failback_database("us-east", configuration=world.configuration)

    assert world.writer("us-east") == east.cluster_writer


def test_emulator_revert_all_undoes_every_fault_newest_first(world: World) -> None:
    before = world.snapshot()
    actions.kill_region("us-west", configuration=world.configuration)
    actions.partition_regions("us-east", "us-west", configuration=world.configuration)
    aws_actions.failover_database("us-east", configuration=world.configuration)

    result = actions.revert_all(configuration=world.configuration)

    assert result["errors"] == []
    assert [(r["fault"], r["target"]) for r in result["records"]] == [
        ("failover-database", "us-east"),
        ("partition", "us-east|us-west"),
        ("kill-region", "us-west"),
    ]
    assert world.snapshot() == before
    assert actions.revert_all(configuration=world.configuration)["records"] == []


# --------------------------------------------------------------------------- safety
def _platform_with(world: World, change: str) -> None:
    doc = em.platform_doc(world.estate)
    if change == "wrong-account":
        doc["allow"]["aws"]["account_id"] = "999999999999"
    elif change == "unlisted-region":
        doc["allow"]["aws"]["regions"] = ["us-west-2"]
    elif change == "empty-filter":
        doc["regions"]["us-east"]["aws"]["tags"] = {}
    elif change == "filter-matching-nothing":
        doc["regions"]["us-east"]["aws"]["tags"] = {em.TAG: "nowhere"}
    em.write_platform(world.platform, doc)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            "wrong-account", "account '123456789012', not '999999999999'", id="wrong-account"
        ),
        pytest.param(
            "unlisted-region", "'us-east-1' is not in allow.aws.regions", id="unlisted-region"
        ),
        pytest.param(
            "empty-filter", "regions.us-east.aws.tags: an empty filter", id="empty-filter"
        ),
        pytest.param("filter-matching-nothing", "refusing a kill that hits nothing", id="no-match"),
    ],
)
def test_emulator_refuses_before_any_change(world: World, change: str, message: str) -> None:
    before = world.snapshot()
    world.moto.post("/moto-api/recorder/reset-recording")
    _platform_with(world, change)

    with pytest.raises(ConfigError, match=re.escape(message)) as err:
        actions.kill_region("us-east", configuration=world.configuration)

    assert str(world.platform) in str(err.value)
    assert world.mutating_calls() == []
    assert world.snapshot() == before
    assert not world.events.exists()


@pytest.mark.parametrize(
    ("field", "value", "act"),
    [
        pytest.param("target_groups", ["shop-nowhere"], "kill", id="target-group"),
        pytest.param("auto_scaling_groups", ["shop-nowhere"], "kill", id="asg"),
        pytest.param("db_clusters", ["shop-nowhere"], "failover", id="db-cluster"),
        pytest.param("vpc_id", "vpc-0000000000", "partition", id="vpc"),
    ],
)
def test_emulator_names_missing_from_the_estate_are_config_errors(
    world: World, field: str, value: Any, act: str
) -> None:
    before = world.snapshot()
    doc = em.platform_doc(world.estate)
    doc["regions"]["us-east"]["aws"][field] = value
    em.write_platform(world.platform, doc)
    world.moto.post("/moto-api/recorder/reset-recording")

    with pytest.raises(ConfigError) as err:
        if act == "kill":
            actions.kill_region("us-east", configuration=world.configuration)
        elif act == "failover":
            aws_actions.failover_database("us-east", configuration=world.configuration)
        else:
            actions.partition_regions("us-east", "us-west", configuration=world.configuration)

    assert str(err.value).startswith(f"{world.platform}: regions.us-east.aws.{field}: ")
    assert world.mutating_calls() == []
    assert world.snapshot() == before


def test_emulator_wrong_account_refuses_partition_and_failover(world: World) -> None:
    _platform_with(world, "wrong-account")
    with pytest.raises(ConfigError, match="999999999999"):
        actions.partition_regions("us-east", "us-west", configuration=world.configuration)
    with pytest.raises(ConfigError, match="999999999999"):
        aws_actions.failover_database("us-east", configuration=world.configuration)
    assert world.mutating_calls() == []


@pytest.mark.parametrize("op", sorted(driver.UNSUPPORTED))
def test_emulator_unsupported_ops_are_refused_clearly(world: World, op: str) -> None:
    with pytest.raises(UnsupportedFault, match=f"fault {op!r} is not supported by the aws driver"):
        driver.apply(op, {"region": "us-east"}, world.configuration)
    assert world.moto.calls() == []


def test_emulator_needs_the_platform_file_and_events(world: World) -> None:
    with pytest.raises(ConfigError, match="gameday_platform_file is required"):
        actions.kill_region("us-east", configuration={"gameday_platform": "aws"})
    with pytest.raises(ConfigError, match=r"gameday_events \(or \$GAMEDAY_EVENTS\) is required"):
        actions.kill_region(
            "us-east",
            configuration={**world.configuration, "gameday_events": ""},
        )
    assert world.moto.calls() == []


# --------------------------------------------------------------------------- plan
def test_emulator_plan_lists_the_blast_radius_read_only(world: World) -> None:
    east = world.estate["us-east"]
    # A plan needs no events file (gameday run --plan may have none yet).
    no_events = {k: v for k, v in world.configuration.items() if k != "gameday_events"}
    lines = driver.plan("kill-region", {"region": "us-east"}, no_events)

    text = "\n".join(lines)
    assert lines[0].startswith("aws account 123456789012: arn:aws:")
    for subnet in east.subnets.values():
        assert f"blackhole subnet {subnet}" in text
    for instance in east.instances.values():
        assert f"stop instance {instance}" in text
        assert f"deregister target {instance}:8080" in text
    assert east.bystander_subnet not in text and east.bystander_instance not in text
    assert "suspend Launch, HealthCheck, ReplaceUnhealthy, AZRebalance on shop-us-east" in text
    partition = driver.plan(
        "partition", {"side_a": ["us-east"], "side_b": ["us-west"]}, world.configuration
    )
    assert any(world.estate["us-west"].cidr in line for line in partition)
    failover = driver.plan("failover-database", {"region": "us-east"}, world.configuration)
    swap = f"{east.cluster_writer} -> {east.cluster_reader}"
    assert failover[1:] == [f"  fail over cluster {east.cluster} in us-east-1: {swap}"]
    assert driver.plan("revert-all", {}, no_events) == [
        "revert-all: no gameday_events configured, so no recorded fault to revert"
    ]
    assert driver.plan("revert-all", {}, world.configuration)[1:] == []
    assert world.mutating_calls() == []
    assert not world.events.exists()


# --------------------------------------------------------------------------- the IAM policy
def _policy_actions() -> set[str]:
    text = (REPO / "docs" / "aws.md").read_text(encoding="utf-8")
    block = re.search(r"```json\n(.*?)```", text, re.S)
    assert block, "docs/aws.md has no ```json IAM policy block"
    policy = json.loads(block.group(1))
    return {a for s in policy["Statement"] for a in s["Action"]}


# Tagging on create is authorised as ec2:CreateTags, though no CreateTags call is made.
_IMPLIED = {"ec2:CreateTags"}


def test_emulator_iam_policy_names_exactly_the_calls_the_driver_makes(world: World) -> None:
    driver.plan("kill-region", {"region": "us-east"}, world.configuration)
    driver.plan("partition", {"side_a": ["us-east"], "side_b": ["us-west"]}, world.configuration)
    driver.plan("failover-database", {"region": "us-east"}, world.configuration)
    actions.kill_region("us-east", configuration=world.configuration)
    actions.restore_region("us-east", configuration=world.configuration)
    aws_actions.kill_zone("us-west", "us-west-2b", configuration=world.configuration)
    actions.partition_regions("us-east", "us-west", configuration=world.configuration)
    aws_actions.failover_database("us-east", configuration=world.configuration)
    actions.revert_all(configuration=world.configuration)

    called = {f"{service}:{action}" for service, action in world.moto.calls()}

    assert called | _IMPLIED == _policy_actions()


# --------------------------------------------------------------------------- chaos run
def _chaos_run(world: World, tmp_path: Path, name: str, *extra: str) -> dict[str, Any]:
    journal = tmp_path / f"{name}-journal.json"
    env = {
        **os.environ,
        "GAMEDAY_PLATFORM_FILE": str(world.platform),
        "GAMEDAY_EVENTS": str(world.events),
        "GAMEDAY_TARGET_REGION": "us-east",
        "GAMEDAY_TARGET_ZONE": "us-east-1b",
        "GAMEDAY_PARTITION_A": "us-east",
        "GAMEDAY_PARTITION_B": "us-west",
    }
    command = [str(CHAOS), "--no-log-file", "run", "--journal-path", str(journal), *extra]
    subprocess.run(
        [*command, str(REPO / "experiments" / "aws" / f"{name}.yaml")],
        cwd=tmp_path,
        env=env,
        check=False,
        capture_output=True,
        timeout=180,
    )
    result: dict[str, Any] = json.loads(journal.read_text())
    return result


def _region_killed(world: World, before: dict[str, Any]) -> None:
    east = world.estate["us-east"]
    assert {world.instance_state("us-east", i) for i in east.instances.values()} == {"stopped"}
    assert world.registered("us-east") == {east.bystander_instance}
    for subnet in east.subnets.values():
        assert world.acl_of("us-east", subnet) != before["us-east"]["acls"][subnet]
    assert world.suspended("us-east") == {"ScheduledActions", *driver.SUSPENDED_PROCESSES}
    assert world.snapshot()["us-west"] == before["us-west"]


def _zone_killed(world: World, before: dict[str, Any]) -> None:
    east = world.estate["us-east"]
    assert world.instance_state("us-east", east.instances["us-east-1b"]) == "stopped"
    assert world.instance_state("us-east", east.instances["us-east-1a"]) == "running"
    assert world.registered("us-east") == {east.instances["us-east-1a"], east.bystander_instance}


def _partitioned(world: World, before: dict[str, Any]) -> None:
    for name, other in (("us-east", "us-west"), ("us-west", "us-east")):
        subnet = next(iter(world.estate[name].subnets.values()))
        entries = world.acl_entries(name, world.acl_of(name, subnet))
        cidr = world.estate[other].cidr
        assert [(egress, action) for _, egress, action, c in entries if c == cidr] == [
            (False, "deny"),
            (True, "deny"),
        ]


def _failed_over(world: World, before: dict[str, Any]) -> None:
    assert world.writer("us-east") == world.estate["us-east"].cluster_reader


@pytest.mark.parametrize(
    ("name", "fault", "during"),
    [
        pytest.param("region-kill", "kill-region", _region_killed, id="region-kill"),
        pytest.param("zone-kill", "kill-zone", _zone_killed, id="zone-kill"),
        pytest.param("partition", "partition", _partitioned, id="partition"),
        pytest.param("db-failover", "failover-database", _failed_over, id="db-failover"),
    ],
)
def test_emulator_aws_experiment_under_chaos_run(
    world: World, tmp_path: Path, name: str, fault: str, during: Any
) -> None:
    before = world.snapshot()

    # Without its rollback, the experiment leaves the fault in place to be checked.
    journal = _chaos_run(world, tmp_path, name, "--rollback-strategy", "never")

    assert journal["status"] == "completed", journal
    during(world, before)
    assert driver.plan("revert-all", {}, world.configuration)[1:] == [
        f"revert {fault} {journal['run'][0]['output']['target']} "
        f"(fault {journal['run'][0]['output']['id']})"
    ]

    # Run normally, it rolls back what it did: the estate is as it was.
    actions.revert_all(configuration=world.configuration)
    journal = _chaos_run(world, tmp_path, name)

    assert journal["status"] == "completed", journal
    assert [r["activity"]["name"] for r in journal["rollbacks"]] == ["revert-every-fault"]
    assert world.snapshot() == before
    assert [(r.type, r.fault) for r in read_events(world.events)] == [
        ("fault", fault),
        ("revert", fault),
    ] * 2
