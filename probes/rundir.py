"""The other inputs of a run directory: fault records, load summary, world, topology.

Every reader returns None (or raises ValueError with the file named) instead of
guessing: a probe turns an absent input into `no-data` with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.files import read_yaml
from infra.types import FaultRecord, JsonValue, Region, Role, Topology, read_events

__all__: list[str] = []


@dataclass(frozen=True)
class Fault:
    """A fault as the probes see it: when it was applied and, if known, reverted."""

    id: str
    fault: str
    target: str
    applied_at: float
    reverted_at: float | None = None
    details: dict[str, JsonValue] = field(default_factory=dict)

    def regions(self) -> tuple[str, ...]:
        """Region names in `target` ("us-east", or "a,b|c,d" for a partition)."""
        return tuple(p for p in re.split(r"[|,]", self.target) if p)

    def jurisdictions(self, region_jurisdiction: dict[str, str]) -> set[str]:
        """Jurisdictions the fault touches: `details.jurisdiction` or its regions' ones."""
        declared = self.details.get("jurisdiction")
        if isinstance(declared, str) and declared:
            return {declared}
        # A partition names both sides; the isolated side (before '|') is the one hit.
        side = self.target.split("|", 1)[0]
        names = [p for p in side.split(",") if p]
        return {region_jurisdiction[n] for n in names if n in region_jurisdiction}

    def describe(self) -> dict[str, Any]:
        """The fields every measurement quotes."""
        return {
            "fault_id": self.id,
            "fault": self.fault,
            "target": self.target,
            "fault_at": self.applied_at,
            "reverted_at": self.reverted_at,
        }


def faults_from_records(records: list[FaultRecord]) -> list[Fault]:
    """Applied faults in time order, each with the time of the revert that closed it."""
    reverted: dict[str, float] = {}
    for record in records:
        if record.type != "revert" or record.reverted_at is None:
            continue
        ids = record.details.get("fault_ids")
        for fid in ids if isinstance(ids, list) else []:
            reverted.setdefault(str(fid), record.reverted_at)
    faults = [
        Fault(
            id=r.id,
            fault=r.fault,
            target=r.target,
            applied_at=r.applied_at,
            reverted_at=r.reverted_at if r.reverted_at is not None else reverted.get(r.id),
            details=dict(r.details),
        )
        for r in records
        if r.type == "fault" and r.applied_at is not None
    ]
    return sorted(faults, key=lambda f: f.applied_at)


def read_faults(path: Path) -> list[Fault]:
    """Applied faults of an `events.jsonl`; raises ValueError naming file and line."""
    return faults_from_records(read_events(path))


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file; raises ValueError naming the file when it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: cannot read: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_topology(path: Path) -> Topology:
    """Regions and jurisdictions of a topology file (the schema of infra/local/topology.yaml).

    Only what the probes need is checked (name and jurisdiction of every region); the
    platform validates the rest when it starts.
    """
    raw = read_yaml(path, "topology", ValueError)
    entries = raw.get("regions") if isinstance(raw, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a mapping with a non-empty 'regions' list")
    regions = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: regions[{index}]: expected a mapping")
        for key in ("name", "jurisdiction"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ValueError(f"{path}: regions[{index}].{key}: required, a non-empty string")
        role: Role = "primary" if entry.get("role") == "primary" else "replica"
        regions.append(
            Region(entry["name"], str(entry.get("provider", "")), entry["jurisdiction"], role)
        )
    return Topology(tuple(regions))


def region_jurisdictions(topology: Topology) -> dict[str, str]:
    """Region name → jurisdiction."""
    return {r.name: r.jurisdiction for r in topology.regions}
