"""Scoring runs end to end: evaluate, write every output, the manifest, and the history.

`score` takes one or several run directories. Each run gets its own scorecard in its
directory. Several runs of one experiment are also a repeated drill: their combined
scorecard (RTO on the configured statistic) goes to `drill_dir` (default: the runs'
common parent folder, `drill-<experiment>/`), and its verdict is the one that counts.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import ConfigError
from scorecards import manifest
from scorecards.evaluate import Scorecard, Verdict, combine, evaluate
from scorecards.gates import Gates
from scorecards.render import to_json, to_junit, to_markdown
from scorecards.rundir import OUTPUT_DIRS, OUTPUT_NAMES, RunData, load_run

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Scored:
    """A written scorecard: where it went and which files it wrote."""

    card: Scorecard
    out_dir: Path
    files: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """Everything one `score` call produced; `verdict` decides the exit code."""

    runs: tuple[Scored, ...]
    drills: tuple[Scored, ...]
    verdict: Verdict


def _fault_at(run: RunData) -> float | None:
    times = [f.applied_at for f in run.faults if f.applied_at is not None]
    times += [
        float(e["fault_at"])
        for e in run.entries("rto")
        if isinstance(e.get("fault_at"), int | float) and not isinstance(e["fault_at"], bool)
    ]
    return min(times) if times else None


def _success_threshold(run: RunData) -> float:
    for entry in run.entries("rto"):
        inputs = entry.get("inputs")
        sources: list[dict[str, Any]] = [entry, inputs if isinstance(inputs, dict) else {}]
        for source in sources:
            for key in ("success_threshold", "threshold", "S"):
                value = source.get(key)
                if isinstance(value, float) and 0 < value <= 1:
                    return value
    return 0.99


def run_charts(run: RunData, out_dir: Path) -> list[tuple[str, str]]:
    """Draw the run's charts into `out_dir/charts`; (relative path, caption) each."""
    from scorecards import charts

    # Per-bin aggregates, never the rows: a soak's timeline is tens of millions of them.
    bins = charts.read_bins(run.path / "timeline.parquet", _fault_at(run))
    if bins is None:
        return []
    fault_at = bins.first
    made: list[tuple[str, str]] = []
    charts.traffic_chart(
        bins,
        fault_at,
        run.entries("rto"),
        _success_threshold(run),
        out_dir / "charts" / "traffic.png",
    )
    made.append(
        (
            "charts/traffic.png",
            "Success ratio and p99 latency per jurisdiction; red: the fault; shaded: the RTO "
            "span to recovery (dashed green).",
        )
    )
    if bins.served is not None:
        charts.served_by_chart(bins, fault_at, out_dir / "charts" / "served-by.png")
        made.append(
            (
                "charts/served-by.png",
                "Share of each jurisdiction's requests answered by each region (grey: no "
                "answer). A region of another jurisdiction here is a residency violation.",
            )
        )
    charts.lost_writes_chart(
        bins, fault_at, run.entries("rpo"), out_dir / "charts" / "lost-writes.png"
    )
    made.append(
        (
            "charts/lost-writes.png",
            "Acknowledged writes over time (grey) and each acknowledged write that was lost "
            "(red), at its acknowledgement time.",
        )
    )
    return made


def drill_charts(card: Scorecard, out_dir: Path) -> list[tuple[str, str]]:
    """The RTO distribution of a repeated drill against its target."""
    from scorecards import charts

    rto = [g for g in card.gates if g.gate == "rto_seconds" and g.threshold is not None]
    if not rto:
        return []
    values = {g.scope: [o.value if o.forced is None else None for o in g.observations] for g in rto}
    targets = {g.scope: float(g.threshold) for g in rto if g.threshold is not None}
    stats = {g.scope: g.value for g in rto}
    name = next((g.statistic for g in rto if g.statistic), "statistic") or "statistic"
    charts.rto_distribution_chart(
        values, targets, stats, name, out_dir / "charts" / "rto-distribution.png"
    )
    return [
        (
            "charts/rto-distribution.png",
            f"RTO of each drill (dots; X: never recovered) against the target (red) and the "
            f"gated statistic, {name} (dashed).",
        )
    ]


def _clear_outputs(out_dir: Path) -> None:
    for name in OUTPUT_NAMES:
        (out_dir / name).unlink(missing_ok=True)
    for folder in OUTPUT_DIRS:
        target = out_dir / folder
        if target.is_dir():
            for path in target.glob("*.png"):
                path.unlink()


def write_outputs(
    card: Scorecard,
    out_dir: Path,
    chart_maker: Callable[[Path], list[tuple[str, str]]] | None,
) -> Scored:
    """Write charts, scorecard.json/.md/.html, junit.xml, then manifest.json (last)."""
    from scorecards.html import to_html

    out_dir.mkdir(parents=True, exist_ok=True)
    notes = list(card.notes)
    if (out_dir / manifest.MANIFEST).exists():
        try:
            changed = [
                d
                for d in manifest.verify(out_dir)
                if d.path not in OUTPUT_NAMES and d.path.split("/")[0] not in OUTPUT_DIRS
            ]
        except ConfigError as exc:
            changed = []
            notes.append(f"previous manifest unreadable: {exc}")
        if changed:
            notes.append(
                "inputs differ from the previous manifest: " + ", ".join(map(str, changed))
            )
    _clear_outputs(out_dir)
    made = chart_maker(out_dir) if chart_maker else []
    card = dataclasses.replace(card, notes=tuple(notes), charts=tuple(p for p, _ in made))
    (out_dir / "scorecard.json").write_text(to_json(card))
    (out_dir / "scorecard.md").write_text(to_markdown(card, out_dir))
    (out_dir / "junit.xml").write_text(to_junit(card))
    present = [*manifest.digests(out_dir), "scorecard.html", manifest.MANIFEST]
    html = to_html(card, [(out_dir / p, caption) for p, caption in made], sorted(set(present)))
    (out_dir / "scorecard.html").write_text(html)
    manifest.write_manifest(out_dir)
    files = tuple(sorted({*OUTPUT_NAMES, manifest.MANIFEST, *card.charts}))
    return Scored(card, out_dir, files)


def _common_parent(paths: Sequence[Path]) -> Path:
    resolved = [str(p.resolve().parent) for p in paths]
    return Path(os.path.commonpath(resolved))


def score(
    run_dirs: Sequence[Path],
    gates: Gates,
    clock: Callable[[], float] = time.time,
    history: Path | None = None,
    drill_dir: Path | None = None,
    progress: Progress | None = None,
    charts: bool = True,
) -> Outcome:
    """Score runs, write outputs (and history); raises ConfigError for a bad RUN_DIR."""
    if not run_dirs:
        raise ConfigError("no run directory given")
    say = progress or (lambda _msg: None)
    runs = [load_run(path) for path in run_dirs]
    scored_at = clock()
    conn: Any = None
    if history is not None:
        from scorecards.history import connect

        conn = connect(history)
    scored: list[Scored] = []
    try:
        for run in runs:
            say(f"scoring {run.path} ({run.experiment})")
            card = evaluate([run], gates, scored_at)
            maker = (lambda out, r=run: run_charts(r, out)) if charts else None
            result = write_outputs(card, run.path, maker)
            scored.append(result)
            say(f"  {result.card.verdict.value}: {run.path / 'scorecard.md'}")
            if conn is not None:
                from scorecards.history import record

                record(conn, result.card)
    finally:
        if conn is not None:
            conn.close()

    groups: dict[str, list[RunData]] = {}
    for run in runs:
        groups.setdefault(run.experiment, []).append(run)
    drills: list[Scored] = []
    for experiment, members in groups.items():
        if len(members) < 2:
            continue
        base = drill_dir or _common_parent([r.path for r in members])
        out = base / f"drill-{experiment}" if drill_dir is None or len(groups) > 1 else base
        say(f"scoring the repeated drill {experiment} ({len(members)} runs) into {out}")
        card = evaluate(members, gates, scored_at, experiment)
        maker = (lambda o, c=card: drill_charts(c, o)) if charts else None
        drills.append(write_outputs(card, out, maker))

    deciding = [d.card.verdict for d in drills]
    deciding += [s.card.verdict for s in scored if len(groups[s.card.experiment]) < 2]
    return Outcome(tuple(scored), tuple(drills), combine(deciding))
