"""Any Chaos Toolkit activity is a fault: the records the drill's control writes for them.

An experiment's method may inject its fault through any activity: a Python function of
any extension (chaostoolkit-kubernetes, chaostoolkit-aws), a `process` or an `http`
provider. gameday's own actions (`infra.actions`) write their records themselves; every
other *action* of the method becomes a `fault` record in `events.jsonl`, and every
action of the rollbacks a `revert` record, so RTO and RPO are measured from them:

- `applied_at` (or `reverted_at`): when the activity ended;
- `fault`: the activity's name;
- `target`: what the activity declares, in this order: the activity's extension field
  `gameday: {target: us-east}`; else its argument `target` or `region`; else the first
  argument (a `process` provider's command-line words included) that names a region of
  the platform; else empty (`details.target_declared` false: the fault is then
  measured against every jurisdiction).

Probes are never recorded; an action that did not succeed is not a fault record (its
run says why in the journal), so a drill whose fault failed has no fault to measure
and is INCONCLUSIVE, never a pass.
"""

from __future__ import annotations

import shlex
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from infra.types import FaultRecord

__all__: list[str] = []  # helpers of experiments.controls

OWN_MODULES = ("infra.actions",)
TARGET_ARGUMENTS = ("target", "region")


def is_ours(activity: Mapping[str, Any]) -> bool:
    """Whether the activity is one of gameday's own actions (they record themselves)."""
    provider = activity.get("provider") or {}
    return provider.get("type") == "python" and provider.get("module") in OWN_MODULES


def _words(arguments: Any) -> list[str]:
    if isinstance(arguments, str):
        try:
            return shlex.split(arguments)
        except ValueError:
            return arguments.split()
    if isinstance(arguments, list):
        return [str(a) for a in arguments]
    if isinstance(arguments, dict):
        return [str(v) for v in arguments.values() if isinstance(v, str | int | float)]
    return []


def declared_target(activity: Mapping[str, Any], regions: Iterable[str]) -> str:
    """The target the activity declares (see the module docstring); "" when none."""
    extension = activity.get("gameday")
    if isinstance(extension, dict) and isinstance(extension.get("target"), str):
        return str(extension["target"])
    provider = activity.get("provider") or {}
    arguments = provider.get("arguments")
    if isinstance(arguments, dict):
        for key in TARGET_ARGUMENTS:
            if isinstance(arguments.get(key), str) and arguments[key]:
                return str(arguments[key])
    known = set(regions)
    for word in [*_words(arguments), str(provider.get("url", ""))]:
        for part in word.replace("/", " ").replace("=", " ").split():
            if part in known:
                return part
    return ""


def record_for(
    activity: Mapping[str, Any],
    run: Mapping[str, Any] | None,
    phase: str,
    ended_at: float,
    regions: Iterable[str],
    recorded: Iterable[FaultRecord] = (),
) -> FaultRecord | None:
    """The record of an activity that ended at `ended_at`, or None when it gets none.

    `phase` is `method` (a fault) or `rollback` (a revert, closing the recorded faults
    with the same target, or every recorded one when it declares none). Only actions
    that are not gameday's own and that succeeded get one.
    """
    if activity.get("type") != "action" or is_ours(activity) or phase not in ("method", "rollback"):
        return None
    status = (run or {}).get("status", "succeeded")
    if status != "succeeded":
        return None
    target = declared_target(activity, regions)
    provider = activity.get("provider") or {}
    details: dict[str, Any] = {
        "source": "chaostoolkit-activity",
        "provider": str(provider.get("type", "")),
        "target_declared": bool(target),
    }
    if provider.get("module"):
        details["module"] = f"{provider['module']}.{provider.get('func', '')}"
    name = str(activity.get("name", "")) or "unnamed-activity"
    ident = uuid.uuid4().hex[:12]
    if phase == "method":
        return FaultRecord("fault", name, target, ident, applied_at=ended_at, details=details)
    closes = [
        r.id
        for r in recorded
        if r.type == "fault"
        and r.details.get("source") == "chaostoolkit-activity"
        and (not target or r.target == target)
    ]
    details["fault_ids"] = closes
    return FaultRecord("revert", name, target, ident, reverted_at=ended_at, details=details)
