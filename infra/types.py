"""Types shared with the probes: regions, the topology, fault records, the timeline schema
and the write key: the contract of a run directory's `events.jsonl` and `timeline.parquet`.

These are the interface between the platform (which changes things) and the probes
(which only read): a probe learns where a region lives and which region is a
jurisdiction's primary from these, never by assuming.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from infra.errors import MalformedInput

if TYPE_CHECKING:
    import pyarrow as pa

Role = Literal["primary", "replica"]
JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]

#: The request timeline (`timeline.parquet`), one row per request: (column, Arrow type).
#: loadgen writes exactly these types (`timeline_schema()`); the probes accept any type
#: of the same family (docs/loadgen.md). Plain names here, so that importing the
#: contract does not import pyarrow into every platform process.
TIMELINE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("t_start", "float64"),
    ("latency_ms", "float64"),
    ("kind", "string"),
    ("ok", "bool"),
    ("status", "int32"),
    ("error", "string"),
    ("residency", "string"),
    ("region", "string"),
    ("model_digest", "string"),
    ("score", "float64"),
    ("client", "string"),
    ("seq", "int64"),
    ("expected", "float64"),
    ("correct", "bool"),
)
#: Columns a timeline must have; the others read as null when absent.
TIMELINE_REQUIRED = ("t_start", "latency_ms", "kind", "ok", "status", "residency")
#: The prefix of the key under which the service stores a write (`ev:<client>:<seq>`).
WRITE_KEY_PREFIX = "ev:"


def write_key(client: str, seq: int) -> str:
    """The store key of a client's write number `seq` (the RPO ledger reads it back)."""
    return f"{WRITE_KEY_PREFIX}{client}:{seq}"


@functools.cache
def timeline_schema() -> pa.Schema:
    """The timeline's Arrow schema, built from `TIMELINE_COLUMNS`."""
    import pyarrow  # here, not at the top: see TIMELINE_COLUMNS

    return pyarrow.schema(
        [pyarrow.field(n, pyarrow.type_for_alias(t)) for n, t in TIMELINE_COLUMNS]
    )


def timeline_type_problem(column: str, found: pa.DataType) -> str | None:
    """Why `found` is not a valid type for timeline `column`; None when it is.

    The family must match the schema's (a number for a number, a boolean for `ok`,
    text for text; dictionary-encoded text is text): "true"/"false" strings in `ok`
    are an error, not successes.
    """
    import pyarrow  # here, not at the top: see TIMELINE_COLUMNS

    types = pyarrow.types
    schema = timeline_schema()
    if column not in schema.names:
        return None
    wanted = schema.field(column).type
    if types.is_dictionary(found):
        found = found.value_type
    if types.is_null(found):
        return None  # a column that is null throughout has no type to check
    if types.is_boolean(wanted):
        fits = types.is_boolean(found)
    elif types.is_integer(wanted) or types.is_floating(wanted):
        fits = types.is_integer(found) or types.is_floating(found)
    else:
        fits = types.is_string(found) or types.is_large_string(found)
    if fits:
        return None
    return f"column {column!r} must be of type {wanted} (or its family), got {found}"


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
    def from_dict(cls, data: object) -> FaultRecord:
        """Inverse of `asdict`, type-checked; raises ValueError naming the bad field.

        A `fault` record needs `applied_at` as epoch seconds (a number): without it the
        fault cannot be measured, so it is an error, never skipped.
        """
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        kind = data.get("type")
        if kind not in ("fault", "revert"):
            raise ValueError(f"field 'type': unknown record type {kind!r}")
        texts = {name: _text_field(data, name) for name in ("fault", "target", "id")}
        applied = _time_field(data, "applied_at")
        reverted = _time_field(data, "reverted_at")
        if kind == "fault" and applied is None:
            raise ValueError("field 'applied_at': required in a fault record, got null")
        details = data.get("details")
        if details is None:
            details = {}
        if not isinstance(details, dict):
            raise ValueError(f"field 'details': expected an object, got {details!r}")
        return cls(
            type="fault" if kind == "fault" else "revert",
            fault=texts["fault"],
            target=texts["target"],
            id=texts["id"],
            applied_at=applied,
            reverted_at=reverted,
            details=details,
        )


def _text_field(data: dict[str, object], name: str) -> str:
    if name not in data:
        raise ValueError(f"field {name!r}: missing")
    value = data[name]
    if not isinstance(value, str):
        raise ValueError(f"field {name!r}: expected a string, got {value!r}")
    return value


def _time_field(data: dict[str, object], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"field {name!r}: expected epoch seconds (a number), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class EventLog:
    """The records of an `events.jsonl`, and what the reader had to tolerate.

    `warnings` names a torn final line (what a crash while appending leaves): it is
    dropped, the intact records before it are kept.
    """

    records: tuple[FaultRecord, ...]
    warnings: tuple[str, ...] = ()


def append_event(path: Path, record: FaultRecord) -> None:
    """Append `record` to an `events.jsonl` file, creating it (and its folder) if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(record.to_json() + "\n")


def read_event_log(path: Path) -> EventLog:
    """Every record of an `events.jsonl` file, in file order: the one reader of that file.

    Raises MalformedInput naming the file, the line and the field for a line that is not
    a valid record, with one exception: a last line that is not JSON at all is a torn
    write and is dropped with a warning. OSError when the file cannot be read.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise MalformedInput(f"{path}: not UTF-8 text: {exc}") from exc
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    records: list[FaultRecord] = []
    warnings: list[str] = []
    for index, (lineno, line) in enumerate(numbered):
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            if index == len(numbered) - 1:
                warnings.append(
                    f"{path}:{lineno}: torn final line ignored (not JSON: {exc.msg}); "
                    f"{len(records)} intact records before it kept"
                )
                break
            raise MalformedInput(f"{path}:{lineno}: not JSON: {exc.msg}") from exc
        try:
            records.append(FaultRecord.from_dict(data))
        except ValueError as exc:
            raise MalformedInput(f"{path}:{lineno}: {exc}") from exc
    return EventLog(tuple(records), tuple(warnings))


def read_events(path: Path) -> list[FaultRecord]:
    """The records of an `events.jsonl` (see `read_event_log`, whose warnings this drops)."""
    return list(read_event_log(path).records)
