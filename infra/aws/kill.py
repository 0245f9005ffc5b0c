"""Killing a region or one zone of it, in the order of an AZ power interruption, and back."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from infra.aws import network, session, state
from infra.aws.config import AwsRegion
from infra.aws.session import Session
from infra.errors import ConfigError, FaultError
from infra.types import FaultRecord, JsonValue

# Launch and replacement would heal a killed region behind the drill's back;
# HealthCheck would mark its stopped instances unhealthy and have them terminated.
SUSPENDED_PROCESSES = ("Launch", "HealthCheck", "ReplaceUnhealthy", "AZRebalance")


def kill_args(run: Session, op: str, args: dict[str, Any]) -> tuple[str, str | None]:
    """The platform region and, for a zone kill, the availability zone it names."""
    region = session.region_arg(run, args)
    if op == "kill-region":
        return region, None
    zone = str(args.get("zone") or "").strip()
    aws_region = run.target.region(region).region
    if not zone.startswith(aws_region) or len(zone) <= len(aws_region):
        raise ConfigError(f"zone {zone!r} is not an availability zone of {region!r} ({aws_region})")
    return region, zone


@dataclass(frozen=True)
class _Selection:
    """What a region or zone kill would hit, found with describe calls only."""

    subnets: list[dict[str, Any]]
    instances: list[dict[str, Any]]
    targets: list[state.Target]
    groups: dict[str, list[str]]  # auto scaling group -> processes already suspended


def _select(run: Session, name: str, zone: str | None) -> _Selection:
    region = run.target.region(name)
    where = f"regions.{name}.aws"
    ec2 = run.client("ec2", region.region)
    filters = region.filters()
    if zone:
        filters.append({"Name": "availability-zone", "Values": [zone]})
    running = [*filters, {"Name": "instance-state-name", "Values": ["running"]}]
    with session.described(run, f"{where}.tags"):
        subnets = ec2.describe_subnets(Filters=filters)["Subnets"]
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
        with session.described(run, f"{where}.target_groups"):
            groups = elb.describe_target_groups(Names=list(region.target_groups))["TargetGroups"]
        for group in groups:
            with session.described(run, f"{where}.target_groups"):
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
        with session.described(run, f"{where}.auto_scaling_groups"):
            found = asg.describe_auto_scaling_groups(
                AutoScalingGroupNames=list(region.auto_scaling_groups)
            )["AutoScalingGroups"]
        suspended = {
            g["AutoScalingGroupName"]: [p["ProcessName"] for p in g.get("SuspendedProcesses", [])]
            for g in found
        }
        missing = sorted(set(region.auto_scaling_groups) - set(suspended))
        if missing:
            raise ConfigError(
                f"{run.target.source}: {where}.auto_scaling_groups: {missing} not found "
                f"in {region.region}"
            )
    return _Selection(subnets, instances, targets, suspended)


def plan_kill(run: Session, name: str, zone: str | None) -> list[str]:
    """What a region or zone kill would hit (describe calls only)."""
    region = run.target.region(name)
    chosen = _select(run, name, zone)
    ec2 = run.client("ec2", region.region)
    lines = [f"kill {name}{'/' + zone if zone else ''} in {region.region} ({region.vpc_id}):"]
    for subnet in chosen.subnets:
        acl, _ = network.acl_of(ec2, subnet["SubnetId"])
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


def kill(run: Session, args: dict[str, Any], op: str) -> dict[str, Any]:
    """Kill a region or zone: blackhole, stop, deregister, suspend; the fault record."""
    name, zone = kill_args(run, op, args)
    region = run.target.region(name)
    target = f"{name}/{zone}" if zone else name
    active = state.load(run.state_path)
    if any(
        a.fault in ("kill-region", "kill-zone") and a.target.split("/")[0] == name for a in active
    ):
        raise FaultError(f"{name!r} already has a kill applied; restore it first")
    session.identity(run, [region.region])
    chosen = _select(run, name, zone)
    if not chosen.subnets or not chosen.instances:
        raise ConfigError(
            f"{run.target.source}: regions.{name}.aws.tags: {region.tags} select "
            f"{len(chosen.subnets)} subnet(s) and {len(chosen.instances)} running instance(s) "
            f"in {region.vpc_id}{' ' + zone if zone else ''}; refusing a kill that hits nothing"
        )
    fault = state.ActiveFault(
        id=session.new_id(), fault=op, target=target, aws_region=region.region
    )
    active.append(fault)
    state.save(run.state_path, active)
    # The network goes first, as in an AZ power interruption: nothing the region still
    # sends (replication included) gets out once its hosts start going down.
    _blackhole(run, fault, active, region, [s["SubnetId"] for s in chosen.subnets])
    fault.applied_at = time.time()
    state.save(run.state_path, active)
    try:
        _stop(run, fault, active, [i["InstanceId"] for i in chosen.instances])
        _deregister(run, fault, active, chosen.targets)
        _suspend(run, fault, active, chosen.groups)
    except FaultError as exc:
        # The network is cut already: the probes need its t_f even though a later step
        # failed (the rollback reverts what the state file records).
        _kill_record(run, fault, zone, {"incomplete": str(exc)})
        raise
    return _kill_record(run, fault, zone, {})


def _kill_record(
    run: Session, fault: state.ActiveFault, zone: str | None, extra: dict[str, JsonValue]
) -> dict[str, Any]:
    details: dict[str, JsonValue] = {
        "aws_region": fault.aws_region,
        "blackhole_acl": fault.blackhole_acl,
        "subnets": session.strs([a.subnet_id for a in fault.associations]),
        "instances": session.strs(list(fault.instances)),
        "targets": session.strs([t.id for t in fault.targets]),
        "auto_scaling_groups": session.strs([s.name for s in fault.suspensions]),
        **extra,
    }
    if zone:
        details["zone"] = zone
    record = FaultRecord(
        "fault", fault.fault, fault.target, fault.id, fault.applied_at, None, details
    )
    return session.record(run, record)


def _blackhole(
    run: Session,
    fault: state.ActiveFault,
    active: list[state.ActiveFault],
    region: AwsRegion,
    subnets: list[str],
) -> None:
    """Move `subnets` onto a new deny-all ACL, recording each original association."""
    ec2 = run.client("ec2", region.region)
    with session.step(f"{fault.fault} {fault.target}: blackhole ACL"):
        acl = ec2.create_network_acl(
            VpcId=region.vpc_id,
            TagSpecifications=[
                {
                    "ResourceType": "network-acl",
                    "Tags": [{"Key": network.BLACKHOLE_TAG, "Value": fault.id}],
                }
            ],
        )["NetworkAcl"]
        fault.blackhole_acl = acl["NetworkAclId"]
        network.deny_all(ec2, acl)
        state.save(run.state_path, active)
        for subnet in subnets:
            original, association = network.acl_of(ec2, subnet)
            new = ec2.replace_network_acl_association(
                AssociationId=association, NetworkAclId=acl["NetworkAclId"]
            )["NewAssociationId"]
            fault.associations.append(
                state.Association(subnet_id=subnet, association_id=new, original_acl_id=original)
            )
            state.save(run.state_path, active)


def _stop(
    run: Session, fault: state.ActiveFault, active: list[state.ActiveFault], ids: list[str]
) -> None:
    from chaosaws.ec2.actions import stop_instances

    with session.step(f"{fault.fault} {fault.target}: stop instances {ids}"):
        stop_instances(
            instance_ids=ids, configuration=run.per_region(fault.aws_region), secrets=run.secrets
        )
    fault.instances = ids
    state.save(run.state_path, active)


def _deregister(
    run: Session,
    fault: state.ActiveFault,
    active: list[state.ActiveFault],
    targets: list[state.Target],
) -> None:
    # chaosaws's deregister_target removes one random target; a region kill removes
    # exactly the region's own.
    elb = run.client("elbv2", fault.aws_region)
    for target in targets:
        with session.step(f"{fault.fault} {fault.target}: deregister {target.id}"):
            elb.deregister_targets(
                TargetGroupArn=target.group_arn, Targets=[{"Id": target.id, "Port": target.port}]
            )
        fault.targets.append(target)
        state.save(run.state_path, active)


def _suspend(
    run: Session,
    fault: state.ActiveFault,
    active: list[state.ActiveFault],
    groups: dict[str, list[str]],
) -> None:
    from chaosaws.asg.actions import suspend_processes

    for name, already in groups.items():
        processes = [p for p in SUSPENDED_PROCESSES if p not in already]
        if not processes:
            continue
        with session.step(f"{fault.fault} {fault.target}: suspend {processes} on {name}"):
            suspend_processes(
                asg_names=[name],
                process_names=processes,
                configuration=run.per_region(fault.aws_region),
                secrets=run.secrets,
            )
        fault.suspensions.append(state.Suspension(name=name, processes=processes))
        state.save(run.state_path, active)


def undo_kill(
    run: Session, fault: state.ActiveFault, save: Callable[[], None]
) -> dict[str, JsonValue]:
    """Undo a region or zone kill in the order of a recovery: network, hosts, traffic, ASG.

    Each undone step leaves `fault` and is saved, so a revert that fails half-way
    (AWS refusing a step) can be retried without redoing what is already undone.
    """
    from chaosaws.asg.actions import resume_processes
    from chaosaws.ec2.actions import start_instances

    details: dict[str, JsonValue] = {
        "subnets": session.strs([a.subnet_id for a in fault.associations]),
        "instances": session.strs(list(fault.instances)),
        "targets": session.strs([t.id for t in fault.targets]),
        "auto_scaling_groups": session.strs([s.name for s in fault.suspensions]),
    }
    ec2 = run.client("ec2", fault.aws_region)
    where = f"restore {fault.target}"
    while fault.associations:
        association = fault.associations[0]
        with session.step(
            f"{where}: give {association.subnet_id} back {association.original_acl_id}"
        ):
            ec2.replace_network_acl_association(
                AssociationId=association.association_id,
                NetworkAclId=association.original_acl_id,
            )
        fault.associations.pop(0)
        save()
    if fault.blackhole_acl:
        with session.step(f"{where}: delete blackhole ACL {fault.blackhole_acl}"):
            ec2.delete_network_acl(NetworkAclId=fault.blackhole_acl)
        fault.blackhole_acl = None
        save()
    if fault.instances:
        with session.step(f"{where}: start instances {fault.instances}"):
            start_instances(
                instance_ids=fault.instances,
                configuration=run.per_region(fault.aws_region),
                secrets=run.secrets,
            )
        fault.instances = []
        save()
    elb = run.client("elbv2", fault.aws_region)
    while fault.targets:
        target = fault.targets[0]
        with session.step(f"{where}: register {target.id} again"):
            elb.register_targets(
                TargetGroupArn=target.group_arn, Targets=[{"Id": target.id, "Port": target.port}]
            )
        fault.targets.pop(0)
        save()
    while fault.suspensions:
        suspension = fault.suspensions[0]
        with session.step(f"{where}: resume {suspension.processes} on {suspension.name}"):
            resume_processes(
                asg_names=[suspension.name],
                process_names=suspension.processes,
                configuration=run.per_region(fault.aws_region),
                secrets=run.secrets,
            )
        fault.suspensions.pop(0)
        save()
    return details
