"""The aws driver: region, zone, partition and database faults on the user's AWS estate.

`apply(op, args, configuration, secrets)` is what `infra/actions.py` calls for
`gameday_platform: aws`; `plan(op, args, configuration)` says what an op would hit using
describe calls only. Both read the platform file named by `gameday_platform_file`.

Before anything that changes the estate, every op checks the caller's account (STS
GetCallerIdentity) and the AWS regions it would touch against `allow.aws`, and refuses
(ConfigError) a selection that matches nothing. Each change is saved to
`<events dir>/aws-state.json` as soon as it is made, and reverts undo exactly what was
recorded. chaosaws does the steps it has an action for (stop/start instances, suspend/
resume auto scaling processes, fail over a DB cluster); the others (network ACLs, the
targets of named instances) are boto3 calls on chaosaws's own client.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.aws import config as aws_config
from infra.aws import state
from infra.aws.config import AwsRegion, AwsTarget
from infra.errors import ConfigError, FaultError, UnsupportedFault
from infra.types import FaultRecord, JsonValue, append_event

__all__ = ["OPERATIONS", "SUSPENDED_PROCESSES", "UNSUPPORTED", "apply", "plan"]

# Launch and replacement would heal a killed region behind the drill's back;
# HealthCheck would mark its stopped instances unhealthy and have them terminated.
SUSPENDED_PROCESSES = ("Launch", "HealthCheck", "ReplaceUnhealthy", "AZRebalance")
STATE_FILE = "aws-state.json"
BLACKHOLE_TAG = "gameday-blackhole"
# NACL rules are evaluated lowest number first; deny entries must come before any allow.
FIRST_RULE = 1
LAST_RULE = 32766

Config = dict[str, Any]
Secrets = dict[str, Any] | None


@dataclass(frozen=True)
class _Run:
    """What one op works with: the platform, the configuration, where records go."""

    target: AwsTarget
    configuration: Config
    secrets: Secrets
    events: Path

    @property
    def state_path(self) -> Path:
        return self.events.parent / STATE_FILE

    def client(self, service: str, aws_region: str) -> Any:
        """A chaosaws client for one AWS region (chaosaws's region is experiment-wide)."""
        from chaosaws import aws_client

        return aws_client(service, self.per_region(aws_region), self.secrets)

    def per_region(self, aws_region: str) -> Config:
        return {**self.configuration, "aws_region": aws_region}


# ------------------------------------------------------------------------- the seam
def apply(
    op: str, args: dict[str, Any], configuration: Config | None, secrets: Secrets = None
) -> dict[str, Any]:
    """Apply or revert one fault; returns its record (revert-all: `{"records": [...]}`).

    ConfigError (exit 2) for a bad platform file, a target outside `allow.aws`, another
    account or a selection matching nothing, always before any change; UnsupportedFault
    for an op AWS has no counterpart of here; FaultError when AWS refuses a step.
    """
    _supported(op)
    run = _run(configuration or {}, secrets)
    return OPERATIONS[op](run, args)


def plan(op: str, args: dict[str, Any], configuration: Config | None) -> list[str]:
    """Human lines naming what `op` would hit (instances, subnets, targets...).

    Read-only: STS GetCallerIdentity and describe calls. Raises what `apply` would raise
    before its first change.
    """
    _supported(op)
    run = _run(configuration or {}, None)
    regions = _regions_of(run, op, args)
    lines = [f"aws account {run.target.allow.account_id}: {_identity(run, regions)}"]
    if op in ("kill-region", "kill-zone"):
        region, zone = _kill_args(run, op, args)
        lines += _plan_kill(run, region, zone)
    elif op == "partition":
        lines += _plan_partition(run, args)
    elif op == "failover-database":
        lines += _plan_failover(run, _region_arg(run, args))
    else:
        active = state.load(run.state_path)
        lines += [
            f"revert {a.fault} {a.target} (fault {a.id})" for a in _reverting(op, args, active)
        ]
    return lines


# ------------------------------------------------------------------------- setup
def _supported(op: str) -> None:
    if op in UNSUPPORTED:
        raise UnsupportedFault(
            f"fault {op!r} is not supported by the aws driver: {UNSUPPORTED[op]}"
        )
    if op not in OPERATIONS:
        raise UnsupportedFault(
            f"fault {op!r} is not supported by the aws driver "
            f"(supported: {', '.join(sorted(OPERATIONS))})"
        )


def _run(configuration: Config, secrets: Secrets) -> _Run:
    raw_file = configuration.get("gameday_platform_file")
    if not raw_file:
        raise ConfigError(
            "configuration gameday_platform_file is required for gameday_platform aws"
        )
    target = aws_config.load(Path(str(raw_file)))
    events = configuration.get("gameday_events") or os.environ.get("GAMEDAY_EVENTS")
    if not events:
        raise ConfigError(
            "configuration gameday_events (or $GAMEDAY_EVENTS) is required for the aws "
            "driver: its revert state is kept next to the events file"
        )
    return _Run(target, configuration, secrets, Path(str(events)))


def _region_arg(run: _Run, args: dict[str, Any], key: str = "region") -> str:
    name = args.get(key)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{key} is required: an action never targets everything")
    run.target.region(name.strip())
    return name.strip()


def _kill_args(run: _Run, op: str, args: dict[str, Any]) -> tuple[str, str | None]:
    region = _region_arg(run, args)
    if op == "kill-region":
        return region, None
    zone = str(args.get("zone") or "").strip()
    aws_region = run.target.region(region).region
    if not zone.startswith(aws_region) or len(zone) <= len(aws_region):
        raise ConfigError(f"zone {zone!r} is not an availability zone of {region!r} ({aws_region})")
    return region, zone


def _sides(run: _Run, args: dict[str, Any]) -> tuple[list[str], list[str]]:
    sides: list[list[str]] = []
    for key in ("side_a", "side_b"):
        names = args.get(key) or []
        if not names:
            raise ConfigError(f"{key} is required (region names)")
        if "edge" in names:
            raise UnsupportedFault(
                "the aws driver cannot partition the clients ('edge'): it has no address "
                "range for them; partition regions only"
            )
        sides.append([_region_arg(run, {"region": n}) for n in names])
    if set(sides[0]) & set(sides[1]):
        raise ConfigError(
            f"regions on both sides of the partition: {sorted(set(sides[0]) & set(sides[1]))}"
        )
    if args.get("direction", "both") != "both":
        raise UnsupportedFault(
            f"direction {args.get('direction')!r}: network ACLs are stateless, so the aws "
            "driver cuts both directions only ('both')"
        )
    return sides[0], sides[1]


def _regions_of(run: _Run, op: str, args: dict[str, Any]) -> list[str]:
    """The AWS regions `op` would touch (its target's; for reverts, what the state names)."""
    if op in ("kill-region", "kill-zone", "failover-database"):
        return [run.target.region(_region_arg(run, args)).region]
    if op == "partition":
        side_a, side_b = _sides(run, args)
        return sorted({run.target.region(n).region for n in side_a + side_b})
    active = state.load(run.state_path)
    touched = {a.aws_region for a in _reverting(op, args, active)}
    touched |= {e.aws_region for a in _reverting(op, args, active) for e in a.deny_entries}
    return sorted(touched) or [run.target.allow.regions[0]]


def _identity(run: _Run, aws_regions: list[str]) -> str:
    """Check the caller's account and the regions against `allow.aws`; the caller's ARN.

    Called before the first change of every op: another account or an unlisted region
    is refused here, so nothing is touched.
    """
    allow = run.target.allow
    for aws_region in aws_regions:
        if aws_region not in allow.regions:
            raise ConfigError(
                f"{run.target.source}: allow.aws.regions: {aws_region!r} is not listed "
                f"({', '.join(allow.regions)}); refusing to touch it"
            )
    identity = run.client("sts", aws_regions[0]).get_caller_identity()
    account = str(identity.get("Account", ""))
    if account != allow.account_id:
        raise ConfigError(
            f"{run.target.source}: allow.aws.account_id: the credentials act in account "
            f"{account!r}, not {allow.account_id!r}; refusing to touch it"
        )
    return str(identity.get("Arn", ""))


@contextmanager
def _step(what: str) -> Iterator[None]:
    """Turn an AWS refusal into a FaultError naming the step."""
    from botocore.exceptions import BotoCoreError, ClientError
    from chaoslib.exceptions import ActivityFailed

    try:
        yield
    except (ClientError, BotoCoreError, ActivityFailed) as exc:
        raise FaultError(f"{what}: {exc}") from exc


def _record(run: _Run, record: FaultRecord) -> dict[str, Any]:
    append_event(run.events, record)
    return asdict(record)


def _strs(values: list[str]) -> list[JsonValue]:
    return list(values)


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


# ------------------------------------------------------------------------- selection
@dataclass(frozen=True)
class _Selection:
    """What a region or zone kill would hit, found with describe calls only."""

    subnets: list[dict[str, Any]]
    instances: list[dict[str, Any]]
    targets: list[state.Target]
    groups: dict[str, list[str]]  # auto scaling group -> processes already suspended


def _select(run: _Run, region: AwsRegion, zone: str | None) -> _Selection:
    ec2 = run.client("ec2", region.region)
    filters = region.filters()
    if zone:
        filters.append({"Name": "availability-zone", "Values": [zone]})
    subnets = ec2.describe_subnets(Filters=filters)["Subnets"]
    running = [*filters, {"Name": "instance-state-name", "Values": ["running"]}]
    instances = [
        i
        for page in ec2.get_paginator("describe_instances").paginate(Filters=running)
        for r in page["Reservations"]
        for i in r["Instances"]
    ]
    ids = {i["InstanceId"] for i in instances}
    targets: list[state.Target] = []
    if region.target_groups:
        elb = run.client("elbv2", region.region)
        groups = elb.describe_target_groups(Names=list(region.target_groups))["TargetGroups"]
        for group in groups:
            health = elb.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
            targets += [
                state.Target(
                    group_arn=group["TargetGroupArn"],
                    id=t["Target"]["Id"],
                    port=int(t["Target"].get("Port", group.get("Port", 0))),
                )
                for t in health["TargetHealthDescriptions"]
                if t["Target"]["Id"] in ids
            ]
    suspended: dict[str, list[str]] = {}
    if region.auto_scaling_groups:
        asg = run.client("autoscaling", region.region)
        found = asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=list(region.auto_scaling_groups)
        )["AutoScalingGroups"]
        suspended = {
            g["AutoScalingGroupName"]: [p["ProcessName"] for p in g.get("SuspendedProcesses", [])]
            for g in found
        }
        missing = sorted(set(region.auto_scaling_groups) - set(suspended))
        if missing:
            raise ConfigError(f"auto scaling group(s) {missing} not found in {region.region}")
    return _Selection(subnets, instances, targets, suspended)


def _acl_of(ec2: Any, subnet_id: str) -> tuple[str, str]:
    """The network ACL a subnet is associated with, and that association's id."""
    acls = ec2.describe_network_acls(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]
    )["NetworkAcls"]
    for acl in acls:
        for association in acl.get("Associations", []):
            if association["SubnetId"] == subnet_id:
                return acl["NetworkAclId"], association["NetworkAclAssociationId"]
    raise FaultError(f"subnet {subnet_id!r} has no network ACL association")


# ------------------------------------------------------------------------- kill
def _plan_kill(run: _Run, name: str, zone: str | None) -> list[str]:
    region = run.target.region(name)
    chosen = _select(run, region, zone)
    ec2 = run.client("ec2", region.region)
    lines = [f"kill {name}{'/' + zone if zone else ''} in {region.region} ({region.vpc_id}):"]
    for subnet in chosen.subnets:
        acl, _ = _acl_of(ec2, subnet["SubnetId"])
        lines.append(
            f"  blackhole subnet {subnet['SubnetId']} ({subnet['AvailabilityZone']}, "
            f"{subnet['CidrBlock']}, now on {acl})"
        )
    lines += [
        f"  stop instance {i['InstanceId']} ({i['Placement']['AvailabilityZone']})"
        for i in chosen.instances
    ]
    lines += [f"  deregister target {t.id}:{t.port} from {t.group_arn}" for t in chosen.targets]
    lines += [
        f"  suspend {', '.join(p for p in SUSPENDED_PROCESSES if p not in done)} on {g}"
        for g, done in chosen.groups.items()
    ]
    return lines


def _kill(run: _Run, args: dict[str, Any], op: str) -> dict[str, Any]:
    name, zone = _kill_args(run, op, args)
    region = run.target.region(name)
    target = f"{name}/{zone}" if zone else name
    active = state.load(run.state_path)
    if any(
        a.fault in ("kill-region", "kill-zone") and a.target.split("/")[0] == name for a in active
    ):
        raise FaultError(f"{name!r} already has a kill applied; restore it first")
    _identity(run, [region.region])
    chosen = _select(run, region, zone)
    if not chosen.subnets or not chosen.instances:
        raise ConfigError(
            f"{run.target.source}: regions.{name}.aws.tags: {region.tags} select "
            f"{len(chosen.subnets)} subnet(s) and {len(chosen.instances)} running instance(s) "
            f"in {region.vpc_id}{' ' + zone if zone else ''}; refusing a kill that hits nothing"
        )
    fault = state.ActiveFault(id=_new_id(), fault=op, target=target, aws_region=region.region)
    active.append(fault)
    state.save(run.state_path, active)
    ec2 = run.client("ec2", region.region)
    with _step(f"{op} {target}: blackhole ACL"):
        acl = ec2.create_network_acl(
            VpcId=region.vpc_id,
            TagSpecifications=[
                {"ResourceType": "network-acl", "Tags": [{"Key": BLACKHOLE_TAG, "Value": fault.id}]}
            ],
        )["NetworkAcl"]
        fault.blackhole_acl = acl["NetworkAclId"]
        _deny_all(ec2, acl)
        state.save(run.state_path, active)
        for subnet in chosen.subnets:
            original, association = _acl_of(ec2, subnet["SubnetId"])
            new = ec2.replace_network_acl_association(
                AssociationId=association, NetworkAclId=acl["NetworkAclId"]
            )["NewAssociationId"]
            fault.associations.append(
                state.Association(
                    subnet_id=subnet["SubnetId"], association_id=new, original_acl_id=original
                )
            )
            state.save(run.state_path, active)
    fault.applied_at = time.time()
    state.save(run.state_path, active)
    _stop(run, fault, active, [i["InstanceId"] for i in chosen.instances])
    _deregister(run, fault, active, chosen.targets)
    _suspend(run, fault, active, chosen.groups)
    details: dict[str, JsonValue] = {
        "aws_region": region.region,
        "blackhole_acl": fault.blackhole_acl,
        "subnets": [a.subnet_id for a in fault.associations],
        "instances": list(fault.instances),
        "targets": [t.id for t in fault.targets],
        "auto_scaling_groups": [s.name for s in fault.suspensions],
    }
    if zone:
        details["zone"] = zone
    return _record(run, FaultRecord("fault", op, target, fault.id, fault.applied_at, None, details))


def _deny_all(ec2: Any, acl: dict[str, Any]) -> None:
    """Make sure the blackhole ACL denies everything, whatever defaults it came with.

    AWS gives a new custom ACL only its final deny-all rules; an emulator or a future
    default may add allow rules, which would let traffic through the blackhole.
    """
    for entry in acl.get("Entries", []):
        if entry["RuleAction"] == "allow" and entry["RuleNumber"] <= LAST_RULE:
            ec2.delete_network_acl_entry(
                NetworkAclId=acl["NetworkAclId"],
                RuleNumber=entry["RuleNumber"],
                Egress=entry["Egress"],
            )
    for egress in (False, True):
        ec2.create_network_acl_entry(
            NetworkAclId=acl["NetworkAclId"],
            RuleNumber=FIRST_RULE,
            Protocol="-1",
            RuleAction="deny",
            Egress=egress,
            CidrBlock="0.0.0.0/0",
        )


def _stop(
    run: _Run, fault: state.ActiveFault, active: list[state.ActiveFault], ids: list[str]
) -> None:
    from chaosaws.ec2.actions import stop_instances

    with _step(f"{fault.fault} {fault.target}: stop instances {ids}"):
        stop_instances(
            instance_ids=ids, configuration=run.per_region(fault.aws_region), secrets=run.secrets
        )
    fault.instances = ids
    state.save(run.state_path, active)


def _deregister(
    run: _Run,
    fault: state.ActiveFault,
    active: list[state.ActiveFault],
    targets: list[state.Target],
) -> None:
    # chaosaws's deregister_target removes one random target; a region kill removes
    # exactly the region's own.
    elb = run.client("elbv2", fault.aws_region)
    for target in targets:
        with _step(f"{fault.fault} {fault.target}: deregister {target.id}"):
            elb.deregister_targets(
                TargetGroupArn=target.group_arn, Targets=[{"Id": target.id, "Port": target.port}]
            )
        fault.targets.append(target)
        state.save(run.state_path, active)


def _suspend(
    run: _Run,
    fault: state.ActiveFault,
    active: list[state.ActiveFault],
    groups: dict[str, list[str]],
) -> None:
    from chaosaws.asg.actions import suspend_processes

    for name, already in groups.items():
        processes = [p for p in SUSPENDED_PROCESSES if p not in already]
        if not processes:
            continue
        with _step(f"{fault.fault} {fault.target}: suspend {processes} on {name}"):
            suspend_processes(
                asg_names=[name],
                process_names=processes,
                configuration=run.per_region(fault.aws_region),
                secrets=run.secrets,
            )
        fault.suspensions.append(state.Suspension(name=name, processes=processes))
        state.save(run.state_path, active)


def _undo_kill(run: _Run, fault: state.ActiveFault) -> dict[str, JsonValue]:
    """Undo a region or zone kill in the order of a recovery: network, hosts, traffic, ASG."""
    from chaosaws.asg.actions import resume_processes
    from chaosaws.ec2.actions import start_instances

    ec2 = run.client("ec2", fault.aws_region)
    where = f"restore {fault.target}"
    for association in fault.associations:
        with _step(f"{where}: give {association.subnet_id} back {association.original_acl_id}"):
            ec2.replace_network_acl_association(
                AssociationId=association.association_id,
                NetworkAclId=association.original_acl_id,
            )
    if fault.blackhole_acl:
        with _step(f"{where}: delete blackhole ACL {fault.blackhole_acl}"):
            ec2.delete_network_acl(NetworkAclId=fault.blackhole_acl)
    if fault.instances:
        with _step(f"{where}: start instances {fault.instances}"):
            start_instances(
                instance_ids=fault.instances,
                configuration=run.per_region(fault.aws_region),
                secrets=run.secrets,
            )
    elb = run.client("elbv2", fault.aws_region)
    for target in fault.targets:
        with _step(f"{where}: register {target.id} again"):
            elb.register_targets(
                TargetGroupArn=target.group_arn, Targets=[{"Id": target.id, "Port": target.port}]
            )
    for suspension in fault.suspensions:
        with _step(f"{where}: resume {suspension.processes} on {suspension.name}"):
            resume_processes(
                asg_names=[suspension.name],
                process_names=suspension.processes,
                configuration=run.per_region(fault.aws_region),
                secrets=run.secrets,
            )
    return {
        "subnets": [a.subnet_id for a in fault.associations],
        "instances": list(fault.instances),
        "targets": [t.id for t in fault.targets],
        "auto_scaling_groups": [s.name for s in fault.suspensions],
    }


# ------------------------------------------------------------------------- partition
def _acls_of_region(run: _Run, region: AwsRegion) -> list[str]:
    ec2 = run.client("ec2", region.region)
    subnets = ec2.describe_subnets(Filters=region.filters())["Subnets"]
    return sorted({_acl_of(ec2, s["SubnetId"])[0] for s in subnets})


def _cidr(run: _Run, region: AwsRegion) -> str:
    vpcs = run.client("ec2", region.region).describe_vpcs(VpcIds=[region.vpc_id])["Vpcs"]
    return str(vpcs[0]["CidrBlock"])


def _pairs(run: _Run, args: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(platform region, its ACL, the other side's VPC CIDR) for every deny to add."""
    side_a, side_b = _sides(run, args)
    regions = {n: run.target.region(n) for n in side_a + side_b}
    cidrs = {n: _cidr(run, r) for n, r in regions.items()}
    acls = {n: _acls_of_region(run, r) for n, r in regions.items()}
    for name, found in acls.items():
        if not found:
            raise ConfigError(
                f"{run.target.source}: regions.{name}.aws.tags: {regions[name].tags} select "
                f"no subnet in {regions[name].vpc_id}; refusing a partition that cuts nothing"
            )
    pairs: list[tuple[str, str, str]] = []
    for mine, theirs in [(side_a, side_b), (side_b, side_a)]:
        pairs += [(n, acl, cidrs[o]) for n in mine for acl in acls[n] for o in theirs]
    return pairs


def _plan_partition(run: _Run, args: dict[str, Any]) -> list[str]:
    return [
        f"  deny {acl} ({name}) <-> {cidr}, both directions"
        for name, acl, cidr in _pairs(run, args)
    ]


def _partition(run: _Run, args: dict[str, Any]) -> dict[str, Any]:
    side_a, side_b = _sides(run, args)
    _identity(run, _regions_of(run, "partition", args))
    pairs = _pairs(run, args)
    target = ",".join(side_a) + "|" + ",".join(side_b)
    active = state.load(run.state_path)
    first = run.target.region(side_a[0]).region
    fault = state.ActiveFault(id=_new_id(), fault="partition", target=target, aws_region=first)
    active.append(fault)
    state.save(run.state_path, active)
    for name, acl, cidr in pairs:
        aws_region = run.target.region(name).region
        ec2 = run.client("ec2", aws_region)
        for egress in (False, True):
            with _step(f"partition {target}: deny {cidr} on {acl}"):
                number = _free_rule(ec2, acl, egress)
                ec2.create_network_acl_entry(
                    NetworkAclId=acl,
                    RuleNumber=number,
                    Protocol="-1",
                    RuleAction="deny",
                    Egress=egress,
                    CidrBlock=cidr,
                )
            fault.deny_entries.append(
                state.DenyEntry(
                    aws_region=aws_region, acl_id=acl, rule_number=number, egress=egress
                )
            )
            state.save(run.state_path, active)
    fault.applied_at = time.time()
    state.save(run.state_path, active)
    details: dict[str, JsonValue] = {
        "side_a": list(side_a),
        "side_b": list(side_b),
        "direction": "both",
        "acls": _strs(sorted({e.acl_id for e in fault.deny_entries})),
    }
    return _record(
        run, FaultRecord("fault", "partition", target, fault.id, fault.applied_at, None, details)
    )


def _free_rule(ec2: Any, acl_id: str, egress: bool) -> int:
    acl = ec2.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"][0]
    used = {e["RuleNumber"] for e in acl.get("Entries", []) if e["Egress"] == egress}
    for number in range(FIRST_RULE, LAST_RULE + 1):
        if number not in used:
            return number
    raise FaultError(f"network ACL {acl_id!r} has no free rule number")


def _undo_partition(run: _Run, fault: state.ActiveFault) -> dict[str, JsonValue]:
    for entry in fault.deny_entries:
        with _step(f"heal {fault.target}: delete rule {entry.rule_number} of {entry.acl_id}"):
            run.client("ec2", entry.aws_region).delete_network_acl_entry(
                NetworkAclId=entry.acl_id, RuleNumber=entry.rule_number, Egress=entry.egress
            )
    return {"acls": _strs(sorted({e.acl_id for e in fault.deny_entries}))}


# ------------------------------------------------------------------------- database
def _members(run: _Run, aws_region: str, cluster: str) -> tuple[str, list[str]]:
    """A cluster's writer and its readers (sorted)."""
    rds = run.client("rds", aws_region)
    found = rds.describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0]
    members = found.get("DBClusterMembers", [])
    writers = [m["DBInstanceIdentifier"] for m in members if m["IsClusterWriter"]]
    readers = sorted(m["DBInstanceIdentifier"] for m in members if not m["IsClusterWriter"])
    if not writers:
        raise FaultError(f"database cluster {cluster!r} has no writer")
    return writers[0], readers


def _plan_failover(run: _Run, name: str) -> list[str]:
    region = run.target.region(name)
    lines: list[str] = []
    for cluster in region.db_clusters:
        writer, readers = _members(run, region.region, cluster)
        promoted = readers[0] if readers else "nothing (no reader)"
        lines.append(f"  fail over cluster {cluster} in {region.region}: {writer} -> {promoted}")
    return lines


def _failover(run: _Run, args: dict[str, Any]) -> dict[str, Any]:
    from chaosaws.rds.actions import failover_db_cluster

    name = _region_arg(run, args)
    region = run.target.region(name)
    if not region.db_clusters:
        raise ConfigError(
            f"{run.target.source}: regions.{name}.aws.db_clusters: empty; nothing to fail over"
        )
    _identity(run, [region.region])
    chosen = [(c, *_members(run, region.region, c)) for c in region.db_clusters]
    lonely = [c for c, _, readers in chosen if not readers]
    if lonely:
        raise ConfigError(f"database cluster(s) {lonely} have no reader to promote")
    active = state.load(run.state_path)
    fault = state.ActiveFault(
        id=_new_id(), fault="failover-database", target=name, aws_region=region.region
    )
    active.append(fault)
    for cluster, writer, readers in chosen:
        with _step(f"failover-database {name}: fail over {cluster} to {readers[0]}"):
            failover_db_cluster(
                cluster,
                target_db_instance_identifier=readers[0],
                configuration=run.per_region(region.region),
                secrets=run.secrets,
            )
        fault.clusters.append(state.Cluster(name=cluster, writer=writer, promoted=readers[0]))
        state.save(run.state_path, active)
    fault.applied_at = time.time()
    state.save(run.state_path, active)
    details: dict[str, JsonValue] = {
        "clusters": {c.name: {"writer": c.writer, "promoted": c.promoted} for c in fault.clusters}
    }
    return _record(
        run,
        FaultRecord("fault", "failover-database", name, fault.id, fault.applied_at, None, details),
    )


def _undo_failover(run: _Run, fault: state.ActiveFault) -> dict[str, JsonValue]:
    """Fail back to the writer the cluster had, so the drill leaves the estate as found."""
    from chaosaws.rds.actions import failover_db_cluster

    for cluster in fault.clusters:
        writer, _ = _members(run, fault.aws_region, cluster.name)
        if writer == cluster.writer:
            continue
        with _step(
            f"failback-database {fault.target}: fail {cluster.name} back to {cluster.writer}"
        ):
            failover_db_cluster(
                cluster.name,
                target_db_instance_identifier=cluster.writer,
                configuration=run.per_region(fault.aws_region),
                secrets=run.secrets,
            )
    return {"clusters": {c.name: c.writer for c in fault.clusters}}


# ------------------------------------------------------------------------- reverts
_UNDO: dict[str, tuple[str, Callable[[_Run, state.ActiveFault], dict[str, JsonValue]]]] = {
    "kill-region": ("restore-region", _undo_kill),
    "kill-zone": ("restore-zone", _undo_kill),
    "partition": ("heal", _undo_partition),
    "failover-database": ("failback-database", _undo_failover),
}


def _reverting(
    op: str, args: dict[str, Any], active: list[state.ActiveFault]
) -> list[state.ActiveFault]:
    """The active faults `op` reverts, newest first."""
    if op == "revert-all":
        chosen = list(active)
    elif op == "heal":
        chosen = [a for a in active if a.fault == "partition"]
    else:
        fault = next(f for f, (revert, _) in _UNDO.items() if revert == op)
        region = str(args.get("region") or "").strip()
        zone = str(args.get("zone") or "").strip()
        wanted = f"{region}/{zone}" if op == "restore-zone" else region
        chosen = [a for a in active if a.fault == fault and a.target == wanted]
    return list(reversed(chosen))


def _revert(run: _Run, op: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    if op in ("restore-region", "restore-zone", "failback-database"):
        _region_arg(run, args)
    active = state.load(run.state_path)
    chosen = _reverting(op, args, active)
    if chosen:
        _identity(run, sorted({a.aws_region for a in chosen}))
    records: list[dict[str, Any]] = []
    for fault in chosen:
        _, undo = _UNDO[fault.fault]
        details = undo(run, fault)
        active = [a for a in active if a.id != fault.id]
        state.save(run.state_path, active)
        details["fault_ids"] = [fault.id]
        record = FaultRecord(
            "revert", fault.fault, fault.target, _new_id(), None, time.time(), details
        )
        records.append(_record(run, record))
    return records


def _single_revert(op: str) -> Callable[[_Run, dict[str, Any]], dict[str, Any]]:
    fault = next(f for f, (revert, _) in _UNDO.items() if revert == op)

    def run_it(run: _Run, args: dict[str, Any]) -> dict[str, Any]:
        records = _revert(run, op, args)
        if records:
            return records[-1]
        # Nothing was active: say so in the events, as the local platform does.
        target = str(args.get("region") or "*")
        if op == "restore-zone":
            target = f"{target}/{args.get('zone') or ''}"
        record = FaultRecord(
            "revert", fault, target, _new_id(), None, time.time(), {"fault_ids": []}
        )
        return _record(run, record)

    return run_it


def _revert_all(run: _Run, args: dict[str, Any]) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    for fault in _reverting("revert-all", args, state.load(run.state_path)):
        try:
            records += _revert_one(run, fault)
        except (FaultError, ConfigError) as exc:
            errors.append(f"{fault.fault} {fault.target}: {exc}")
    return {"records": records, "errors": errors}


def _revert_one(run: _Run, fault: state.ActiveFault) -> list[dict[str, Any]]:
    revert, _ = _UNDO[fault.fault]
    region, _, zone = fault.target.partition("/")
    if fault.fault == "partition":
        # heal reverts every partition; one is enough per revert-all step.
        return _revert(run, "heal", {})
    return _revert(run, revert, {"region": region, "zone": zone})


# Ops of the seam with no AWS counterpart here, and why.
UNSUPPORTED = {
    "corrupt-replica": "it does not know the data model of your stores",
    "repair-replica": "there is no corrupt-replica to repair",
    "degrade-link": "VPC networking offers no latency or loss injection without agents",
    "restore-link": "there is no degrade-link to restore",
}


OPERATIONS: dict[str, Callable[[_Run, dict[str, Any]], dict[str, Any]]] = {
    "kill-region": lambda run, args: _kill(run, args, "kill-region"),
    "kill-zone": lambda run, args: _kill(run, args, "kill-zone"),
    "restore-region": _single_revert("restore-region"),
    "restore-zone": _single_revert("restore-zone"),
    "partition": _partition,
    "heal": lambda run, args: (_revert(run, "heal", args) or [_single_heal(run)])[-1],
    "failover-database": _failover,
    "failback-database": _single_revert("failback-database"),
    "revert-all": _revert_all,
}


def _single_heal(run: _Run) -> dict[str, Any]:
    record = FaultRecord(
        "revert", "partition", "*", _new_id(), None, time.time(), {"fault_ids": []}
    )
    return _record(run, record)
