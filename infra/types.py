"""Types shared with the probes: regions, the topology and fault records.

These are the interface between the platform (which changes things) and the probes
(which only read): a probe learns where a region lives and which region is a
jurisdiction's primary from these, never by assuming.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Role = Literal["primary", "replica"]
JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True)
class Region:
    """One region of the platform as declared in the topology file."""

    name: str
    provider: str
    jurisdiction: str
    role: Role


@dataclass(frozen=True)
class StoreSettings:
    """Redis's own write guard for one data group, set on every store of the group.

    A primary refuses writes (NOREPLICAS) unless at least `min_replicas_to_write`
    replicas acknowledged the replication stream within `min_replicas_max_lag` seconds.
    Replicas ignore both until Sentinel promotes one, which then enforces them.
    """

    min_replicas_to_write: int
    min_replicas_max_lag: int

    def as_redis(self) -> dict[str, int]:
        """The settings under their redis.conf / CONFIG GET names."""
        return {
            "min-replicas-to-write": self.min_replicas_to_write,
            "min-replicas-max-lag": self.min_replicas_max_lag,
        }


@dataclass(frozen=True)
class Topology:
    """The declared regions (2 to 8); each jurisdiction has exactly one starting primary.

    `data_groups` holds the store settings of the data groups (one per jurisdiction)
    that declare any; a group not in it runs with Redis's defaults (no write guard).
    """

    regions: tuple[Region, ...]
    data_groups: tuple[tuple[str, StoreSettings], ...] = ()

    def store_settings(self, jurisdiction: str) -> StoreSettings | None:
        """The store settings of `jurisdiction`'s data group; None: Redis's defaults."""
        return dict(self.data_groups).get(jurisdiction)

    def region(self, name: str) -> Region:
        """The region called `name`; raises KeyError naming the known regions."""
        for region in self.regions:
            if region.name == name:
                return region
        known = ", ".join(r.name for r in self.regions)
        raise KeyError(f"unknown region {name!r} (known: {known})")

    @property
    def jurisdictions(self) -> tuple[str, ...]:
        """Jurisdictions in order of first appearance."""
        seen: dict[str, None] = {}
        for region in self.regions:
            seen.setdefault(region.jurisdiction, None)
        return tuple(seen)

    def in_jurisdiction(self, jurisdiction: str) -> tuple[Region, ...]:
        """Regions of one jurisdiction, in file order."""
        return tuple(r for r in self.regions if r.jurisdiction == jurisdiction)

    def initial_primary(self, jurisdiction: str) -> Region:
        """The region declared primary of `jurisdiction`."""
        return next(r for r in self.in_jurisdiction(jurisdiction) if r.role == "primary")


@dataclass(frozen=True)
class FaultRecord:
    """One line of a run's `events.jsonl`.

    `type` is "fault" when a fault is applied and "revert" when it is undone. Times are
    UTC epoch seconds with sub-millisecond resolution; `applied_at` is the moment the
    fault took effect (for a region kill: when the link was cut).
    """

    type: Literal["fault", "revert"]
    fault: str
    target: str
    id: str
    applied_at: float | None = None
    reverted_at: float | None = None
    details: dict[str, JsonValue] = field(default_factory=dict)

    def to_json(self) -> str:
        """The record as one JSON line (no trailing newline)."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, JsonValue]) -> FaultRecord:
        """Inverse of `asdict`; raises ValueError on a malformed record."""
        try:
            kind: Literal["fault", "revert"]
            if data["type"] == "fault":
                kind = "fault"
            elif data["type"] == "revert":
                kind = "revert"
            else:
                raise ValueError(f"unknown record type {data['type']!r}")
            applied = data.get("applied_at")
            reverted = data.get("reverted_at")
            details = data.get("details") or {}
            if not isinstance(details, dict):
                raise ValueError("details must be an object")
            return cls(
                type=kind,
                fault=str(data["fault"]),
                target=str(data["target"]),
                id=str(data["id"]),
                applied_at=float(applied) if isinstance(applied, int | float) else None,
                reverted_at=float(reverted) if isinstance(reverted, int | float) else None,
                details=details,
            )
        except KeyError as exc:
            raise ValueError(f"fault record lacks field {exc.args[0]!r}") from exc


def append_event(path: Path, record: FaultRecord) -> None:
    """Append `record` to an `events.jsonl` file, creating it (and its folder) if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(record.to_json() + "\n")


def read_events(path: Path) -> list[FaultRecord]:
    """Every record of an `events.jsonl` file, in file order."""
    records: list[FaultRecord] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(FaultRecord.from_dict(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}:{lineno}: {exc}") from exc
    return records
