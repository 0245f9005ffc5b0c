"""Gates: the thresholds a drill must meet, read from YAML (`experiments/gates.yaml`).

The file has defaults for every gate, then overrides per jurisdiction, per experiment,
and per jurisdiction inside an experiment. `Gates.resolve(experiment, jurisdiction)`
merges them in that order (later wins, field by field) and returns a complete
`GateSet`. Every error names the file and the field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.errors import ConfigError

Statistic = Literal["max", "p95", "ci_upper"]

# Gate keys in the order a scorecard lists them.
GATE_KEYS: tuple[str, ...] = (
    "rto_seconds",
    "relapses",
    "rpo_seconds",
    "lost_after_fault",
    "residency_violations",
    "wrong_answers",
    "error_budget",
    "p99_latency_ms",
    "time_to_detect_seconds",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GateSpec(_Strict):
    """One gate: the measured value must be `< less_than` or `<= at_most` (exactly one)."""

    enabled: bool = True
    less_than: float | None = Field(default=None, ge=0)
    at_most: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_threshold(self) -> GateSpec:
        if (self.less_than is None) == (self.at_most is None):
            raise ValueError("give exactly one of less_than or at_most")
        return self

    @property
    def comparison(self) -> str:
        """`<` or `<=`."""
        return "<" if self.less_than is not None else "<="

    @property
    def threshold(self) -> float:
        """The limit, whichever comparison carries it."""
        value = self.less_than if self.less_than is not None else self.at_most
        assert value is not None  # guaranteed by the validator
        return value

    def passes(self, value: float) -> bool:
        """Whether `value` meets the gate."""
        return value < self.threshold if self.comparison == "<" else value <= self.threshold


class RtoGateSpec(GateSpec):
    """The RTO gate, plus how a repeated drill is gated.

    `statistic`: `max` (the worst drill), `p95` (linear interpolation over the drills)
    or `ci_upper` (upper bound of the bootstrap `confidence` interval of the mean RTO).
    `require_cross_check`: without an `ok` Prometheus-side RTO for the jurisdiction the
    gate is inconclusive.
    """

    statistic: Statistic = "max"
    confidence: float = Field(default=0.95, gt=0.5, lt=1)
    require_cross_check: bool = False


class GateSet(_Strict):
    """Every gate, complete: what one (experiment, jurisdiction) is held to."""

    rto_seconds: RtoGateSpec
    #: Failures returning after a stable recovery; absent from older gates files, so
    #: it defaults to the strict limit rather than to nothing.
    relapses: GateSpec = GateSpec(at_most=0)
    rpo_seconds: GateSpec
    lost_after_fault: GateSpec
    residency_violations: GateSpec
    wrong_answers: GateSpec
    error_budget: GateSpec
    p99_latency_ms: GateSpec
    time_to_detect_seconds: GateSpec

    def spec(self, key: str) -> GateSpec:
        """The gate called `key` (one of `GATE_KEYS`)."""
        value = getattr(self, key)
        assert isinstance(value, GateSpec)
        return value


class _Patch(_Strict):
    """A partial gate: only the fields given override."""

    enabled: bool | None = None
    less_than: float | None = Field(default=None, ge=0)
    at_most: float | None = Field(default=None, ge=0)


class _RtoPatch(_Patch):
    statistic: Statistic | None = None
    confidence: float | None = Field(default=None, gt=0.5, lt=1)
    require_cross_check: bool | None = None


class _SetPatch(_Strict):
    rto_seconds: _RtoPatch | None = None
    relapses: _Patch | None = None
    rpo_seconds: _Patch | None = None
    lost_after_fault: _Patch | None = None
    residency_violations: _Patch | None = None
    wrong_answers: _Patch | None = None
    error_budget: _Patch | None = None
    p99_latency_ms: _Patch | None = None
    time_to_detect_seconds: _Patch | None = None


class _ExperimentPatch(_SetPatch):
    jurisdictions: dict[str, _SetPatch] = Field(default_factory=dict)


class _GatesFile(_Strict):
    version: Literal[1]
    gates: GateSet
    jurisdictions: dict[str, _SetPatch] = Field(default_factory=dict)
    experiments: dict[str, _ExperimentPatch] = Field(default_factory=dict)


def _apply(base: dict[str, Any], patch: _SetPatch | None) -> dict[str, Any]:
    if patch is None:
        return base
    merged = {key: dict(value) for key, value in base.items()}
    for key in GATE_KEYS:
        part = getattr(patch, key)
        if part is None:
            continue
        given = part.model_dump(exclude_unset=True)
        if "less_than" in given or "at_most" in given:
            # A new comparison replaces the old one entirely.
            merged[key]["less_than"] = None
            merged[key]["at_most"] = None
        merged[key].update(given)
    return merged


@dataclass(frozen=True)
class Gates:
    """A validated gates file; `resolve` gives the gates for one experiment and jurisdiction."""

    path: Path
    sha256: str
    _file: _GatesFile

    def resolve(self, experiment: str | None, jurisdiction: str | None) -> GateSet:
        """Defaults, then the jurisdiction's, the experiment's, the experiment's jurisdiction's."""
        merged = self._file.gates.model_dump()
        if jurisdiction is not None:
            merged = _apply(merged, self._file.jurisdictions.get(jurisdiction))
        exp = self._file.experiments.get(experiment or "")
        if exp is not None:
            merged = _apply(merged, exp)
            if jurisdiction is not None:
                merged = _apply(merged, exp.jurisdictions.get(jurisdiction))
        try:
            return GateSet.model_validate(merged)
        except ValidationError as exc:
            where = f"experiment {experiment!r}, jurisdiction {jurisdiction!r}"
            raise ConfigError(f"{self.path}: overrides for {where}: {_describe(exc)}") from exc

    @property
    def experiments(self) -> tuple[str, ...]:
        """Experiments with overrides."""
        return tuple(self._file.experiments)


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
        parts.append(f"{field}: {message[:1].lower()}{message[1:]}{shown}")
    return "; ".join(parts)


def parse_gates(text: str, path: Path) -> Gates:
    """Validate the text of a gates file; `path` is only used in messages."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        parsed = _GatesFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from exc
    gates = Gates(path, hashlib.sha256(text.encode()).hexdigest(), parsed)
    # Resolve every combination now, so a bad override fails at load, not mid-scoring.
    names = set(parsed.jurisdictions)
    for exp in parsed.experiments.values():
        names |= set(exp.jurisdictions)
    for experiment in (None, *parsed.experiments):
        for jurisdiction in (None, *sorted(names)):
            gates.resolve(experiment, jurisdiction)
    return gates


def load_gates(path: Path) -> Gates:
    """Read and validate a gates file; raises ConfigError naming the file and field."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the gates file: {exc.strerror or exc}") from exc
    return parse_gates(text, path)
