"""The blast radius of a drill, and the allow-list check made before the first action.

`blast_radius` lists, for every action of the method and the rollbacks, what it will
hit: gameday's own actions through the platform driver's read-only `plan` hook
(`infra.<driver>.driver.plan(op, args, configuration)`; the local driver names the
regions itself), any other activity by its declared target (`experiments.activities`)
and its provider. Then the guardrails and the expected steady state. Nothing is
changed and nothing but the drivers' own read-only calls is sent anywhere.

`check_allowed` refuses (ConfigError, exit 2) a target outside the platform file: a
region or jurisdiction it does not name, or an `http` activity's host not in
`allow.hosts`. The Kubernetes and AWS drivers check their own allow-lists in `plan`
and again in `apply`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from experiments.activities import declared_target, is_ours
from infra.errors import ConfigError
from infra.platform import Platform, allowed_host

__all__: list[str] = []  # helpers of experiments.runner

#: gameday's actions (`infra.actions`) and the driver operation each one applies.
OPERATIONS = {
    "kill_region": "kill-region",
    "kill_primary_region": "kill-region",
    "restore_region": "restore-region",
    "isolate_region": "partition",
    "isolate_primary": "partition",
    "partition_regions": "partition",
    "heal_partition": "heal",
    "corrupt_replica": "corrupt-replica",
    "corrupt_replica_in": "corrupt-replica",
    "repair_replica": "repair-replica",
    "degrade_link": "degrade-link",
    "restore_link": "restore-link",
    "revert_all": "revert-all",
}
_REGION_ARGS = ("region",)
_REGION_LIST_ARGS = ("side_a", "side_b", "from_regions")
_JURISDICTION_ARGS = ("jurisdiction",)


def _actions(experiment: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    method = [("method", a) for a in experiment.get("method") or []]
    rollbacks = [("rollback", a) for a in experiment.get("rollbacks") or []]
    return [(phase, a) for phase, a in method + rollbacks if a.get("type") == "action"]


def _names(value: Any) -> list[str]:
    return [n.strip() for n in str(value).split(",") if n.strip()]


def check_allowed(experiment: dict[str, Any], platform: Platform, source: Path) -> None:
    """Raise ConfigError for the first action whose target the platform file does not
    allow; names the platform file, the action and the value."""
    regions = set(platform.regions)
    for phase, action in _actions(experiment):
        name = action.get("name", "?")
        where = f"{source}: {phase} action {name!r}"
        provider = action.get("provider") or {}
        given = provider.get("arguments")
        arguments: dict[str, Any] = given if isinstance(given, dict) else {}
        if is_ours(action):
            for key in _REGION_ARGS:
                if key in arguments and arguments[key] not in regions:
                    raise ConfigError(
                        f"{where}: {key} {arguments[key]!r} is not a region of the platform "
                        f"({', '.join(sorted(regions))}): refused before any action"
                    )
            for key in _REGION_LIST_ARGS:
                for region in _names(arguments.get(key, "")):
                    if region not in regions and region != "edge":
                        raise ConfigError(
                            f"{where}: {key} names {region!r}, not a region of the platform: "
                            "refused before any action"
                        )
            for key in _JURISDICTION_ARGS:
                if key in arguments and arguments[key] not in platform.jurisdictions:
                    raise ConfigError(
                        f"{where}: {key} {arguments[key]!r} is not a jurisdiction of the "
                        "platform: refused before any action"
                    )
            continue
        extension = action.get("gameday")
        if isinstance(extension, dict) and extension.get("target") not in (None, *regions):
            raise ConfigError(
                f"{where}: gameday.target {extension['target']!r} is not a region of the "
                "platform: refused before any action"
            )
        if provider.get("type") == "http":
            url = str(provider.get("url", ""))
            if not allowed_host(url, platform.allow.hosts):
                raise ConfigError(
                    f"{where}: provider.url {url!r}: host not in allow.hosts "
                    f"({', '.join(platform.allow.hosts) or 'empty'}): refused before any action"
                )


def _driver_plan(
    platform: Platform, op: str, args: dict[str, Any], configuration: dict[str, Any]
) -> list[str]:
    try:
        driver = importlib.import_module(f"infra.{platform.driver}.driver")
    except ModuleNotFoundError as exc:
        raise ConfigError(f"driver {platform.driver!r} is not installed ({exc})") from exc
    lines: list[str] = driver.plan(op, args, configuration)
    return lines


def _local_plan(func: str, args: dict[str, Any], platform: Platform) -> list[str]:
    region = args.get("region")
    jurisdiction = args.get("jurisdiction")
    if func == "kill_primary_region":
        return [f"the current primary region of jurisdiction {jurisdiction!r} (asked of Sentinel)"]
    if func in ("isolate_primary", "corrupt_replica_in"):
        role = "primary" if func == "isolate_primary" else "a replica"
        return [f"{role} region of jurisdiction {jurisdiction!r} (asked at run time)"]
    if func in ("partition_regions",):
        return [f"partition {args.get('side_a')} | {args.get('side_b')}"]
    if func in ("heal_partition", "revert_all"):
        return ["whatever this drill left active (reverts only)"]
    if region:
        j = platform.jurisdiction_of(str(region))
        return [f"region {region} (jurisdiction {j})"]
    return []


def blast_radius(experiment: dict[str, Any], platform: Platform, platform_file: Path) -> list[str]:
    """Human lines: each action and what it will hit, the guardrails, the steady state.

    Read-only: the drivers' `plan` hooks only read. Raises ConfigError for a target the
    allow-list refuses.
    """
    check_allowed(experiment, platform, platform_file)
    configuration = {
        "gameday_platform": platform.driver,
        "gameday_platform_file": str(platform_file),
    }
    where_load = "the world's edge" if platform.driver == "local" else "this machine"
    lines = [
        f"platform {platform.name!r} (driver {platform.driver}, file {platform_file})",
        "jurisdictions: "
        + "; ".join(f"{j}: {', '.join(s.regions)}" for j, s in platform.jurisdictions.items()),
        f"load from {where_load} against {platform.traffic.base_url} "
        f"(API {platform.traffic.api.shape})",
        "actions:",
    ]
    for phase, action in _actions(experiment):
        provider = action.get("provider") or {}
        arguments = provider.get("arguments")
        name = action.get("name", "?")
        if is_ours(action):
            func = str(provider.get("func", ""))
            args = dict(arguments) if isinstance(arguments, dict) else {}
            op = OPERATIONS.get(func, func)
            if platform.driver in ("kubernetes", "aws"):
                hits = _driver_plan(platform, op, args, configuration)
            elif platform.driver == "none":
                raise ConfigError(
                    f"{platform_file}: driver none, but {phase} action {name!r} is gameday's "
                    f"own {func!r}: name a driver, or inject the fault with your own activity"
                )
            else:
                hits = _local_plan(func, args, platform)
            lines.append(f"  [{phase}] {name}: infra.actions.{func} ({op})")
            lines += [f"      hits {h}" for h in hits] or ["      hits nothing named"]
            continue
        target = declared_target(action, platform.regions)
        kind = provider.get("type", "?")
        if kind == "process":
            what = f"runs `{provider.get('path', '')} {_args_text(arguments)}`".rstrip()
        elif kind == "http":
            what = f"{provider.get('method', 'GET')} {provider.get('url', '')}"
        else:
            func = f"{provider.get('module', '?')}.{provider.get('func', '?')}"
            what = f"{func}({_args_text(arguments)})"
        record = "fault" if phase == "method" else "revert"
        lines.append(f"  [{phase}] {name}: {kind} activity, {what}")
        lines.append(
            f"      hits {target or 'no declared target'} (recorded as a {record} when it ends)"
        )
    lines += _guardrails(experiment)
    lines += _steady_state(experiment)
    return lines


def _args_text(arguments: Any) -> str:
    if isinstance(arguments, dict):
        return ", ".join(f"{k}={v!r}" for k, v in arguments.items())
    if isinstance(arguments, list):
        return " ".join(str(a) for a in arguments)
    return str(arguments or "")


def _guardrails(experiment: dict[str, Any]) -> list[str]:
    for control in experiment.get("controls") or []:
        provider = control.get("provider") or {}
        if provider.get("module") == "experiments.controls":
            args = provider.get("arguments") or {}
            guarded = args.get("guard_jurisdictions") or "none"
            return [
                "guardrails:",
                f"  abort and roll back when a guarded jurisdiction ({guarded}) falls below "
                f"{1 - float(args.get('guard_error_ratio', 0.05)):.0%} success",
                f"  abort and roll back past {float(args.get('time_limit_seconds', 300)):.0f} s",
            ]
    return ["guardrails: none"]


def _steady_state(experiment: dict[str, Any]) -> list[str]:
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    lines = [f"expected steady state: {hypothesis.get('title', '(none)')}"]
    for probe in hypothesis.get("probes") or []:
        tolerance = probe.get("tolerance")
        shown = tolerance.get("range") if isinstance(tolerance, dict) else tolerance
        lines.append(f"  {probe.get('name', '?')}: {shown}")
    return lines
