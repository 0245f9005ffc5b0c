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

import functools
import time
from collections.abc import Callable
from typing import Any

from infra.aws import database, kill, network, session, state
from infra.aws.kill import SUSPENDED_PROCESSES
from infra.aws.session import Config, Secrets, Session
from infra.errors import ConfigError, FaultError, UnsupportedFault
from infra.types import FaultRecord, JsonValue

__all__ = ["OPERATIONS", "SUSPENDED_PROCESSES", "UNSUPPORTED", "apply", "plan"]


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
    run = session.open_session(configuration or {}, secrets)
    return OPERATIONS[op](run, args)


def plan(op: str, args: dict[str, Any], configuration: Config | None) -> list[str]:
    """Human lines naming what `op` would hit (instances, subnets, targets...).

    Read-only: STS GetCallerIdentity and describe calls. Raises what `apply` would raise
    before its first change.
    """
    _supported(op)
    run = session.open_session(configuration or {}, None, events_required=False)
    if op not in _FAULTS and run.events is None:
        return [f"{op}: no gameday_events configured, so no recorded fault to revert"]
    regions = _regions_of(run, op, args)
    lines = [f"aws account {run.target.allow.account_id}: {session.identity(run, regions)}"]
    if op in ("kill-region", "kill-zone"):
        region, zone = kill.kill_args(run, op, args)
        lines += kill.plan_kill(run, region, zone)
    elif op == "partition":
        lines += network.plan_partition(run, args)
    elif op == "failover-database":
        lines += database.plan_failover(run, session.region_arg(run, args))
    else:
        active = state.load(run.state_path)
        lines += [
            f"revert {a.fault} {a.target} (fault {a.id})" for a in _reverting(op, args, active)
        ]
    return lines


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


_FAULTS = ("kill-region", "kill-zone", "partition", "failover-database")


def _regions_of(run: Session, op: str, args: dict[str, Any]) -> list[str]:
    """The AWS regions `op` would touch (its target's; for reverts, what the state names)."""
    if op in ("kill-region", "kill-zone", "failover-database"):
        return [run.target.region(session.region_arg(run, args)).region]
    if op == "partition":
        side_a, side_b = network.sides(run, args)
        return sorted({run.target.region(n).region for n in side_a + side_b})
    active = state.load(run.state_path)
    touched = {a.aws_region for a in _reverting(op, args, active)}
    touched |= {e.aws_region for a in _reverting(op, args, active) for e in a.deny_entries}
    return sorted(touched) or [run.target.allow.regions[0]]


# ------------------------------------------------------------------------- reverts
Undo = Callable[[Session, state.ActiveFault, Callable[[], None]], dict[str, JsonValue]]
_UNDO: dict[str, tuple[str, Undo]] = {
    "kill-region": ("restore-region", kill.undo_kill),
    "kill-zone": ("restore-zone", kill.undo_kill),
    "partition": ("heal", network.undo_partition),
    "failover-database": ("failback-database", database.undo_failover),
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


def _revert(run: Session, op: str, args: dict[str, Any]) -> list[dict[str, Any]]:
    if op in ("restore-region", "restore-zone", "failback-database"):
        session.region_arg(run, args)
    return _undo(run, [a.id for a in _reverting(op, args, state.load(run.state_path))])


def _undo(run: Session, ids: list[str]) -> list[dict[str, Any]]:
    """Revert the active faults `ids`, in that order; their revert records."""
    active = state.load(run.state_path)
    chosen = [a for i in ids for a in active if a.id == i]
    if chosen:
        session.identity(run, sorted({a.aws_region for a in chosen}))
    records: list[dict[str, Any]] = []
    for fault in chosen:
        _, undo = _UNDO[fault.fault]
        # `fault` is an element of `active`: each undone step is saved with it.
        details = undo(run, fault, functools.partial(state.save, run.state_path, active))
        active = [a for a in active if a.id != fault.id]
        state.save(run.state_path, active)
        details["fault_ids"] = [fault.id]
        record = FaultRecord(
            "revert", fault.fault, fault.target, session.new_id(), None, time.time(), details
        )
        records.append(session.record(run, record))
    return records


def _single_revert(op: str) -> Callable[[Session, dict[str, Any]], dict[str, Any]]:
    fault = next(f for f, (revert, _) in _UNDO.items() if revert == op)

    def run_it(run: Session, args: dict[str, Any]) -> dict[str, Any]:
        records = _revert(run, op, args)
        if records:
            return records[-1]
        # Nothing was active: say so in the events, as the local platform does.
        target = str(args.get("region") or "*")
        if op == "restore-zone":
            target = f"{target}/{args.get('zone') or ''}"
        record = FaultRecord(
            "revert", fault, target, session.new_id(), None, time.time(), {"fault_ids": []}
        )
        return session.record(run, record)

    return run_it


def _revert_all(run: Session, args: dict[str, Any]) -> dict[str, Any]:
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    for fault in _reverting("revert-all", args, state.load(run.state_path)):
        try:
            records += _undo(run, [fault.id])
        except (FaultError, ConfigError) as exc:
            errors.append(f"{fault.fault} {fault.target}: {exc}")
    return {"records": records, "errors": errors}


# Ops of the seam with no AWS counterpart here, and why.
UNSUPPORTED = {
    "corrupt-replica": "it does not know the data model of your stores",
    "repair-replica": "there is no corrupt-replica to repair",
    "degrade-link": "VPC networking offers no latency or loss injection without agents",
    "restore-link": "there is no degrade-link to restore",
}


OPERATIONS: dict[str, Callable[[Session, dict[str, Any]], dict[str, Any]]] = {
    "kill-region": lambda run, args: kill.kill(run, args, "kill-region"),
    "kill-zone": lambda run, args: kill.kill(run, args, "kill-zone"),
    "restore-region": _single_revert("restore-region"),
    "restore-zone": _single_revert("restore-zone"),
    "partition": network.partition,
    "heal": lambda run, args: (_revert(run, "heal", args) or [_single_heal(run)])[-1],
    "failover-database": database.failover,
    "failback-database": _single_revert("failback-database"),
    "revert-all": _revert_all,
}


def _single_heal(run: Session) -> dict[str, Any]:
    record = FaultRecord(
        "revert", "partition", "*", session.new_id(), None, time.time(), {"fault_ids": []}
    )
    return session.record(run, record)
