"""Network ACLs: the blackhole a kill moves subnets onto, the deny entries of a partition."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from infra.aws import session, state
from infra.aws.config import AwsRegion
from infra.aws.session import Session
from infra.errors import ConfigError, FaultError, UnsupportedFault
from infra.types import FaultRecord, JsonValue

BLACKHOLE_TAG = "gameday-blackhole"
# NACL rules are evaluated lowest number first; deny entries must come before any allow.
FIRST_RULE = 1
LAST_RULE = 32766


def acl_of(ec2: Any, subnet_id: str) -> tuple[str, str]:
    """The network ACL a subnet is associated with, and that association's id."""
    acls = ec2.describe_network_acls(
        Filters=[{"Name": "association.subnet-id", "Values": [subnet_id]}]
    )["NetworkAcls"]
    for acl in acls:
        for association in acl.get("Associations", []):
            if association["SubnetId"] == subnet_id:
                return acl["NetworkAclId"], association["NetworkAclAssociationId"]
    raise FaultError(f"subnet {subnet_id!r} has no network ACL association")


def deny_all(ec2: Any, acl: dict[str, Any]) -> None:
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


def sides(run: Session, args: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The two sides of a partition (platform region names); refuses `edge` and one-way."""
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
        sides.append([session.region_arg(run, {"region": n}) for n in names])
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


def _acls_of_region(run: Session, region: AwsRegion) -> list[str]:
    ec2 = run.client("ec2", region.region)
    subnets = ec2.describe_subnets(Filters=region.filters())["Subnets"]
    return sorted({acl_of(ec2, s["SubnetId"])[0] for s in subnets})


def _cidr(run: Session, name: str) -> str:
    region = run.target.region(name)
    with session.described(run, f"regions.{name}.aws.vpc_id"):
        vpcs = run.client("ec2", region.region).describe_vpcs(VpcIds=[region.vpc_id])["Vpcs"]
    return str(vpcs[0]["CidrBlock"])


def _pairs(run: Session, args: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(platform region, its ACL, the other side's VPC CIDR) for every deny to add."""
    side_a, side_b = sides(run, args)
    regions = {n: run.target.region(n) for n in side_a + side_b}
    cidrs = {n: _cidr(run, n) for n in regions}
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


def plan_partition(run: Session, args: dict[str, Any]) -> list[str]:
    """The deny entries a partition would add (describe calls only)."""
    return [
        f"  deny {acl} ({name}) <-> {cidr}, both directions"
        for name, acl, cidr in _pairs(run, args)
    ]


def partition(run: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Deny each side's VPC CIDR on the other side's ACLs, both ways; the fault record."""
    side_a, side_b = sides(run, args)
    session.identity(run, sorted({run.target.region(n).region for n in side_a + side_b}))
    pairs = _pairs(run, args)
    target = ",".join(side_a) + "|" + ",".join(side_b)
    active = state.load(run.state_path)
    first = run.target.region(side_a[0]).region
    fault = state.ActiveFault(
        id=session.new_id(), fault="partition", target=target, aws_region=first
    )
    active.append(fault)
    state.save(run.state_path, active)
    for name, acl, cidr in pairs:
        aws_region = run.target.region(name).region
        ec2 = run.client("ec2", aws_region)
        for egress in (False, True):
            with session.step(f"partition {target}: deny {cidr} on {acl}"):
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
        "acls": session.strs(sorted({e.acl_id for e in fault.deny_entries})),
    }
    return session.record(
        run, FaultRecord("fault", "partition", target, fault.id, fault.applied_at, None, details)
    )


def _free_rule(ec2: Any, acl_id: str, egress: bool) -> int:
    acl = ec2.describe_network_acls(NetworkAclIds=[acl_id])["NetworkAcls"][0]
    used = {e["RuleNumber"] for e in acl.get("Entries", []) if e["Egress"] == egress}
    for number in range(FIRST_RULE, LAST_RULE + 1):
        if number not in used:
            return number
    raise FaultError(f"network ACL {acl_id!r} has no free rule number")


def undo_partition(
    run: Session, fault: state.ActiveFault, save: Callable[[], None]
) -> dict[str, JsonValue]:
    """Delete exactly the deny entries the partition added (each saved as it goes)."""
    details: dict[str, JsonValue] = {
        "acls": session.strs(sorted({e.acl_id for e in fault.deny_entries}))
    }
    while fault.deny_entries:
        entry = fault.deny_entries[0]
        with session.step(
            f"heal {fault.target}: delete rule {entry.rule_number} of {entry.acl_id}"
        ):
            run.client("ec2", entry.aws_region).delete_network_acl_entry(
                NetworkAclId=entry.acl_id, RuleNumber=entry.rule_number, Egress=entry.egress
            )
        fault.deny_entries.pop(0)
        save()
    return details
