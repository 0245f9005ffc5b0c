"""scorecard.html: one self-contained page for a readiness board.

No scripts, no fonts, no network: inline CSS and the charts as base64 PNG `data:` URIs.
Verdict banner first, then the gate table with the evidence behind each gate, the key
figures, the charts, and the evidence files with their digests.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from html import escape
from pathlib import Path

from scorecards.evaluate import GateResult, Scorecard, Verdict, fmt, fmt_limit
from scorecards.render import RPO_CAPTION, RPO_HEAD, RTO_HEAD, blocking, headline, iso, key_figures

COLOR = {Verdict.PASS: "#1b7f3b", Verdict.FAIL: "#b42318", Verdict.INCONCLUSIVE: "#b54708"}
BACKGROUND = {Verdict.PASS: "#e8f5ec", Verdict.FAIL: "#fdecea", Verdict.INCONCLUSIVE: "#fff4e5"}

CSS = """
*{box-sizing:border-box}
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:0;
 color:#1d2939;background:#f6f7f9;font-size:15px;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px}
.banner{border-radius:10px;padding:22px 28px;color:#fff;display:flex;align-items:center;gap:28px}
.banner .verdict{font-size:44px;font-weight:800;letter-spacing:1px}
.banner .what{font-size:20px;font-weight:600}
.banner .sub{opacity:.92;font-size:14px;margin-top:4px}
.meta{display:flex;flex-wrap:wrap;gap:10px 28px;margin:14px 2px 4px;color:#475467;font-size:13px}
section{background:#fff;border-radius:10px;padding:18px 22px;margin-top:18px;
 box-shadow:0 1px 2px rgba(16,24,40,.06)}
h2{font-size:18px;margin:0 0 12px}
table{border-collapse:collapse;width:100%;font-size:14px}
th{text-align:left;color:#475467;font-weight:600;border-bottom:2px solid #e4e7ec;padding:7px 8px}
td{border-bottom:1px solid #eaecf0;padding:7px 8px;vertical-align:top}
td.num{font-variant-numeric:tabular-nums;white-space:nowrap}
.pill{display:inline-block;border-radius:999px;padding:2px 10px;font-weight:700;font-size:12px;
 color:#fff;white-space:nowrap}
details summary{cursor:pointer;color:#475467;font-size:13px}
pre{background:#f2f4f7;padding:8px;border-radius:6px;font-size:12px;white-space:pre-wrap;
 margin:6px 0 0}
figure{margin:0 0 18px}
figure img{max-width:100%;border:1px solid #eaecf0;border-radius:6px}
figcaption{color:#475467;font-size:13px;margin-top:4px}
ul.notes li{margin:4px 0}
code{font-size:12px}
"""


def pill(verdict: Verdict | str, text: str | None = None) -> str:
    """A coloured verdict label."""
    v = Verdict(verdict) if verdict in Verdict.__members__.values() else None
    color = COLOR[v] if v else ("#1b7f3b" if verdict == "GO" else "#b42318")
    return f'<span class="pill" style="background:{color}">{escape(text or str(verdict))}</span>'


def img(path: Path, caption: str) -> str:
    """A PNG embedded as a data URI."""
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{escape(caption)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    raw: bool = False,
    backgrounds: Sequence[str] | None = None,
) -> str:
    """An HTML table; cells are escaped unless `raw`; optional background per row."""
    cells = (lambda c: c) if raw else escape
    out = ["<table><thead><tr>", *[f"<th>{escape(h)}</th>" for h in head], "</tr></thead><tbody>"]
    for i, row in enumerate(rows):
        style = f' style="background:{backgrounds[i]}"' if backgrounds and backgrounds[i] else ""
        out.append(f"<tr{style}>" + "".join(f"<td>{cells(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def page(title: str, body: str) -> str:
    """A complete HTML document with the house CSS."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _epoch(value: object) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None  # type: ignore[arg-type]


def _gate_row(gate: GateResult) -> list[str]:
    measured = fmt(gate.value, gate.unit) if gate.comparison else "—"
    limit = fmt_limit(gate.comparison, gate.threshold, gate.unit)
    evidence = [
        {"run": o.run, "value": o.value, "note": o.reason or None, **o.evidence}
        for o in gate.observations
    ]
    details = (
        f"<details><summary>{escape(gate.reason)}</summary>"
        f"<pre>{escape(json.dumps(evidence, indent=1, default=str))}</pre></details>"
    )
    return [
        pill(gate.verdict),
        f"<b>{escape(gate.title)}</b>",
        escape(gate.scope),
        f'<span class="num">{escape(measured)}</span>',
        f'<span class="num">{escape(limit)}</span>',
        details,
    ]


def to_html(card: Scorecard, chart_files: Sequence[tuple[Path, str]], files: Sequence[str]) -> str:
    """The board page; `chart_files` are (PNG path, caption); `files` the run's evidence."""
    v = card.verdict
    decision = "GO" if v == Verdict.PASS else "NO-GO"
    runs = ", ".join(r.name for r in card.runs)
    banner = (
        f'<div class="banner" style="background:{COLOR[v]}">'
        f'<div class="verdict">{decision}</div>'
        f'<div><div class="what">{escape(card.experiment)}: {v.value}</div>'
        f'<div class="sub">{escape(headline(card))}.</div></div></div>'
    )
    meta = (
        '<div class="meta">'
        f"<span>scored {escape(iso(card.scored_at))}</span>"
        f"<span>run{'s' if card.repeated else ''}: {escape(runs)}</span>"
        f"<span>gates: <code>{escape(card.gates_path)}</code> "
        f"(sha256 {escape(card.gates_sha256[:12])})</span>"
        "</div>"
    )
    blockers = ""
    if blocking(card):
        blockers = (
            f'<section style="border-left:6px solid {COLOR[v]}"><h2>What blocks the release'
            '</h2><ul class="notes">'
            + "".join(
                f"<li>{pill(g.verdict)} <b>{escape(g.title)}</b> ({escape(g.scope)}): "
                f"{escape(g.reason)}</li>"
                for g in blocking(card)
            )
            + "</ul></section>"
        )
    counts = card.counts()
    gate_section = (
        "<section><h2>Gates "
        f"({counts['PASS']} passed, {counts['FAIL']} failed, "
        f"{counts['INCONCLUSIVE']} inconclusive)</h2>"
        + table(
            ["verdict", "gate", "scope", "measured", "limit", "why (click for evidence)"],
            [_gate_row(g) for g in card.gates],
            raw=True,
            backgrounds=[
                "" if g.verdict == Verdict.PASS else BACKGROUND[g.verdict] for g in card.gates
            ],
        )
        + "</section>"
    )
    figures = key_figures(card)
    fig_html = "<section><h2>Key figures</h2>"
    for run in card.runs:
        faults = (
            ", ".join(f"{f.fault} {f.target} at {iso(f.applied_at)}" for f in run.faults)
            or "none recorded"
        )
        load = "unknown" if run.saturated is None else ("SATURATED" if run.saturated else "ok")
        cpu = run.cpu_max_percent
        fig_html += (
            f"<p><b>{escape(run.name)}</b>: fault {escape(faults)}; load generator "
            f"{escape(load)}{escape(f', peak CPU {cpu:.0f} %' if cpu is not None else '')}</p>"
        )
    if figures["rto"]:
        fig_html += (
            "<p>RTO, client side (± the largest request gap around recovery), beside the "
            "Prometheus-side cross-check (its difference and the mismatch bound)</p>"
        )
        fig_html += table(RTO_HEAD, figures["rto"])
    if figures["rpo"]:
        fig_html += f"<p>{escape(RPO_CAPTION)}</p>"
        fig_html += table(RPO_HEAD, figures["rpo"])
    fig_html += "</section>"
    charts = ""
    if chart_files:
        charts = (
            "<section><h2>Charts</h2>"
            + "".join(img(path, caption) for path, caption in chart_files)
            + "</section>"
        )
    notes = ""
    if card.notes:
        notes = (
            '<section><h2>Notes</h2><ul class="notes">'
            + "".join(f"<li>{escape(n)}</li>" for n in card.notes)
            + "</ul></section>"
        )
    evidence = (
        "<section><h2>Evidence</h2><p>Every file of the run directory is listed with its "
        "SHA-256 in <code>manifest.json</code>; <code>gameday scorecard --verify RUN_DIR</code> "
        "detects any change.</p><p>"
        + " · ".join(f"<code>{escape(f)}</code>" for f in files)
        + "</p></section>"
    )
    return page(
        f"{decision} {card.experiment}: {v.value}",
        banner + meta + blockers + gate_section + fig_html + charts + notes + evidence,
    )
