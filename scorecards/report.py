"""The readiness report over the history: latest verdict, freshness, trends, distributions.

One row per experiment and jurisdiction. A row is GO only when its latest drill PASSED
and is no older than `max_age_days`; the report is GO only when every row is. Run-wide
gates (no jurisdiction) count for every jurisdiction of their run. Distributions use
only conclusive drills (PASS or FAIL): an inconclusive drill's figures are not trusted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scorecards.evaluate import Verdict, combine
from scorecards.history import HistoryRun, connect, runs_since
from scorecards.render import iso
from scorecards.stats import Distribution, distribution, statements

DAY = 86_400.0
ALL = "all"


@dataclass(frozen=True)
class Row:
    """Readiness of one experiment in one jurisdiction."""

    experiment: str
    jurisdiction: str
    decision: str  # GO | NO-GO
    why: str
    latest_verdict: str
    latest_at: float
    age_days: float
    drills: int
    passed: int
    failed: int
    inconclusive: int
    rto: Distribution | None
    rto_not_recovered: int
    rpo: Distribution | None
    statements: tuple[str, ...]
    rto_series: tuple[tuple[float, float | None], ...] = field(default=(), repr=False)
    rpo_series: tuple[tuple[float, float | None], ...] = field(default=(), repr=False)
    rto_target: float | None = None
    rpo_target: float | None = None


@dataclass(frozen=True)
class Readiness:
    """The whole report."""

    decision: str
    generated_at: float
    since_days: float
    max_age_days: float
    history: str
    rows: tuple[Row, ...]
    charts: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (without the plotted series)."""
        rows = []
        for row in self.rows:
            item = asdict(row)
            item.pop("rto_series")
            item.pop("rpo_series")
            item["latest_at"] = iso(row.latest_at, "T", "Z")
            rows.append(item)
        return {
            "decision": self.decision,
            "generated_at": iso(self.generated_at, "T", "Z"),
            "since_days": self.since_days,
            "max_age_days": self.max_age_days,
            "history": self.history,
            "rows": rows,
            "charts": list(self.charts),
        }


def _jurisdictions(run: HistoryRun) -> list[str]:
    found = sorted({g.jurisdiction for g in run.gates if g.jurisdiction})
    return found or [ALL]


def _verdict_for(run: HistoryRun, jurisdiction: str) -> Verdict:
    chosen = [
        Verdict(g.verdict)
        for g in run.gates
        if g.jurisdiction in (None, jurisdiction) or jurisdiction == ALL
    ]
    return combine(chosen) if chosen else Verdict(run.verdict)


def _figure(
    run: HistoryRun, gate: str, jurisdiction: str
) -> tuple[float | None, bool, float | None]:
    """(worst conclusive value, never recovered?, threshold) of a gate for a jurisdiction."""
    rows = [
        g
        for g in run.gates
        if g.gate == gate
        and jurisdiction in (g.jurisdiction, ALL)
        and g.verdict in (Verdict.PASS, Verdict.FAIL)
    ]
    never = any(g.verdict == Verdict.FAIL and g.value is None for g in rows)
    values = [g.value for g in rows if g.value is not None]
    threshold = next((g.threshold for g in rows if g.threshold is not None), None)
    return (max(values) if values else None), never, threshold


def readiness(
    runs: list[HistoryRun], now: float, since_days: float, max_age_days: float, history: str
) -> Readiness:
    """Compute the report from stored runs (oldest first)."""
    groups: dict[tuple[str, str], list[HistoryRun]] = {}
    for run in runs:
        for j in _jurisdictions(run):
            groups.setdefault((run.experiment, j), []).append(run)
    rows = []
    for (experiment, j), group in sorted(groups.items()):
        verdicts = [_verdict_for(r, j) for r in group]
        latest, latest_verdict = group[-1], verdicts[-1]
        age = (now - latest.when) / DAY
        passed = verdicts.count(Verdict.PASS)
        failed = verdicts.count(Verdict.FAIL)
        inconclusive = verdicts.count(Verdict.INCONCLUSIVE)
        rto_values: list[float] = []
        rpo_values: list[float] = []
        not_recovered = 0
        rto_series, rpo_series = [], []
        rto_target = rpo_target = None
        for run, verdict in zip(group, verdicts, strict=True):
            rto, never, rto_t = _figure(run, "rto_seconds", j)
            rpo, _, rpo_t = _figure(run, "rpo_seconds", j)
            rto_target = rto_t if rto_t is not None else rto_target
            rpo_target = rpo_t if rpo_t is not None else rpo_target
            if verdict == Verdict.INCONCLUSIVE:
                continue
            not_recovered += int(never)
            if rto is not None and not never:
                rto_values.append(rto)
            if rpo is not None:
                rpo_values.append(rpo)
            rto_series.append((run.when, None if never else rto))
            rpo_series.append((run.when, rpo))
        if age > max_age_days:
            decision, why = (
                "NO-GO",
                f"stale: latest drill {age:.1f} days old (max {max_age_days:g})",
            )
        elif latest_verdict != Verdict.PASS:
            decision, why = "NO-GO", f"latest drill {latest_verdict.value}"
        else:
            decision, why = "GO", f"latest drill PASS, {age:.1f} days old"
        conclusive = passed + failed
        rows.append(
            Row(
                experiment=experiment,
                jurisdiction=j,
                decision=decision,
                why=why,
                latest_verdict=latest_verdict.value,
                latest_at=latest.when,
                age_days=age,
                drills=len(group),
                passed=passed,
                failed=failed,
                inconclusive=inconclusive,
                rto=distribution(rto_values) if rto_values else None,
                rto_not_recovered=not_recovered,
                rpo=distribution(rpo_values) if rpo_values else None,
                statements=tuple(statements(conclusive, failed)),
                rto_series=tuple(rto_series),
                rpo_series=tuple(rpo_series),
                rto_target=rto_target,
                rpo_target=rpo_target,
            )
        )
    decision = "GO" if rows and all(r.decision == "GO" for r in rows) else "NO-GO"
    return Readiness(decision, now, since_days, max_age_days, history, tuple(rows))


def _dist_cells(d: Distribution | None, unit: str = "s") -> list[str]:
    if d is None:
        return ["n/a"] * 4
    return [
        f"{d.median:.1f} {unit}",
        f"{d.p95:.1f} {unit}",
        f"{d.max:.1f} {unit}",
        f"{d.ci_low:.1f} to {d.ci_high:.1f} {unit}",
    ]


DIST_HEAD = ["figure", "drills", "median", "p95", "max", "95 % CI of the mean (bootstrap)"]


def to_markdown(report: Readiness) -> str:
    """report.md: the decision, the readiness table, distributions and statements."""
    icon = "✅" if report.decision == "GO" else "❌"
    lines = [
        f"# {icon} Readiness: {report.decision}",
        "",
        f"Generated {iso(report.generated_at)} from `{report.history}`: drills of the last "
        f"{report.since_days:g} days; a drill older than {report.max_age_days:g} days is stale "
        "(NO-GO).",
        "",
    ]
    if not report.rows:
        lines += ["No drill in the window: NO-GO until one is run and scored.", ""]
        return "\n".join(lines)
    lines += [
        "| decision | experiment | jurisdiction | latest verdict | latest drill | why | "
        "drills (pass / fail / inconclusive) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.decision} | {r.experiment} | {r.jurisdiction} | {r.latest_verdict} | "
            f"{iso(r.latest_at)} | {r.why} | {r.drills} ({r.passed} / {r.failed} / "
            f"{r.inconclusive}) |"
        )
    lines += ["", "## Repeated drills", ""]
    for r in report.rows:
        lines += [f"### {r.experiment} · {r.jurisdiction}", ""]
        lines.append("| " + " | ".join(DIST_HEAD) + " |")
        lines.append("|" + "---|" * len(DIST_HEAD))
        rto_n = r.rto.n if r.rto else 0
        lines.append("| RTO | " + str(rto_n) + " | " + " | ".join(_dist_cells(r.rto)) + " |")
        lines.append(
            "| RPO | "
            + str(r.rpo.n if r.rpo else 0)
            + " | "
            + " | ".join(_dist_cells(r.rpo))
            + " |"
        )
        lines.append("")
        if r.rto_not_recovered:
            lines.append(
                f"- {r.rto_not_recovered} drill(s) never recovered (not in the RTO figures)."
            )
        lines += [f"- {s}" for s in r.statements]
        if r.inconclusive:
            lines.append(f"- {r.inconclusive} inconclusive drill(s) are left out of these figures.")
        lines.append("")
    if report.charts:
        lines += ["## Trends", ""]
        lines += [f"![{Path(c).stem}]({c})" for c in report.charts]
        lines.append("")
    return "\n".join(lines)


def to_html(report: Readiness, out_dir: Path | None) -> str:
    """report.html: the same content for a board, charts embedded."""
    from html import escape

    from scorecards.html import img, page, pill, table

    color = "#1b7f3b" if report.decision == "GO" else "#b42318"
    body = (
        f'<div class="banner" style="background:{color}"><div class="verdict">'
        f'{report.decision}</div><div><div class="what">Readiness</div><div class="sub">'
        f"{escape(iso(report.generated_at))}: drills of the last {report.since_days:g} days; "
        f"older than {report.max_age_days:g} days is stale.</div></div></div>"
    )
    rows = [
        [
            pill(r.decision),
            escape(r.experiment),
            escape(r.jurisdiction),
            pill(r.latest_verdict),
            escape(iso(r.latest_at)),
            escape(r.why),
            f"{r.drills} ({r.passed} / {r.failed} / {r.inconclusive})",
        ]
        for r in report.rows
    ]
    body += (
        "<section><h2>Latest verdict per experiment and jurisdiction</h2>"
        + table(
            [
                "decision",
                "experiment",
                "jurisdiction",
                "latest verdict",
                "latest drill",
                "why",
                "drills (pass / fail / inconclusive)",
            ],
            rows,
            raw=True,
        )
        + "</section>"
    )
    for r in report.rows:
        body += f"<section><h2>{escape(r.experiment)} · {escape(r.jurisdiction)}</h2>"
        body += table(
            DIST_HEAD,
            [
                ["RTO", str(r.rto.n if r.rto else 0), *_dist_cells(r.rto)],
                ["RPO", str(r.rpo.n if r.rpo else 0), *_dist_cells(r.rpo)],
            ],
        )
        notes = list(r.statements)
        if r.rto_not_recovered:
            notes.insert(0, f"{r.rto_not_recovered} drill(s) never recovered.")
        body += '<ul class="notes">' + "".join(f"<li>{escape(s)}</li>" for s in notes) + "</ul>"
        body += "</section>"
    if report.charts and out_dir is not None:
        body += (
            "<section><h2>Trends</h2>"
            + "".join(img(out_dir / c, Path(c).stem.replace("-", " ")) for c in report.charts)
            + "</section>"
        )
    return page(f"Readiness: {report.decision}", body)


def report(
    db: Path,
    since_days: float,
    max_age_days: float,
    out_dir: Path | None,
    clock: Callable[[], float] = time.time,
    briefing: Path | None = None,
) -> Readiness:
    """Build the readiness report; with `out_dir`, write report.md, .html, .json and charts.

    With `briefing`, also write the readiness briefing page there (scorecards.briefing),
    and add its residual risks to report.md.
    """
    now = clock()
    conn = connect(db)
    try:
        runs = runs_since(conn, now - since_days * DAY)
        if briefing is not None:
            from scorecards.briefing import latest_run_ids
            from scorecards.history import stored_scorecards

            cards = stored_scorecards(conn, latest_run_ids(runs))
    finally:
        conn.close()
    result = readiness(runs, now, since_days, max_age_days, str(db))
    risks_md = ""
    if briefing is not None:
        from scorecards.briefing import residual_risks
        from scorecards.briefing import to_html as briefing_html
        from scorecards.briefing import to_markdown as risks_markdown

        risks = residual_risks(result, runs, cards)
        briefing.parent.mkdir(parents=True, exist_ok=True)
        briefing.write_text(briefing_html(result, risks))
        risks_md = "\n" + risks_markdown(risks)
    if out_dir is None:
        return result
    out_dir.mkdir(parents=True, exist_ok=True)
    charts: list[str] = []
    if result.rows:
        from scorecards.charts import trend_chart

        for key, label, target_attr in (
            ("rto", "RTO (s)", "rto_target"),
            ("rpo", "RPO (s)", "rpo_target"),
        ):
            series = {
                f"{r.experiment} · {r.jurisdiction}": list(getattr(r, f"{key}_series"))
                for r in result.rows
            }
            if not any(v is not None for s in series.values() for _, v in s):
                continue
            targets = {getattr(r, target_attr) for r in result.rows} - {None}
            target = targets.pop() if len(targets) == 1 else None
            name = f"{key}-trend.png"
            trend_chart(series, target, label, f"{key.upper()} per drill over time", out_dir / name)
            charts.append(name)
    result = Readiness(
        result.decision,
        result.generated_at,
        result.since_days,
        result.max_age_days,
        result.history,
        result.rows,
        tuple(charts),
    )
    (out_dir / "report.md").write_text(to_markdown(result) + risks_md)
    (out_dir / "report.html").write_text(to_html(result, out_dir))
    (out_dir / "report.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    return result
