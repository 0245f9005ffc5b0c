"""The outputs of `gameday compare`: comparison.json, comparison.md and comparison.html.

The Markdown names what changed first (verdict changes, then notable value changes),
then every gate on both sides. The HTML is self-contained like scorecard.html.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

from scorecards import html
from scorecards.compare import (
    COMPARISON_VERSION,
    NOTABLE_SHARE,
    Comparison,
    GateChange,
    Side,
    describe_change,
    limits,
    signed,
)
from scorecards.evaluate import GateResult, fmt
from scorecards.render import ICON, _json_safe, iso

OUTPUT_NAMES = ("comparison.json", "comparison.md", "comparison.html")


def _side_dict(side: Side) -> dict[str, Any]:
    return {
        "label": side.label,
        "experiment": side.card.experiment,
        "verdict": side.card.verdict.value,
        "runs": [str(r.path) for r in side.runs],
    }


def _gate_side(gate: GateResult | None) -> dict[str, Any] | None:
    if gate is None:
        return None
    return {
        "value": gate.value,
        "verdict": gate.verdict.value,
        "comparison": gate.comparison,
        "threshold": gate.threshold,
        "statistic": gate.statistic,
        "per_run": [o.value for o in gate.observations],
        "reason": gate.reason,
    }


def to_dict(comparison: Comparison) -> dict[str, Any]:
    """The comparison.json document."""
    data = {
        "schema": "gameday.comparison",
        "version": COMPARISON_VERSION,
        "a": _side_dict(comparison.a),
        "b": _side_dict(comparison.b),
        "changes": [g.id for g in comparison.changes],
        "verdict_changes": [g.id for g in comparison.verdict_changes],
        "gates": [
            {
                "id": g.id,
                "title": g.title,
                "unit": g.unit,
                "scope": g.scope,
                "a": _gate_side(g.a),
                "b": _gate_side(g.b),
                "change": g.change,
                "verdict_changed": g.verdict_changed,
                "notable": g.notable,
                "noise": {
                    "status": g.noise.status,
                    "statement": g.noise.statement,
                    "a_interval": list(g.noise.a_interval) if g.noise.a_interval else None,
                    "b_interval": list(g.noise.b_interval) if g.noise.b_interval else None,
                },
            }
            for g in comparison.gates
        ],
        "notes": list(comparison.notes),
    }
    return dict(_json_safe(data))


def to_json(comparison: Comparison) -> str:
    return json.dumps(to_dict(comparison), indent=2) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _verdicts(gate: GateChange) -> str:
    a = gate.a.verdict.value if gate.a else "absent"
    b = gate.b.verdict.value if gate.b else "absent"
    return f"{a} → {b}" if gate.verdict_changed else a


def _noise_cell(gate: GateChange) -> str:
    return {"larger": "yes", "within": "no", "unknown": "not measured"}[gate.noise.status]


def _value(gate: GateResult | None) -> str:
    return fmt(gate.value, gate.unit) if gate is not None and gate.value is not None else "—"


def _rule() -> str:
    return (
        "Named when the verdict changed, or (repeated runs on both sides) when the "
        "difference is larger than run-to-run noise, or (a single run on a side) when it "
        f"moves the value by at least {NOTABLE_SHARE * 100:.0f} % of the gate's limit."
    )


def to_markdown(comparison: Comparison) -> str:
    """comparison.md: the sides, what changed, then every gate."""
    a, b = comparison.a, comparison.b
    lines = [
        f"## Comparison: {a.card.experiment} → {b.card.experiment}",
        "",
        "| | A | B |",
        "|---|---|---|",
        f"| runs | {_cell(a.label)} | {_cell(b.label)} |",
        f"| verdict | {ICON[a.card.verdict]} {a.card.verdict.value} | "
        f"{ICON[b.card.verdict]} {b.card.verdict.value} |",
        "",
        "### What changed",
        "",
    ]
    changes = comparison.changes
    if not changes:
        lines.append("Nothing: no verdict changed and no value changed notably.")
    for gate in changes:
        lines.append(f"- **{_cell(gate.title)}** ({gate.scope}): {_cell(describe_change(gate))}")
        if gate.noise.status != "unknown":
            lines.append(f"  ({_cell(gate.noise.statement)})")
    lines += ["", f"_{_rule()}_", ""]
    lines += [
        "### Gate by gate",
        "",
        "| gate | scope | A | B | change | limit | verdict | beyond noise |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in comparison.gates:
        change = signed(g.change, g.unit) if g.change is not None else "n/a"
        lines.append(
            f"| {_cell(g.title)} | {g.scope} | {_value(g.a)} | {_value(g.b)} | {change} | "
            f"{_cell(limits(g))} | {_verdicts(g)} | {_noise_cell(g)} |"
        )
    if comparison.notes:
        lines += ["", "### Notes", "", *[f"- {_cell(n)}" for n in comparison.notes]]
    lines += [
        "",
        f"Both sides scored {iso(a.card.scored_at)} against `{a.card.gates_path}` "
        f"(sha256 `{a.card.gates_sha256[:12]}`).",
        "",
    ]
    return "\n".join(lines)


def to_html(comparison: Comparison) -> str:
    """comparison.html: one self-contained page."""
    a, b = comparison.a, comparison.b
    sides = html.table(
        ["", "A", "B"],
        [
            ["runs", escape(a.label), escape(b.label)],
            ["verdict", html.pill(a.card.verdict), html.pill(b.card.verdict)],
        ],
        raw=True,
    )
    items = "".join(
        f"<li><b>{escape(g.title)}</b> ({escape(g.scope)}): {escape(describe_change(g))}"
        + (f"<br><small>{escape(g.noise.statement)}</small>" if g.noise.status != "unknown" else "")
        + "</li>"
        for g in comparison.changes
    )
    changed = f"<ul class='notes'>{items}</ul>" if items else "<p>Nothing changed notably.</p>"
    rows = [
        [
            g.title,
            g.scope,
            _value(g.a),
            _value(g.b),
            signed(g.change, g.unit) if g.change is not None else "n/a",
            limits(g),
            _verdicts(g),
            _noise_cell(g),
        ]
        for g in comparison.gates
    ]
    backgrounds = ["#fff4e5" if g in comparison.changes else "" for g in comparison.gates]
    gates = html.table(
        ["gate", "scope", "A", "B", "change", "limit", "verdict", "beyond noise"],
        rows,
        backgrounds=backgrounds,
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in comparison.notes)
    body = (
        f"<h1>Comparison: {escape(a.card.experiment)} → {escape(b.card.experiment)}</h1>"
        f"<section>{sides}</section>"
        f"<section><h2>What changed</h2>{changed}<p><small>{escape(_rule())}</small></p></section>"
        f"<section><h2>Gate by gate</h2>{gates}</section>"
        + (f"<section><h2>Notes</h2><ul class='notes'>{notes}</ul></section>" if notes else "")
    )
    return html.page(f"gameday compare: {a.card.experiment} → {b.card.experiment}", body)


def write(comparison: Comparison, out_dir: Path) -> list[Path]:
    """Write the three outputs into `out_dir` (created); returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in zip(
        OUTPUT_NAMES,
        (to_json(comparison), to_markdown(comparison), to_html(comparison)),
        strict=True,
    ):
        path = out_dir / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
