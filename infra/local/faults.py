"""Faults of the local platform and their reverts, executed by the world's supervisor.

Each function applies or reverts one fault and returns its record (a `FaultRecord` as
a dict, the line the caller appends to the run's `events.jsonl`). `applied_at` is the
moment the fault took effect. Every fault has its revert right below it, and
`revert_all` undoes whatever is still active (the rollback of last resort).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import redis

from infra.errors import ConfigError, FaultError, UnsupportedFault
from infra.local import model as modelmod
from infra.local import netns, plan, stores
from infra.types import FaultRecord, JsonValue, Region

if TYPE_CHECKING:
    from collections.abc import Callable

    from infra.local.supervisor import Supervisor

__all__ = [
    "OPERATIONS",
    "active",
    "corrupt_replica",
    "degrade_link",
    "heal",
    "kill_region",
    "partition",
    "repair_replica",
    "restore_link",
    "restore_region",
    "revert_all",
]

DEFAULT_CORRUPT_FEATURES = 100
READY_TIMEOUT = 30.0
SENTINEL_LEARN_TIMEOUT = 15.0


def _region(sup: Supervisor, name: str) -> Region:
    try:
        return sup.topology.region(name)
    except KeyError as exc:
        raise ConfigError(exc.args[0]) from exc


def _node(sup: Supervisor, name: str) -> str:
    if name == plan.EDGE:
        return name
    return _region(sup, name).name


def _active(sup: Supervisor) -> dict[str, FaultRecord]:
    table: dict[str, FaultRecord] = sup.__dict__.setdefault("active_faults_table", {})
    return table


def active(sup: Supervisor) -> list[dict[str, Any]]:
    """The faults applied and not yet reverted, oldest first."""
    return [asdict(r) for r in sorted(_active(sup).values(), key=lambda r: r.applied_at or 0)]


def _applied(
    sup: Supervisor, fault: str, target: str, applied_at: float, details: dict[str, JsonValue]
) -> dict[str, Any]:
    record = FaultRecord(
        "fault", fault, target, uuid.uuid4().hex[:12], applied_at=applied_at, details=details
    )
    _active(sup)[record.id] = record
    return asdict(record)


def _reverted(
    sup: Supervisor, fault: str, target: str, reverted_at: float, details: dict[str, JsonValue]
) -> dict[str, Any]:
    """Close every active `fault` on `target` and return the revert record."""
    closed = [fid for fid, r in _active(sup).items() if r.fault == fault and r.target == target]
    for fid in closed:
        del _active(sup)[fid]
    details = {**details, "fault_ids": list(closed)}
    record = FaultRecord(
        "revert", fault, target, uuid.uuid4().hex[:12], reverted_at=reverted_at, details=details
    )
    return asdict(record)


def _is_active(sup: Supervisor, fault: str, target: str) -> bool:
    return any(r.fault == fault and r.target == target for r in _active(sup).values())


def _wait_ready(sup: Supervisor, region: str, timeout: float = READY_TIMEOUT) -> float | None:
    url = f"http://{sup.address(region)}:{plan.SERVICE_PORT}/healthz"
    if stores.wait_until(lambda: sup.http_ok(url), timeout):
        return time.time()
    return None


# --------------------------------------------------------------------------- kill
def kill_region(sup: Supervisor, region: str) -> dict[str, Any]:
    """Cut a region's link, then SIGKILL every process of it.

    The network goes first: killing the processes alone would let data already in
    socket buffers reach the replicas, hiding the loss async replication really has.
    """
    target = _region(sup, region)
    if _is_active(sup, "kill-region", region):
        raise FaultError(f"region {region!r} is already killed")
    role = stores.role(sup.address(region), sup.password)
    sup.set_link(region, False)
    applied_at = time.time()
    pids = sup.kill_node_processes(region)
    return _applied(
        sup,
        "kill-region",
        region,
        applied_at,
        {
            "jurisdiction": target.jurisdiction,
            "store_role_at_fault": {"master": "primary", "slave": "replica"}.get(role, role),
            "processes_killed": len(pids),
        },
    )


def restore_region(sup: Supervisor, region: str) -> dict[str, Any]:
    """Bring a killed region back: link up, restart its programs, wait until ready.

    Its store comes back as a replica of the current primary.
    """
    target = _region(sup, region)
    if not _is_active(sup, "kill-region", region):
        raise FaultError(f"region {region!r} is not killed")
    sup.set_link(region, True)
    reverted_at = time.time()
    sup.start_region(target)
    ready_at = _wait_ready(sup, region)
    role = stores.role(sup.address(region), sup.password)
    known = None
    if role == "slave":
        # Back for good only once the sentinels could promote it again: they learn a
        # replica from the primary's INFO, every 10 s.
        address = sup.address(region)
        others = [sup.address(r.name) for r in sup.topology.regions if r.name != region]
        known = stores.wait_until(
            lambda: all(
                address in stores.good_replicas(s, sup.password, target.jurisdiction)
                for s in others
            ),
            SENTINEL_LEARN_TIMEOUT,
            0.5,
        )
    return _reverted(
        sup,
        "kill-region",
        region,
        reverted_at,
        {"ready_at": ready_at, "store_role": role, "sentinels_know_replica": known},
    )


# --------------------------------------------------------------------------- partition
def partition(
    sup: Supervisor, side_a: list[str], side_b: list[str], direction: str = "both"
) -> dict[str, Any]:
    """Drop traffic between two sets of nodes (regions, or "edge").

    `direction`: "both"; "a-to-b" (A cannot send to B); "b-to-a". The rules live in
    side A's namespaces. The supervisor's control address is never cut off.
    """
    if not side_a or not side_b:
        raise ConfigError("a partition needs a non-empty set of nodes on each side")
    nodes_a = [_node(sup, n) for n in side_a]
    nodes_b = [_node(sup, n) for n in side_b]
    if set(nodes_a) & set(nodes_b):
        raise ConfigError(
            f"nodes on both sides of the partition: {sorted(set(nodes_a) & set(nodes_b))}"
        )
    if direction not in ("both", "a-to-b", "b-to-a"):
        raise ConfigError(f"direction {direction!r} must be 'both', 'a-to-b' or 'b-to-a'")
    nft_direction = {"both": "both", "a-to-b": "out", "b-to-a": "in"}[direction]
    peers = [sup.address(n) for n in nodes_b]
    for name in nodes_a:
        if netns.has_rules(sup.nodes[name].netns):
            raise FaultError(f"{name!r} is already partitioned; heal first")
    done: list[str] = []
    try:
        for name in nodes_a:
            netns.drop_rules(sup.nodes[name].netns, peers, nft_direction)
            done.append(name)
    except FaultError:
        for name in done:
            netns.clear_rules(sup.nodes[name].netns)
        raise
    applied_at = time.time()
    target = ",".join(nodes_a) + "|" + ",".join(nodes_b)
    return _applied(
        sup,
        "partition",
        target,
        applied_at,
        {
            "side_a": list(nodes_a),
            "side_b": list(nodes_b),
            "direction": direction,
        },
    )


def heal(sup: Supervisor) -> dict[str, Any]:
    """Remove every partition rule of the world."""
    cleared = [n.name for n in sup.nodes.values() if netns.clear_rules(n.netns)]
    reverted_at = time.time()
    targets = [r.target for r in _active(sup).values() if r.fault == "partition"]
    record: dict[str, Any] = {}
    for target in targets or ["*"]:
        record = _reverted(sup, "partition", target, reverted_at, {"cleared": list(cleared)})
    return record


# --------------------------------------------------------------------------- replicas
def _corrupt_features(sup: Supervisor, region: Region, count: int) -> dict[str, JsonValue]:
    address = sup.address(region.name)
    if stores.role(address, sup.password) != "slave":
        raise ConfigError(
            f"region {region.name!r} is not a replica now; corrupt a replica, not the primary"
        )
    entities = sup.entities
    golden = modelmod.golden_entities(entities)
    # The canaries first, so a platform that serves corrupt features is caught by them.
    chosen = [*golden, *(i for i in range(0, entities, max(1, entities // max(count, 1))))]
    ids = list(dict.fromkeys(chosen))[:count]
    conn = stores.client(address, sup.password)
    try:
        conn.config_set("replica-read-only", "no")
        pipe = conn.pipeline(transaction=False)
        for index in ids:
            key = f"{stores.FEATURE_PREFIX}{region.jurisdiction}-{index}"
            raw = conn.get(key)
            if raw is None:
                continue
            # Damage the values and keep the stored checksum, as bit rot on the
            # replica's copy would: a platform that verifies notices, one that does not
            # serves the damaged features.
            text = raw.decode() if isinstance(raw, bytes) else str(raw)
            checksum, _, body = text.partition("|")
            values = [v * -3.0 for v in json.loads(body)]
            pipe.set(key, checksum + "|" + json.dumps(values))
        pipe.execute()
    except redis.RedisError as exc:
        raise FaultError(f"cannot corrupt features in {region.name}: {exc}") from exc
    finally:
        try:
            conn.config_set("replica-read-only", "yes")
        finally:
            conn.close()
    return {"entities": [f"{region.jurisdiction}-{i}" for i in ids], "count": len(ids)}


def corrupt_replica(
    sup: Supervisor, region: str, what: str = "model", count: int = DEFAULT_CORRUPT_FEATURES
) -> dict[str, Any]:
    """Corrupt one region's model copy ("model") or N entities' features ("features").

    A corrupted model is picked up by restarting the region's service (as a reschedule
    would); with digest verification on, the service refuses it and goes unready.
    """
    target = _region(sup, region)
    if what not in ("model", "features"):
        raise ConfigError(f"--what {what!r} must be 'model' or 'features'")
    if count < 1:
        raise ConfigError(f"count {count} must be at least 1")
    details: dict[str, JsonValue] = {"what": what}
    if what == "model":
        path = sup.region_dir(region) / "models" / modelmod.MODEL_FILE
        details["digest"] = modelmod.corrupt_model(path)
        applied_at = time.time()
        sup.restart_service(region, "service")
    else:
        applied_at = time.time()
        details.update(_corrupt_features(sup, target, count))
    return _applied(sup, f"corrupt-{what}", region, applied_at, details)


def repair_replica(sup: Supervisor, region: str, what: str = "all") -> dict[str, Any]:
    """Re-replicate the model from the registry and/or fully resync the store from the primary."""
    target = _region(sup, region)
    if what not in ("model", "features", "all"):
        raise ConfigError(f"what {what!r} must be 'model', 'features' or 'all'")
    reverted_at = time.time()
    details: dict[str, JsonValue] = {"what": what}
    record: dict[str, Any] = {}
    if what in ("features", "all"):
        # A restarted store with no persistence starts empty and takes a full copy.
        sup.write_store_config(target, sup.replica_source(target))
        sup.restart_service(region, "redis")
        address = sup.address(region)
        synced = stores.wait_until(
            lambda: (
                stores.replication(address, sup.password).get("master_link_status") == "up"
                or stores.role(address, sup.password) == "master"
            ),
            READY_TIMEOUT,
        )
        details["resynced"] = synced
        record = _reverted(sup, "corrupt-features", region, reverted_at, dict(details))
    if what in ("model", "all"):
        modelmod.replicate(sup.registry, sup.region_dir(region) / "models")
        sup.restart_service(region, "service")
        details["ready_at"] = _wait_ready(sup, region)
        record = _reverted(sup, "corrupt-model", region, reverted_at, dict(details))
    return record


# --------------------------------------------------------------------------- links
def degrade_link(
    sup: Supervisor, region: str, delay_ms: float = 100.0, loss_percent: float = 0.0
) -> dict[str, Any]:
    """Add latency and/or loss on a region's link with `tc netem`.

    Needs the kernel's sch_netem; where it is missing (as on gameday's own CI machine)
    this raises a clear error and changes nothing.
    """
    _node(sup, region)
    if delay_ms < 0 or not 0 <= loss_percent <= 100:
        raise ConfigError("delay_ms must be >= 0 and loss_percent within 0..100")
    argv = [
        "tc",
        "qdisc",
        "add",
        "dev",
        "eth0",
        "root",
        "netem",
        "delay",
        f"{delay_ms}ms",
        "loss",
        f"{loss_percent}%",
    ]
    try:
        netns.run(argv, netns=sup.nodes[region].netns)
    except FaultError as exc:
        if "unknown" in str(exc).lower() or "not supported" in str(exc).lower():
            raise UnsupportedFault(
                "cannot degrade links: this kernel has no sch_netem (tc netem), so latency "
                "and loss cannot be injected here; use a kernel with CONFIG_NET_SCH_NETEM"
            ) from exc
        raise
    return _applied(
        sup,
        "degrade-link",
        region,
        time.time(),
        {"delay_ms": delay_ms, "loss_percent": loss_percent},
    )


def restore_link(sup: Supervisor, region: str) -> dict[str, Any]:
    """Remove the netem qdisc from a region's link."""
    _node(sup, region)
    if _is_active(sup, "degrade-link", region):
        netns.run(["tc", "qdisc", "del", "dev", "eth0", "root"], netns=sup.nodes[region].netns)
    return _reverted(sup, "degrade-link", region, time.time(), {})


# --------------------------------------------------------------------------- all
def revert_all(sup: Supervisor) -> dict[str, Any]:
    """Revert every active fault (the rollback of last resort); returns the revert records."""
    records: list[dict[str, Any]] = []
    errors: list[str] = []
    for record in sorted(_active(sup).values(), key=lambda r: r.applied_at or 0, reverse=True):
        try:
            if record.fault == "kill-region":
                records.append(restore_region(sup, record.target))
            elif record.fault == "partition" and _is_active(sup, "partition", record.target):
                records.append(heal(sup))
            elif record.fault in ("corrupt-model", "corrupt-features"):
                records.append(repair_replica(sup, record.target, record.fault.split("-")[1]))
            elif record.fault == "degrade-link":
                records.append(restore_link(sup, record.target))
        except Exception as exc:
            errors.append(f"{record.fault} {record.target}: {exc}")
    return {"records": records, "errors": errors}


OPERATIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "kill-region": kill_region,
    "restore-region": restore_region,
    "partition": partition,
    "heal": heal,
    "corrupt-replica": corrupt_replica,
    "repair-replica": repair_replica,
    "degrade-link": degrade_link,
    "restore-link": restore_link,
    "revert-all": revert_all,
}
