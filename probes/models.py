"""`measurements.json`: the typed contract between the probes and the scorecards.

`gameday measure` writes the document through `write_measurements` (which validates it
against these models first: a probe that writes another shape fails loudly) and
scorecards read it through `read_measurements`. The models are frozen and strict (a
count that is the string "0" is an error, not a zero). Fields the contract names are
typed; other fields are kept as they are (`extra="allow"`): the entries carry their
inputs and evidence, and RTO entries grow with the definition.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from infra.errors import MalformedInput

__all__: list[str] = []

#: Version of the `measurements.json` document (bump on an incompatible change).
MEASUREMENTS_VERSION = 1
MEASUREMENTS = "measurements.json"

Status = Literal["ok", "no-data", "error"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", strict=True)


class _Entry(_Model):
    """What every measurement carries: a status and, unless `ok`, the reason."""

    status: Status
    reason: str | None = None
    fault_id: str | None = None
    fault: str | None = None
    target: str | None = None
    fault_at: float | None = None
    reverted_at: float | None = None


class RtoEntry(_Entry):
    """Client-side RTO of one traffic kind and residency (DESIGN 4)."""

    kind: str
    residency: str
    impact: bool | None = None
    recovered: bool | None = None
    rto_seconds: float | None = None
    recovered_at: float | None = None
    uncertainty_seconds: float | None = None


class PrometheusRtoEntry(_Entry):
    """Prometheus-side RTO of one jurisdiction, with the cross-check against the client."""

    jurisdiction: str
    residency: str | None = None
    impact: bool | None = None
    recovered: bool | None = None
    rto_seconds: float | None = None
    recovered_at: float | None = None
    uncertainty_seconds: float | None = None
    client_rto_seconds: float | None = None
    difference_seconds: float | None = None
    mismatch_bound_seconds: float | None = None
    instrumentation_mismatch: bool | None = None


class LostWrite(_Model):
    """One acknowledged write not found on the current primary."""

    key: str
    t_ack: float | None


class LagEstimate(_Model):
    """Replication lag at the fault (Prometheus), quoted beside the ledger's RPO."""

    status: Status
    reason: str | None = None
    lag_seconds: float | None = None
    query: str | None = None
    at: float | None = None


class RpoEntry(_Entry):
    """RPO of one residency from the ledger of acknowledged writes (docs/measurement.md)."""

    residency: str
    rpo_seconds: float | None
    acknowledged: int | None
    lost: int | None
    lost_after_fault: int | None
    ambiguous: int | None
    writes: int | None = None
    acknowledged_after_fault: int | None = None
    lost_after_fault_reason: str | None = None
    present: int | None = None
    lost_ack_time_unknown: int | None = None
    failed_writes_checked: int | None = None
    sequence_holes: int | None = None
    unrecorded_present: int | None = None
    unaccounted: int | None = None
    unaccounted_keys: tuple[str, ...] = ()
    residency_from_client: int | None = None
    first_lost_ack_at: float | None = None
    last_lost_ack_at: float | None = None
    lost_writes: tuple[LostWrite, ...] = ()
    lost_writes_truncated: bool = False
    store: dict[str, Any] | None = None
    replication_lag_estimate: LagEstimate | None = None

    @property
    def lag_seconds(self) -> float | None:
        """The replication lag at the fault, when Prometheus measured it."""
        lag = self.replication_lag_estimate
        return lag.lag_seconds if lag is not None and lag.status == "ok" else None


class IntegrityEntry(_Entry):
    """One integrity check: `wrong-answers` (per residency) or `time-to-detect` (per
    corrupt-* fault)."""

    check: Literal["wrong-answers", "time-to-detect", "anti-entropy"]
    residency: str | None = None
    region: str | None = None
    jurisdiction: str | None = None
    wrong_answers: int | None = None
    canary_mismatches: int | None = None
    unexpected_digests: int | None = None
    expected_digest: str | None = None
    digest_source: Literal["given", "deployed", "unknown"] | None = None
    canaries_checked: int | None = None
    answers_with_digest: int | None = None
    detected: bool | None = None
    time_to_detect_seconds: float | None = None
    served_before_fault: int | None = None
    requests_after_fault: int | None = None
    served_after_fault: int | None = None
    last_served_at: float | None = None


class ResidencyEntry(_Entry):
    """Requests of one residency answered by a region of another jurisdiction."""

    residency: str
    violations: int | None
    answered: int | None = None
    violations_by_region: dict[str, int] | None = None
    served_by_region: dict[str, int] | None = None


class RunInfo(_Model):
    """Optional facts about the run (constructed samples say so in `note`)."""

    experiment: str | None = None
    started_at: float | str | None = None
    note: str | None = None


class Measurements(_Model):
    """The whole document. A list that is absent (None) differs from an empty one: the
    scorecard says which."""

    version: Literal[1]
    run_dir: str | None = None
    measured_at: float | None = None
    run: RunInfo | None = None
    inputs: dict[str, Any] | None = None
    faults: tuple[dict[str, Any], ...] = ()
    load: dict[str, Any] | None = None
    rto: tuple[RtoEntry, ...] | None = None
    rto_prometheus: tuple[PrometheusRtoEntry, ...] | None = None
    rpo: tuple[RpoEntry, ...] | None = None
    integrity: tuple[IntegrityEntry, ...] | None = None
    residency: tuple[ResidencyEntry, ...] | None = None
    seconds_to_measure: float | None = None


def _where(error: dict[str, Any]) -> str:
    """`rpo[0].lost_after_fault` from a pydantic error location."""
    out = ""
    for part in error["loc"]:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


def parse_measurements(data: object, source: str = MEASUREMENTS) -> Measurements:
    """`data` (parsed JSON) as a `Measurements`; raises MalformedInput naming the field.

    An unknown `version` is reported as such (a newer writer, not a broken file).
    """
    if isinstance(data, dict) and data.get("version") != MEASUREMENTS_VERSION:
        raise MalformedInput(
            f"{source}: unsupported version {data.get('version')!r} "
            f"(this reader knows {MEASUREMENTS_VERSION})"
        )
    try:
        # JSON mode: strict about types, yet JSON arrays become the models' tuples.
        return Measurements.model_validate_json(json.dumps(data))
    except (TypeError, ValueError) as exc:
        if not isinstance(exc, ValidationError):
            raise MalformedInput(f"{source}: not JSON-serialisable: {exc}") from exc
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise MalformedInput(
            f"{source}: field {_where(dict(first))!r}: {first['msg'].lower()}, "
            f"got {first.get('input')!r}{more}"
        ) from exc


def read_measurements(path: Path) -> Measurements:
    """The typed `measurements.json` at `path`: the one reader of that file.

    Raises MalformedInput (file and field named) when it is not valid JSON or not the
    contract; OSError when it cannot be read.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise MalformedInput(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc
    return parse_measurements(data, str(path))


def write_measurements(run_dir: Path, doc: dict[str, Any]) -> Path:
    """Write `doc` to `RUN_DIR/measurements.json`: the one writer of that file.

    Validates `doc` against `Measurements` first (raises MalformedInput: a probe broke
    the contract), then writes atomically (a temp file, then rename).
    """
    parse_measurements(doc, "measurements document")
    path = Path(run_dir) / MEASUREMENTS
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
