"""The aws driver's state file: what each active fault changed, so its revert can undo it.

It lives next to the run's events file (`<events dir>/aws-state.json`). Each step of a
fault is saved as soon as it is done, so a fault that failed half-way is still reverted
exactly as far as it went.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from infra.errors import ConfigError

__all__ = [
    "ActiveFault",
    "Association",
    "Cluster",
    "DenyEntry",
    "Suspension",
    "Target",
    "load",
    "save",
]


class Association(BaseModel):
    """A subnet moved onto the blackhole ACL: its new association and its original ACL."""

    model_config = ConfigDict(extra="forbid")

    subnet_id: str
    association_id: str
    original_acl_id: str


class Target(BaseModel):
    """A load-balancer target taken out of its target group."""

    model_config = ConfigDict(extra="forbid")

    group_arn: str
    id: str
    port: int


class Suspension(BaseModel):
    """The auto scaling processes the fault suspended (those already suspended are not)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    processes: list[str]


class DenyEntry(BaseModel):
    """One network-ACL deny entry a partition added."""

    model_config = ConfigDict(extra="forbid")

    aws_region: str
    acl_id: str
    rule_number: int
    egress: bool


class Cluster(BaseModel):
    """A database cluster failed over: its writer before, and the instance promoted."""

    model_config = ConfigDict(extra="forbid")

    name: str
    writer: str
    promoted: str


class ActiveFault(BaseModel):
    """One applied and not yet reverted fault with every change it made."""

    model_config = ConfigDict(extra="forbid")

    id: str
    fault: str
    target: str
    aws_region: str
    applied_at: float | None = None
    blackhole_acl: str | None = None
    associations: list[Association] = []
    instances: list[str] = []
    targets: list[Target] = []
    suspensions: list[Suspension] = []
    deny_entries: list[DenyEntry] = []
    clusters: list[Cluster] = []


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = 1
    active: list[ActiveFault] = []


def load(path: Path) -> list[ActiveFault]:
    """The active faults recorded in `path`, oldest first; none when it does not exist."""
    if not path.exists():
        return []
    try:
        return _File.model_validate_json(path.read_text(encoding="utf-8")).active
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "document"
        raise ConfigError(f"{path}: {where}: {error['msg']}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the aws state: {exc.strerror}") from exc


def save(path: Path, active: list[ActiveFault]) -> None:
    """Write the active faults atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(_File(active=active).model_dump(), indent=2, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    tmp.replace(path)
