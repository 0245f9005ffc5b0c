"""The readiness briefing: one self-contained HTML page a board reads in two minutes.

Per experiment and jurisdiction: the latest verdict, its age, the latest RTO and RPO
against their targets and an inline SVG sparkline of their trend. Then the residual
risks: every failing or inconclusive gate of each experiment's latest drill, and every
stale drill, each with what to look at. Then what the number of drills can and cannot
show. No script, no font, no network: inline CSS and SVG only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from scorecards.evaluate import Verdict, fmt
from scorecards.history import HistoryRun
from scorecards.html import page, pill, table
from scorecards.render import iso
from scorecards.report import Readiness, Row

STALE = "STALE"
FRESHNESS = "freshness"

# What to look at when a gate fails, by gate key. A gate another part adds later falls
# back to GENERIC until it gets its own line here.
HINTS: dict[str, str] = {
    "rto_seconds": (
        "recovery took longer than the target: look at how fast a dead region is detected "
        "(the router's health-check interval times the fall count) and replaced (the failover "
        "controller's `down-after-milliseconds` and quorum)"
    ),
    "rpo_seconds": (
        "acknowledged writes were lost over this span: the replicas lagged behind the "
        "primary at the fault; watch the replication lag and consider `min-replicas-max-lag` "
        "or `WAIT` for writes that must survive a failover"
    ),
    "lost_after_fault": (
        "writes acknowledged by an isolated primary: consider `min-replicas-to-write`"
    ),
    "residency_violations": (
        "requests were answered outside their jurisdiction: check that each router backend "
        "holds only its jurisdiction's regions and fails closed (503) when all are down"
    ),
    "wrong_answers": (
        "a bad replica answered: keep the model digest check (`verify_model_digest`) and the "
        "feature checksums on in every region, and canaries in the traffic"
    ),
    "error_budget": (
        "too many requests failed during the drill: shorten detection (health-check "
        "interval and fall count) and retry idempotent reads in another region"
    ),
    "p99_latency_ms": (
        "answers were slow during the fault: check the client and router timeouts "
        "(`timeout connect`, `timeout server`) and retries against the dead region"
    ),
    "time_to_detect_seconds": (
        "the corrupt replica stayed in service too long: its health check must verify what "
        "it serves (model digest, feature checksums) so the router takes it out"
    ),
    "relapses": (
        "failures came back after recovery: look for flapping health checks or a second failover"
    ),
    "drill_completed": (
        "the drill did not finish: a guardrail stopped it (the blast radius passed the plan: "
        "see guardrail.json) or it was interrupted (see journal.json); fix it and run it again"
    ),
    "measurements": (
        "the measurements are missing or unreadable: run `gameday measure RUN_DIR` and read "
        "its errors"
    ),
    "load_generator": (
        "the load generator was saturated, so latency and recovery are distorted: run with "
        "more workers (`--workers N`) or fewer users"
    ),
    "fault_injected": (
        "no usable fault record in events.jsonl: check that the experiment's method ran its "
        "fault actions and that events.jsonl is intact"
    ),
    FRESHNESS: "run it again",
}
MISMATCH = "the router's counters and the clients disagree: check scrape interval and timeouts"
NEVER_RECOVERED = (
    "the service never recovered before the observation ended: check that a replica was "
    "promoted and that the router marked a region of the jurisdiction up again"
)
NO_DATA = (
    "the gate could not be judged (missing or unusable measurement): check the probe's "
    "inputs (timeline, Prometheus, write read-back) and run the drill again"
)
GENERIC = "read the gate's evidence in the run's scorecard.html"
CHECKS = ("drill_completed", "measurements", "load_generator", "fault_injected")


def hint(gate: str, verdict: str, reason: str) -> str:
    """What to look at for one failing or inconclusive gate (or a stale drill).

    The reason decides first where it names a cause the gate key does not (a saturated
    generator, an instrumentation mismatch, a drill that never recovered); an
    inconclusive gate gets the missing-data hint, not the hint for a breach it did
    not show.
    """
    if "instrumentation mismatch" in reason:
        return MISMATCH
    if "saturated" in reason:
        return HINTS["load_generator"]
    if gate in CHECKS or gate == FRESHNESS:
        return HINTS[gate]
    if verdict == Verdict.INCONCLUSIVE:
        return NO_DATA
    if gate == "rto_seconds" and "never recovered" in reason:
        return NEVER_RECOVERED
    return HINTS.get(gate, GENERIC)


@dataclass(frozen=True)
class Risk:
    """One residual risk: a non-passing gate of a latest drill, or a stale drill."""

    experiment: str
    scope: str
    run: str
    when: float
    gate: str
    gate_id: str
    verdict: str  # FAIL | INCONCLUSIVE | STALE
    reason: str
    hint: str


def _latest(runs: Sequence[HistoryRun]) -> dict[str, HistoryRun]:
    latest: dict[str, HistoryRun] = {}
    for run in runs:  # oldest first: the last one seen wins
        latest[run.experiment] = run
    return latest


def latest_run_ids(runs: Sequence[HistoryRun]) -> list[int]:
    """The history ids of each experiment's latest run (the runs the risks come from)."""
    return sorted(r.id for r in _latest(runs).values())


def _gates_of(run: HistoryRun, card: Any) -> list[tuple[str, str, str, str | None, str]]:
    """(gate, id, verdict, jurisdiction, reason) of every gate of a run.

    From the stored scorecard (which has the reasons); from the gate rows, without
    reasons, when the stored scorecard has no gate list.
    """
    gates = card.get("gates") if isinstance(card, dict) else None
    if isinstance(gates, list) and all(isinstance(g, dict) for g in gates):
        return [
            (
                str(g.get("gate")),
                str(g.get("id", g.get("gate"))),
                str(g.get("verdict")),
                g.get("jurisdiction") if isinstance(g.get("jurisdiction"), str) else None,
                str(g.get("reason") or ""),
            )
            for g in gates
        ]
    return [(g.gate, g.gate_id, g.verdict, g.jurisdiction, "") for g in run.gates]


def residual_risks(
    report: Readiness, runs: Sequence[HistoryRun], cards: Mapping[int, Any]
) -> list[Risk]:
    """Every FAIL or INCONCLUSIVE gate of each experiment's latest run, then stale drills.

    `cards` maps history ids to stored scorecard documents (`latest_run_ids` says which
    are needed). Ordered by experiment, FAIL before INCONCLUSIVE.
    """
    risks: list[Risk] = []
    order = {Verdict.FAIL.value: 0, Verdict.INCONCLUSIVE.value: 1}
    for experiment, run in sorted(_latest(runs).items()):
        found = [
            Risk(
                experiment,
                jurisdiction or "all",
                run.run_dir,
                run.when,
                gate,
                gate_id,
                verdict,
                reason,
                hint(gate, verdict, reason),
            )
            for gate, gate_id, verdict, jurisdiction, reason in _gates_of(run, cards.get(run.id))
            if verdict in order
        ]
        risks += sorted(found, key=lambda r: order[r.verdict])
    stale: dict[tuple[str, float], list[Row]] = {}
    for row in report.rows:
        if row.age_days > report.max_age_days:
            stale.setdefault((row.experiment, row.latest_at), []).append(row)
    for (experiment, latest_at), rows in stale.items():
        reason = (
            f"latest drill {rows[0].age_days:.1f} days old (max {report.max_age_days:g}): it no "
            "longer shows how the platform behaves today"
        )
        risks.append(
            Risk(
                experiment,
                ", ".join(r.jurisdiction for r in rows),
                "",
                latest_at,
                FRESHNESS,
                FRESHNESS,
                STALE,
                reason,
                hint(FRESHNESS, STALE, reason),
            )
        )
    return risks


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(risks: Sequence[Risk]) -> str:
    """The residual-risk section for report.md (and so for a CI job summary)."""
    lines = ["## Residual risks", ""]
    if not risks:
        return "\n".join(
            [*lines, "None: every gate of every experiment's latest drill passed.", ""]
        )
    lines += [
        "| experiment | scope | gate | verdict | what the drill showed | what to look at |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {_md_cell(k.experiment)} | {_md_cell(k.scope)} | `{k.gate_id}` | {k.verdict} | "
        f"{_md_cell(k.reason) or 'no reason recorded'} | {_md_cell(k.hint)} |"
        for k in risks
    ]
    return "\n".join([*lines, ""])


SPARK_W, SPARK_H, SPARK_PAD = 140.0, 30.0, 3.0
RED, GREEN, GREY = "#b42318", "#1b7f3b", "#667085"


def sparkline(series: Sequence[tuple[float, float | None]], target: float | None) -> str:
    """An inline SVG of a figure over the drills, oldest left, with the target dashed.

    Drills are evenly spaced (the order matters, not the gaps between them). A value
    at or over the target is a red dot; None (never recovered) a red cross at the top.
    """
    if not series:
        return '<span class="muted">no conclusive drill</span>'
    values = [v for _, v in series if v is not None]
    top = max([*values, target or 0.0, 1e-9]) * 1.15
    n = len(series)
    inner_w, inner_h = SPARK_W - 2 * SPARK_PAD, SPARK_H - 2 * SPARK_PAD

    def x(i: int) -> float:
        return SPARK_PAD + (inner_w * i / (n - 1) if n > 1 else inner_w / 2)

    def y(v: float) -> float:
        return SPARK_PAD + inner_h * (1 - v / top)

    parts = [
        f'<svg class="spark" width="{SPARK_W:g}" height="{SPARK_H:g}" '
        f'viewBox="0 0 {SPARK_W:g} {SPARK_H:g}" role="img">'
    ]
    shown = "; ".join(
        f"{iso(t)[:10]}: {fmt(v, 's') if v is not None else 'never recovered'}" for t, v in series
    )
    parts.append(f"<title>{escape(shown)}</title>")
    if target is not None:
        ty = y(target)
        parts.append(
            f'<line x1="0" y1="{ty:.1f}" x2="{SPARK_W:g}" y2="{ty:.1f}" stroke="{RED}" '
            'stroke-width="1" stroke-dasharray="3,2"/>'
        )
    points = [(x(i), y(v)) for i, (_, v) in enumerate(series) if v is not None]
    if len(points) > 1:
        line = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline points="{line}" fill="none" stroke="{GREY}" stroke-width="1.2"/>')
    for i, (_, v) in enumerate(series):
        if v is None:
            cx, cy = x(i), SPARK_PAD + 1
            parts.append(
                f'<path d="M{cx - 2.5:.1f},{cy - 2.5:.1f}L{cx + 2.5:.1f},{cy + 2.5:.1f}'
                f'M{cx - 2.5:.1f},{cy + 2.5:.1f}L{cx + 2.5:.1f},{cy - 2.5:.1f}" '
                f'stroke="{RED}" stroke-width="1.6"/>'
            )
            continue
        bad = target is not None and v >= target
        parts.append(
            f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="2.2" fill="{RED if bad else GREEN}"/>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _figure_cell(series: Sequence[tuple[float, float | None]], target: float | None) -> str:
    if series:
        last = series[-1][1]
        latest = "never recovered" if last is None else fmt(last, "s")
    else:
        latest = "n/a"
    goal = f"target &lt; {escape(fmt(target, 's'))}" if target is not None else "no target"
    return (
        f'<div class="fig"><b>{escape(latest)}</b> <span class="muted">{goal}</span></div>'
        + sparkline(series, target)
    )


def _age_cell(row: Row, max_age_days: float) -> str:
    text = f"{row.age_days:.1f} days"
    if row.age_days > max_age_days:
        return f'<span style="color:{RED};font-weight:700">{escape(text)} (stale)</span>'
    return escape(text)


def _code(text: str) -> str:
    """Escaped text with `backticked` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(text))


EXTRA_CSS = (
    "<style>.muted{color:#667085;font-size:12px}.fig{white-space:nowrap}"
    ".banner .verdict{white-space:nowrap}"
    "svg.spark{display:block;margin-top:3px}td.hint{min-width:260px}</style>"
)


def to_html(report: Readiness, risks: Sequence[Risk]) -> str:
    """The briefing page: experiments, residual risks, what the drills can show."""
    color = GREEN if report.decision == "GO" else RED
    body = EXTRA_CSS + (
        f'<div class="banner" style="background:{color}"><div class="verdict">'
        f'{escape(report.decision)}</div><div><div class="what">Readiness briefing</div>'
        f'<div class="sub">{escape(iso(report.generated_at))}: drills of the last '
        f"{report.since_days:g} days from <code>{escape(report.history)}</code>; a drill "
        f"older than {report.max_age_days:g} days is stale.</div></div></div>"
    )
    if not report.rows:
        body += (
            "<section><h2>Experiments</h2><p>No drill in the window: NO-GO until one is "
            "run and scored.</p></section>"
        )
    else:
        rows = [
            [
                pill(r.decision),
                f"<b>{escape(r.experiment)}</b>",
                escape(r.jurisdiction),
                pill(r.latest_verdict),
                _age_cell(r, report.max_age_days),
                _figure_cell(r.rto_series, r.rto_target),
                _figure_cell(r.rpo_series, r.rpo_target),
                f"{r.drills} ({r.passed} / {r.failed} / {r.inconclusive})",
            ]
            for r in report.rows
        ]
        body += (
            "<section><h2>Experiments</h2>"
            + table(
                [
                    "decision",
                    "experiment",
                    "jurisdiction",
                    "latest verdict",
                    "age",
                    "RTO (latest, trend)",
                    "RPO (latest, trend)",
                    "drills (pass / fail / inconclusive)",
                ],
                rows,
                raw=True,
            )
            + '<p class="muted">Trend: one dot per conclusive drill, oldest left; red: at or '
            "over the target (dashed); a cross: never recovered.</p></section>"
        )
    body += "<section><h2>Residual risks</h2>"
    if risks:
        body += table(
            ["experiment", "scope", "gate", "verdict", "what the drill showed", "what to look at"],
            [
                [
                    escape(k.experiment),
                    escape(k.scope),
                    f"<code>{escape(k.gate_id)}</code>",
                    pill(k.verdict) if k.verdict != STALE else pill("NO-GO", STALE),
                    escape(k.reason) or '<span class="muted">no reason recorded</span>',
                    f'<span class="hint">{_code(k.hint)}</span>',
                ]
                for k in risks
            ],
            raw=True,
        )
    else:
        body += "<p>None: every gate of every experiment's latest drill passed.</p>"
    body += "</section>"
    if report.rows:
        body += "<section><h2>What these drills can and cannot show</h2>"
        for r in report.rows:
            notes = list(r.statements)
            if r.rto_not_recovered:
                notes.insert(0, f"{r.rto_not_recovered} drill(s) never recovered.")
            if r.inconclusive:
                notes.append(f"{r.inconclusive} inconclusive drill(s) are left out of the trend.")
            body += f"<h3>{escape(r.experiment)} · {escape(r.jurisdiction)}</h3>"
            body += '<ul class="notes">' + "".join(f"<li>{escape(s)}</li>" for s in notes)
            body += "</ul>"
        body += "</section>"
    return page(f"Readiness briefing: {report.decision}", body)
