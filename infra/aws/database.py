"""Database faults: an Aurora cluster fails over to a reader, and back to its writer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from infra.aws import session, state
from infra.aws.session import Session
from infra.errors import ConfigError, FaultError
from infra.types import FaultRecord, JsonValue


def _members(run: Session, name: str, cluster: str) -> tuple[str, list[str]]:
    """The writer and the readers (sorted) of a cluster of platform region `name`."""
    rds = run.client("rds", run.target.region(name).region)
    with session.described(run, f"regions.{name}.aws.db_clusters"):
        found = rds.describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0]
    members = found.get("DBClusterMembers", [])
    writers = [m["DBInstanceIdentifier"] for m in members if m["IsClusterWriter"]]
    readers = sorted(m["DBInstanceIdentifier"] for m in members if not m["IsClusterWriter"])
    if not writers:
        raise FaultError(f"database cluster {cluster!r} has no writer")
    return writers[0], readers


def plan_failover(run: Session, name: str) -> list[str]:
    """Which writer each cluster of the region would lose to which reader."""
    region = run.target.region(name)
    lines: list[str] = []
    for cluster in region.db_clusters:
        writer, readers = _members(run, name, cluster)
        promoted = readers[0] if readers else "nothing (no reader)"
        lines.append(f"  fail over cluster {cluster} in {region.region}: {writer} -> {promoted}")
    return lines


def failover(run: Session, args: dict[str, Any]) -> dict[str, Any]:
    """Fail every cluster of the region over to its first reader; the fault record."""
    from chaosaws.rds.actions import failover_db_cluster

    name = session.region_arg(run, args)
    region = run.target.region(name)
    if not region.db_clusters:
        raise ConfigError(
            f"{run.target.source}: regions.{name}.aws.db_clusters: empty; nothing to fail over"
        )
    session.identity(run, [region.region])
    chosen = [(c, *_members(run, name, c)) for c in region.db_clusters]
    lonely = [c for c, _, readers in chosen if not readers]
    if lonely:
        raise ConfigError(f"database cluster(s) {lonely} have no reader to promote")
    active = state.load(run.state_path)
    fault = state.ActiveFault(
        id=session.new_id(), fault="failover-database", target=name, aws_region=region.region
    )
    active.append(fault)
    for cluster, writer, readers in chosen:
        with session.step(f"failover-database {name}: fail over {cluster} to {readers[0]}"):
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
    return session.record(
        run,
        FaultRecord("fault", "failover-database", name, fault.id, fault.applied_at, None, details),
    )


def undo_failover(
    run: Session, fault: state.ActiveFault, save: Callable[[], None]
) -> dict[str, JsonValue]:
    """Fail back to the writer the cluster had, so the drill leaves the estate as found.

    A cluster whose writer already is the original one is skipped (a retried revert).
    """
    from chaosaws.rds.actions import failover_db_cluster

    for cluster in fault.clusters:
        writer, _ = _members(run, fault.target, cluster.name)
        if writer == cluster.writer:
            continue
        with session.step(
            f"failback-database {fault.target}: fail {cluster.name} back to {cluster.writer}"
        ):
            failover_db_cluster(
                cluster.name,
                target_db_instance_identifier=cluster.writer,
                configuration=run.per_region(fault.aws_region),
                secrets=run.secrets,
            )
    return {"clusters": {c.name: c.writer for c in fault.clusters}}
