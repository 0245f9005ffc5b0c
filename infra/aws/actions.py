"""Chaos Toolkit actions only the AWS target has: one availability zone, the database.

The faults every platform has (kill_region, partition_regions, revert_all...) are in
`infra.actions`; with `gameday_platform: aws` they land in `infra.aws.driver`. These
read the same configuration keys: `gameday_platform_file` (the platform file) and
`gameday_events` (or `$GAMEDAY_EVENTS`); the AWS region of each call comes from the
platform file, never from `aws_region`. Every action returns its fault record.
"""

from __future__ import annotations

from typing import Any

from infra.aws import driver
from infra.errors import ConfigError

__all__ = ["failback_database", "failover_database", "kill_zone", "restore_zone"]


def _config(configuration: dict[str, Any] | None) -> dict[str, Any]:
    config = configuration or {}
    platform = config.get("gameday_platform", "aws")
    if platform != "aws":
        raise ConfigError(
            f"configuration gameday_platform {platform!r}: infra.aws.actions needs 'aws'"
        )
    return config


def kill_zone(
    region: str,
    zone: str,
    *,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Kill one availability zone of a platform region, as an AZ power interruption would.

    In order: the zone's subnets (those the region's tags select) move to a deny-all
    network ACL, its running instances stop, their load-balancer targets are
    deregistered, and the region's auto scaling groups stop launching and replacing.
    `zone` is the AWS name (`us-east-1a`). Revert with `restore_zone`.
    """
    return driver.apply(
        "kill-zone", {"region": region, "zone": zone}, _config(configuration), secrets
    )


def restore_zone(
    region: str,
    zone: str,
    *,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Undo `kill_zone` from its recorded state: ACLs, instances, targets, processes."""
    return driver.apply(
        "restore-zone", {"region": region, "zone": zone}, _config(configuration), secrets
    )


def failover_database(
    region: str,
    *,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fail over every Aurora cluster the region's `db_clusters` names to its first reader.

    A cluster with no reader is refused before anything is failed over. Revert with
    `failback_database` (or `revert_all`), which makes the original writer the writer again.
    """
    return driver.apply("failover-database", {"region": region}, _config(configuration), secrets)


def failback_database(
    region: str,
    *,
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Make each cluster's writer before `failover_database` the writer again."""
    return driver.apply("failback-database", {"region": region}, _config(configuration), secrets)
