"""Chaos Toolkit actions: every fault of the platform and its revert.

Use them in an experiment's `method` and `rollbacks` as Python activities, e.g.::

    {"type": "action", "name": "kill-us-primary",
     "provider": {"type": "python", "module": "infra.actions", "func": "kill_region",
                  "arguments": {"region": "us-east"}}}

Each action dispatches to the platform named by the experiment's configuration key
`gameday_platform` (default `local`, the reference platform of `infra/local`), appends
its record to the events file named by `gameday_events` (or `$GAMEDAY_EVENTS`, else
the world's own `events.jsonl`) and returns the record. An action without an explicit
target is refused: there is no "every region".
"""

from __future__ import annotations

import importlib
import os
import threading
from pathlib import Path
from typing import Any

from infra.errors import ConfigError

__all__ = [
    "corrupt_replica",
    "corrupt_replica_in",
    "degrade_link",
    "heal_partition",
    "isolate_primary",
    "isolate_region",
    "kill_primary_region",
    "kill_region",
    "partition_regions",
    "repair_replica",
    "restore_link",
    "restore_region",
    "revert_all",
]

PLATFORMS = ("local", "kubernetes", "aws")
# Set when the drill's owner is gone (its lifeline): no fault is applied after that.
_CLOSED = threading.Event()
_APPLYING = ("kill-region", "partition", "corrupt-replica", "degrade-link")


def _target(name: str, what: str = "region") -> str:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{what} is required: an action never targets everything")
    return name.strip()


def _names(value: str, what: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"{what} is required (comma-separated region names)")
    return names


def close() -> None:
    """Refuse every later fault of this process (reverts still run): the drill's owner
    is gone. For the local platform `world.close_faults` does the same."""
    _CLOSED.set()


def _apply(op: str, args: dict[str, Any], configuration: dict[str, Any] | None) -> dict[str, Any]:
    config = configuration or {}
    platform = config.get("gameday_platform", "local")
    if platform not in PLATFORMS:
        raise ConfigError(
            f"configuration gameday_platform {platform!r} is not supported "
            f"(available: {', '.join(PLATFORMS)})"
        )
    if op in _APPLYING and _CLOSED.is_set():
        raise ConfigError(f"{op} refused: the process that owns this drill is gone")
    if platform != "local":
        # The Kubernetes and AWS drivers (seam: infra.<driver>.driver.apply), lazily.
        try:
            driver = importlib.import_module(f"infra.{platform}.driver")
        except ModuleNotFoundError as exc:
            raise ConfigError(f"the {platform} driver is not installed ({exc})") from exc
        record: dict[str, Any] = driver.apply(op, args, config, None)
        return record
    from infra.local import world

    events = config.get("gameday_events") or os.environ.get("GAMEDAY_EVENTS")
    home = config.get("gameday_home")
    return world.fault(
        op, args, base=Path(home) if home else None, events=Path(events) if events else None
    )


def kill_region(region: str, *, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Kill a whole region: cut its network link first, then SIGKILL every process in it.

    Cutting the network first is what makes asynchronous-replication loss real: data
    still in socket buffers never reaches the replicas. Returns the fault record; its
    `applied_at` (epoch seconds) is the t_f the probes measure RTO and RPO from.
    Revert with `restore_region`.
    """
    return _apply("kill-region", {"region": _target(region)}, configuration)


def _primary(jurisdiction: str, configuration: dict[str, Any] | None) -> str:
    from infra.local import world

    target = _target(jurisdiction, "jurisdiction")
    home = (configuration or {}).get("gameday_home")
    primaries = world.status(Path(home) if home else None)["primaries"]
    if target not in primaries:
        raise ConfigError(
            f"unknown jurisdiction {target!r} (known: {', '.join(sorted(primaries))})"
        )
    primary = primaries[target]
    if not primary:
        raise ConfigError(f"no sentinel names a primary for jurisdiction {target!r}")
    return str(primary)


def kill_primary_region(
    jurisdiction: str, *, configuration: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Kill whichever region is the current primary of `jurisdiction` (see `kill_region`).

    The primary is asked of the platform (Sentinel's majority view), never assumed, so
    the experiment stays right after earlier drills moved the primary elsewhere.
    """
    return kill_region(_primary(jurisdiction, configuration), configuration=configuration)


def isolate_primary(
    jurisdiction: str,
    direction: str = "both",
    *,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Isolate the current primary of `jurisdiction` from every other region.

    Clients at the edge still reach it, its replicas and sentinels do not: Sentinel
    promotes a replica while the old primary keeps acknowledging the writes routed to it
    (the split-brain case; those writes are lost when the partition heals).
    """
    return isolate_region(
        _primary(jurisdiction, configuration), direction=direction, configuration=configuration
    )


def restore_region(region: str, *, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bring a killed region back: link up, restart its programs, wait until it is ready.

    Its store rejoins as a replica of whichever region Sentinel promoted.
    """
    return _apply("restore-region", {"region": _target(region)}, configuration)


def isolate_region(
    region: str,
    from_regions: str = "",
    direction: str = "both",
    *,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cut one region off from others with firewall DROP rules in its namespace.

    `from_regions`: comma-separated regions (or `edge`, the clients) to cut it from;
    empty means every other region, so clients keep reaching the isolated region while
    its replicas and sentinels do not (the split-brain case). `direction`: `both`,
    `a-to-b` (the region cannot send) or `b-to-a`. Revert with `heal_partition`.
    """
    target = _target(region)
    if from_regions.strip():
        others = _names(from_regions, "from_regions")
    else:
        from infra.local import world

        home = (configuration or {}).get("gameday_home")
        status = world.status(Path(home) if home else None)
        others = [r["name"] for r in status["regions"] if r["name"] != target]
    args = {"side_a": [target], "side_b": others, "direction": direction}
    return _apply("partition", args, configuration)


def partition_regions(
    side_a: str,
    side_b: str,
    direction: str = "both",
    *,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Partition two sets of regions (comma-separated names; `edge` allowed).

    Revert with `heal_partition`.
    """
    args = {
        "side_a": _names(side_a, "side_a"),
        "side_b": _names(side_b, "side_b"),
        "direction": direction,
    }
    return _apply("partition", args, configuration)


def heal_partition(*, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Remove every partition rule the platform holds."""
    return _apply("heal", {}, configuration)


def corrupt_replica(
    region: str,
    what: str = "model",
    count: int = 100,
    *,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Corrupt one region's replica: its model copy (`model`) or `count` entities' features.

    A corrupt model is loaded by restarting the region's service; with digest
    verification on, the service refuses it and leaves the router. Features can only be
    corrupted on a replica (the canary entities first). Revert with `repair_replica`.
    """
    return _apply(
        "corrupt-replica",
        {"region": _target(region), "what": what, "count": count},
        configuration,
    )


def corrupt_replica_in(
    jurisdiction: str,
    what: str = "model",
    count: int = 100,
    *,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Corrupt a current replica of `jurisdiction` (see `corrupt_replica`).

    The replica is asked of the platform (the first region of the jurisdiction whose
    store is a replica now), so the experiment stays right wherever earlier drills left
    the primary.
    """
    from infra.local import world

    target = _target(jurisdiction, "jurisdiction")
    home = (configuration or {}).get("gameday_home")
    regions = world.status(Path(home) if home else None)["regions"]
    replicas = [
        r["name"] for r in regions if r["jurisdiction"] == target and r["role"] == "replica"
    ]
    if not replicas:
        raise ConfigError(f"jurisdiction {target!r} has no replica to corrupt")
    return corrupt_replica(replicas[0], what=what, count=count, configuration=configuration)


def repair_replica(
    region: str, what: str = "all", *, configuration: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Repair a replica: copy the model from the registry and/or fully resync the store."""
    return _apply("repair-replica", {"region": _target(region), "what": what}, configuration)


def degrade_link(
    region: str,
    delay_ms: float = 100.0,
    loss_percent: float = 0.0,
    *,
    configuration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Add latency and loss to a region's link (tc netem).

    Fails with a clear error, changing nothing, where the kernel has no sch_netem.
    Revert with `restore_link`.
    """
    args = {"region": _target(region), "delay_ms": delay_ms, "loss_percent": loss_percent}
    return _apply("degrade-link", args, configuration)


def restore_link(region: str, *, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Remove a region's link degradation."""
    return _apply("restore-link", {"region": _target(region)}, configuration)


def revert_all(*, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """Revert every fault still active, newest first (the rollback of last resort)."""
    return _apply("revert-all", {}, configuration)
