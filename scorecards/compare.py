"""Two drills side by side, gate by gate: what changed, and whether it is more than noise.

Each side is one run or several runs (a repeated drill) and is scored by the same
evaluation as `gameday scorecard` (`scorecards.evaluate`), each against the gates of
its own experiment: a fix drilled under its own name keeps its own limits. Gates are
matched by id (`lost_after_fault[eu]`, `rto_seconds[write/eu]`).

What "changed" means:
- the verdict changed (PASS → FAIL, …): always named;
- repeated runs on both sides: the difference is larger than run-to-run noise when the
  bootstrap confidence intervals of the per-run means (`scorecards.stats.bootstrap_ci`)
  do not overlap;
- one run on a side: there is no noise to compare with, so a change is named when it
  moves the value by at least `NOTABLE_SHARE` of the gate's limit (any change against
  a limit of 0), and the comparison says that it could not measure the noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from infra.errors import ConfigError
from scorecards.evaluate import GateResult, Scorecard, Verdict, evaluate, fmt, fmt_limit
from scorecards.gates import Gates
from scorecards.rundir import RunData, load_run
from scorecards.stats import bootstrap_ci

COMPARISON_VERSION = 1
NOTABLE_SHARE = 0.10
CONFIDENCE = 0.95
FEW_RUNS = 5
NoiseStatus = Literal["larger", "within", "unknown"]


@dataclass(frozen=True)
class Side:
    """One side of a comparison: its runs and their scorecard."""

    label: str
    card: Scorecard

    @property
    def runs(self) -> tuple[RunData, ...]:
        return self.card.runs


@dataclass(frozen=True)
class Noise:
    """Whether a difference is larger than run-to-run noise, and the intervals behind it."""

    status: NoiseStatus
    statement: str
    a_interval: tuple[float, float] | None = None
    b_interval: tuple[float, float] | None = None


@dataclass(frozen=True)
class GateChange:
    """One gate on both sides. `change` is B - A; None when a side has no value."""

    id: str
    title: str
    unit: str
    scope: str
    a: GateResult | None
    b: GateResult | None
    change: float | None
    noise: Noise
    notable: bool

    @property
    def verdict_changed(self) -> bool:
        return _verdict(self.a) != _verdict(self.b)


@dataclass(frozen=True)
class Comparison:
    """Everything `gameday compare` reports."""

    a: Side
    b: Side
    gates: tuple[GateChange, ...]
    notes: tuple[str, ...]

    @property
    def verdict_changes(self) -> list[GateChange]:
        return [g for g in self.gates if g.verdict_changed]

    @property
    def changes(self) -> list[GateChange]:
        """Gates whose verdict changed or whose value changed notably, verdicts first."""
        flipped = self.verdict_changes
        return flipped + [g for g in self.gates if g.notable and g not in flipped]


def _verdict(gate: GateResult | None) -> Verdict | None:
    return gate.verdict if gate is not None else None


def expand(path: Path) -> list[Path]:
    """The run directories a path stands for: itself, or a repeated drill's `run-NN/`.

    Raises ConfigError naming the path when it is missing or holds no measured run.
    """
    if not path.is_dir():
        raise ConfigError(f"{path}: no such run directory")
    if (path / "measurements.json").is_file():
        return [path]
    runs = sorted(p for p in path.glob("run-*") if (p / "measurements.json").is_file())
    if runs:
        return runs
    raise ConfigError(
        f"{path}: not a measured run (no measurements.json, and no run-NN/ folders with "
        f"one); run `gameday measure {path}` first"
    )


def last_two(history_path: Path, experiment: str) -> tuple[Path, Path]:
    """The previous and the latest run of `experiment` in the history: "what changed since
    the last drill". ConfigError when the history is missing or holds fewer than two.
    """
    from scorecards import history

    if not history_path.is_file():
        raise ConfigError(f"{history_path}: no such history database")
    conn = history.connect(history_path)
    try:
        runs = [r for r in history.runs_since(conn, None) if r.experiment == experiment]
    finally:
        conn.close()
    if len(runs) < 2:
        raise ConfigError(
            f"{history_path}: {len(runs)} scored run(s) of {experiment!r}; comparing needs two"
        )
    return Path(runs[-2].run_dir), Path(runs[-1].run_dir)


def _load(paths: Sequence[Path]) -> list[RunData]:
    runs = []
    for path in paths:
        run = load_run(path)
        bad = [p for p in run.problems if p.file == "measurements.json"]
        if bad:
            raise ConfigError(f"{path / 'measurements.json'}: {bad[0].message}")
        runs.append(run)
    return runs


def _label(runs: Sequence[RunData]) -> str:
    experiments = sorted({r.experiment for r in runs})
    if len(runs) == 1:
        return f"{experiments[0]} ({runs[0].name})"
    return f"{', '.join(experiments)} ({len(runs)} runs)"


def _per_run(gate: GateResult | None) -> list[float]:
    if gate is None:
        return []
    return [o.value for o in gate.observations if o.forced is None and o.value is not None]


def _noise(a: GateResult | None, b: GateResult | None, unit: str) -> Noise:
    a_vals, b_vals = _per_run(a), _per_run(b)
    if len(a_vals) < 2 or len(b_vals) < 2:
        n = min(len(a_vals), len(b_vals))
        return Noise(
            "unknown",
            f"{n} usable run{'s' if n != 1 else ''} on a side: run-to-run noise not measured "
            "(repeat each drill, `gameday run --repeat N`)",
        )
    a_ci = bootstrap_ci(a_vals, CONFIDENCE)
    b_ci = bootstrap_ci(b_vals, CONFIDENCE)
    apart = a_ci[1] < b_ci[0] or b_ci[1] < a_ci[0]
    shown = (
        f"{CONFIDENCE * 100:.0f} % intervals of the mean: A "
        f"[{fmt(a_ci[0], unit)}, {fmt(a_ci[1], unit)}] over {len(a_vals)} runs, B "
        f"[{fmt(b_ci[0], unit)}, {fmt(b_ci[1], unit)}] over {len(b_vals)} runs"
    )
    # With few runs the resamples include every run repeated n times often enough that
    # the percentile interval spans about the range of the runs: say so.
    rough = (
        f"; with under {FEW_RUNS} runs a side an interval is about the range of the runs"
        if min(len(a_vals), len(b_vals)) < FEW_RUNS
        else ""
    )
    if apart:
        return Noise(
            "larger", f"larger than run-to-run noise: {shown} do not overlap{rough}", a_ci, b_ci
        )
    return Noise("within", f"within run-to-run noise: {shown} overlap{rough}", a_ci, b_ci)


def _notable(
    a: GateResult | None, b: GateResult | None, change: float | None, noise: Noise
) -> bool:
    if change is None or change == 0:
        return False
    if noise.status != "unknown":
        return noise.status == "larger"
    limit = next((g.threshold for g in (b, a) if g is not None and g.threshold is not None), None)
    if limit is None:
        return False  # a validity check: only its verdict speaks
    return limit == 0 or abs(change) >= NOTABLE_SHARE * limit


def _pair(a: GateResult | None, b: GateResult | None) -> GateChange:
    some = a or b
    assert some is not None
    change = None
    if a is not None and b is not None and a.value is not None and b.value is not None:
        change = b.value - a.value
    noise = _noise(a, b, some.unit)
    return GateChange(
        id=some.id,
        title=some.title,
        unit=some.unit,
        scope=some.scope,
        a=a,
        b=b,
        change=change,
        noise=noise,
        notable=_notable(a, b, change, noise),
    )


def compare(
    a_paths: Sequence[Path], b_paths: Sequence[Path], gates: Gates, scored_at: float
) -> Comparison:
    """Score both sides with `evaluate` and pair their gates; ConfigError on bad input.

    Each path is a run directory or a repeated drill's folder (its `run-NN/` runs).
    """
    if not a_paths or not b_paths:
        raise ConfigError("compare needs at least one run on each side")
    sides = []
    for paths in (a_paths, b_paths):
        runs = _load([run for path in paths for run in expand(path)])
        sides.append(Side(_label(runs), evaluate(runs, gates, scored_at)))
    a, b = sides
    a_gates = {g.id: g for g in a.card.gates}
    b_gates = {g.id: g for g in b.card.gates}
    order = list(a_gates) + [i for i in b_gates if i not in a_gates]
    pairs = tuple(_pair(a_gates.get(i), b_gates.get(i)) for i in order)
    notes = []
    if a.card.experiment != b.card.experiment:
        notes.append(
            f"different experiments: each side is held to its own gates "
            f"(A {a.card.experiment!r}, B {b.card.experiment!r})"
        )
    a_groups = [r.world.get("data_groups") for r in a.runs if r.world]
    b_groups = [r.world.get("data_groups") for r in b.runs if r.world]
    if a_groups and b_groups and a_groups[0] != b_groups[0]:
        notes.append(
            f"store settings differ: A {_settings(a_groups[0])}; B {_settings(b_groups[0])}"
        )
    for letter, side in (("A", a), ("B", b)):
        notes += [f"{letter}: {note}" for note in side.card.notes]
    return Comparison(a, b, pairs, tuple(notes))


def _settings(groups: object) -> str:
    """`eu: min-replicas-to-write 1, min-replicas-max-lag 2` from world.json's data_groups."""
    if not isinstance(groups, dict) or not groups:
        return "Redis defaults"
    return "; ".join(
        f"{group}: " + ", ".join(f"{k} {v}" for k, v in settings.items())
        if isinstance(settings, dict)
        else f"{group}: {settings}"
        for group, settings in groups.items()
    )


def describe_change(gate: GateChange) -> str:
    """One line: `412 writes → 31 writes (-381 writes); FAIL → PASS`."""
    a_text = fmt(gate.a.value if gate.a else None, gate.unit) if gate.a else "absent"
    b_text = fmt(gate.b.value if gate.b else None, gate.unit) if gate.b else "absent"
    text = f"{a_text} → {b_text}"
    if gate.change is not None:
        text += f" ({signed(gate.change, gate.unit)})"
    va, vb = _verdict(gate.a), _verdict(gate.b)
    if gate.verdict_changed:
        text += f"; {va.value if va else 'absent'} → {vb.value if vb else 'absent'}"
    elif va is not None:
        text += f"; {va.value} on both"
    return text


def signed(value: float, unit: str) -> str:
    """A change with its sign: `+22.4 s`, `-381 writes`, `+5.2 %`."""
    if value == 0:
        return "no change"
    sign = "+" if value > 0 else "-"
    return sign + fmt(abs(value), unit)


def limits(gate: GateChange) -> str:
    """Both sides' limits, once when they are the same."""
    a = fmt_limit(gate.a.comparison, gate.a.threshold, gate.unit) if gate.a else "—"
    b = fmt_limit(gate.b.comparison, gate.b.threshold, gate.unit) if gate.b else "—"
    return a if a == b else f"A {a} · B {b}"
