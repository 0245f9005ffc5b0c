"""Rendering a scorecard as JSON (versioned schema), Markdown (a PR comment) and JUnit XML.

JUnit mapping: one `<testcase>` per gate; FAIL → `<failure>`, INCONCLUSIVE →
`<skipped>` (the gate could not be evaluated: CI shows it as neither passed nor failed,
while the command's exit code 3 still blocks the pipeline); PASS → an empty testcase.
Every testcase carries its evidence in `<system-out>`.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scorecards.evaluate import (
    SCORECARD_VERSION,
    GateResult,
    Scorecard,
    Verdict,
    fmt,
    fmt_limit,
    jurisdiction_of,
    mismatched,
    p99_of,
    requests_of,
)

ICON = {Verdict.PASS: "✅", Verdict.FAIL: "❌", Verdict.INCONCLUSIVE: "⚠️"}


def iso(epoch: float | None, sep: str = " ", zone: str = " UTC") -> str:
    """Epoch seconds as `YYYY-MM-DD HH:MM:SS UTC`; `n/a` for None."""
    if epoch is None:
        return "n/a"
    stamp = datetime.fromtimestamp(epoch, tz=UTC)
    return stamp.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + zone


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def gate_dict(gate: GateResult) -> dict[str, Any]:
    """One gate as it appears in scorecard.json."""
    return {
        "id": gate.id,
        "gate": gate.gate,
        "title": gate.title,
        "verdict": gate.verdict.value,
        "jurisdiction": gate.jurisdiction,
        "kind": gate.kind,
        "value": gate.value,
        "unit": gate.unit,
        "comparison": gate.comparison,
        "threshold": gate.threshold,
        "statistic": gate.statistic,
        "reason": gate.reason,
        "observations": [
            {
                "run": o.run,
                "value": o.value,
                "verdict": o.forced.value if o.forced else None,
                "reason": o.reason,
                "evidence": o.evidence,
            }
            for o in gate.observations
        ],
    }


def to_dict(card: Scorecard) -> dict[str, Any]:
    """The scorecard.json document (schema: scorecards/scorecard.schema.json)."""
    data = {
        "schema": "gameday.scorecard",
        "version": SCORECARD_VERSION,
        "experiment": card.experiment,
        "verdict": card.verdict.value,
        "repeated": card.repeated,
        "scored_at": iso(card.scored_at, "T", "Z"),
        "gates_file": {"path": card.gates_path, "sha256": card.gates_sha256},
        "summary": card.counts(),
        "runs": [
            {
                "name": run.name,
                "started_at": iso(run.started_at, "T", "Z") if run.started_at else None,
                "saturated": run.saturated,
                "cpu_max_percent": run.cpu_max_percent,
                "faults": [
                    {"fault": f.fault, "target": f.target, "applied_at": f.applied_at}
                    for f in run.faults
                ],
                "problems": [str(p) for p in run.problems],
            }
            for run in card.runs
        ],
        "gates": [gate_dict(g) for g in card.gates],
        "charts": list(card.charts),
        "notes": list(card.notes),
    }
    return dict(_json_safe(data))


def to_json(card: Scorecard) -> str:
    """scorecard.json text."""
    return json.dumps(to_dict(card), indent=2, sort_keys=False) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _limit(gate: GateResult) -> str:
    return fmt_limit(gate.comparison, gate.threshold, gate.unit)


def key_figures(card: Scorecard) -> dict[str, list[list[str]]]:
    """Tables of the measured figures: `rto` and `rpo` rows of strings, per run.

    An RTO row carries the Prometheus-side figure of its fault and jurisdiction beside
    the client-side one: on the `all` row (what Prometheus is compared with), or on
    every row of the jurisdiction when the run has no `all` row.
    """
    rto_rows, rpo_rows = [], []
    for run in card.runs:
        entries = run.entries("rto")
        prom = run.entries("rto_prometheus")
        with_all = {e.get("residency") for e in entries if e.get("kind") == "all"}
        for e in entries:
            unc = e.get("uncertainty_seconds")
            rto = e.get("rto_seconds")
            shown = "not recovered" if e.get("recovered") is False else fmt(_f(rto), "s")
            hidden = _f(e.get("unobserved_before_recovery_seconds"))
            beside = e.get("kind") == "all" or e.get("residency") not in with_all
            failed = e.get("failed_after_fault", e.get("failed"))
            rto_rows.append(
                [
                    run.name,
                    f"{e.get('kind', '?')} · {e.get('residency', '?')}",
                    str(e.get("status", "?"))
                    + (f" (judged by {e['covered_by']})" if e.get("covered_by") else ""),
                    shown
                    + (f" ± {fmt(_f(unc), 's')}" if _f(unc) is not None else "")
                    + (f" ({fmt(hidden, 's')} unobserved)" if hidden else ""),
                    _cross_check(prom, e) if beside else "—",
                    "yes" if e.get("impact") else "no",
                    f"{_int(failed)} / {_int(requests_of(e))}",
                    _relapses(e.get("relapses")),
                    fmt(_f(e.get("brownout_seconds")), "s"),
                    fmt(p99_of(e), "ms"),
                ]
            )
        for e in run.entries("rpo"):
            rpo_rows.append(
                [
                    run.name,
                    str(e.get("residency", "?")),
                    str(e.get("status", "?")),
                    fmt(_f(e.get("rpo_seconds")), "s"),
                    _int(e.get("acknowledged")),
                    _int(e.get("lost")),
                    _lost_after(e),
                    _int(e.get("ambiguous")),
                    _lag(e.get("replication_lag_estimate")),
                ]
            )
    return {"rto": rto_rows, "rpo": rpo_rows}


def _cross_check(prom: list[dict[str, Any]], entry: dict[str, Any]) -> str:
    """The Prometheus-side RTO of the entry's fault and jurisdiction, with the comparison."""
    fault = entry.get("fault_id")
    found = [
        p
        for p in prom
        if jurisdiction_of(p) == entry.get("residency")
        and (fault is None or p.get("fault_id") in (None, fault))
    ]
    if not found:
        return "n/a"
    p = found[0]
    if p.get("status") != "ok":
        return str(p.get("status", "?"))
    text = "not recovered" if p.get("recovered") is False else fmt(_f(p.get("rto_seconds")), "s")
    diff, bound = _f(p.get("difference_seconds")), _f(p.get("mismatch_bound_seconds"))
    if diff is not None and bound is not None:
        text += f" ({diff:+.2f} s, bound {fmt(bound, 's')})"
    if mismatched(p):
        text += " MISMATCH"
    return text


def _relapses(value: Any) -> str:
    if not isinstance(value, list):
        return "n/a"
    lengths = [_f(r.get("length_seconds")) for r in value if isinstance(r, dict)]
    longest = max((v for v in lengths if v is not None), default=None)
    return f"{len(value)}" + (f" (longest {fmt(longest, 's')})" if longest is not None else "")


def _f(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _lost_after(entry: dict[str, Any]) -> str:
    """Writes lost after the fault, or why the count is open (never a vacuous 0)."""
    if entry.get("lost_after_fault") is None and entry.get("acknowledged_after_fault") == 0:
        return "n/a (none acknowledged after)"
    return _int(entry.get("lost_after_fault"))


def _lag(estimate: Any) -> str:
    """The replication lag at the fault (Prometheus), or why there is none."""
    if not isinstance(estimate, dict):
        return "n/a"
    if estimate.get("status") != "ok":
        return f"n/a ({estimate.get('status')})"
    return fmt(_f(estimate.get("lag_seconds")), "s")


def _int(value: Any) -> str:
    number = _f(value)
    return "n/a" if number is None else f"{int(number):,}"


RTO_HEAD = [
    "run",
    "kind · jurisdiction",
    "status",
    "RTO (client side)",
    "RTO (Prometheus)",
    "impact",
    "failed / requests after the fault",
    "relapses",
    "brownout",
    "p99 during fault",
]
RPO_CAPTION = (
    "RPO from the ledger of acknowledged writes, beside the replication lag Prometheus "
    "saw at the fault (what an asynchronous failover is expected to lose)"
)
RPO_HEAD = [
    "run",
    "jurisdiction",
    "status",
    "RPO",
    "acknowledged",
    "lost",
    "lost after fault",
    "ambiguous",
    "replication lag at fault",
]


def blocking(card: Scorecard) -> list[GateResult]:
    """The gates that did not pass: failures first, then the inconclusive ones."""
    return sorted(
        (g for g in card.gates if g.verdict != Verdict.PASS),
        key=lambda g: g.verdict != Verdict.FAIL,
    )


def headline(card: Scorecard) -> str:
    """One sentence: the verdict and the gate counts."""
    counts = card.counts()
    total = len(card.gates)
    drills = f" over {len(card.runs)} drills" if card.repeated else ""
    unsure = f", {counts['INCONCLUSIVE']} inconclusive" if counts["INCONCLUSIVE"] else ""
    decision = {
        Verdict.PASS: "GO: every gate passed",
        Verdict.FAIL: f"NO-GO: {counts['FAIL']} of {total} gates failed{unsure}",
        Verdict.INCONCLUSIVE: f"NO-GO: {counts['INCONCLUSIVE']} of {total} gates could not be "
        "evaluated (inconclusive is never a pass)",
    }[card.verdict]
    return f"{decision}{drills}"


def to_markdown(card: Scorecard, out_dir: Path) -> str:
    """scorecard.md: verdict first, the gate table, key figures, links to the files."""
    lines = [
        f"## {ICON[card.verdict]} {card.verdict.value}: {card.experiment}",
        "",
        f"**{headline(card)}.**",
        "",
        *[
            f"- {ICON[g.verdict]} **{_cell(g.title)}** ({g.scope}): {_cell(g.reason)}"
            for g in blocking(card)
        ],
        *([""] if card.verdict != Verdict.PASS else []),
        f"Scored {iso(card.scored_at)} against `{card.gates_path}` "
        f"(sha256 `{card.gates_sha256[:12]}`).",
        "",
        "| verdict | gate | scope | measured | limit | why |",
        "|---|---|---|---|---|---|",
    ]
    for gate in card.gates:
        measured = fmt(gate.value, gate.unit) if gate.comparison else "—"
        lines.append(
            f"| {ICON[gate.verdict]} {gate.verdict.value} | {_cell(gate.title)} | {gate.scope} | "
            f"{measured} | {_limit(gate)} | {_cell(gate.reason)} |"
        )
    figures = key_figures(card)
    lines += ["", "### Key figures", ""]
    for run in card.runs:
        faults = (
            ", ".join(f"{f.fault} {f.target} at {iso(f.applied_at)}" for f in run.faults)
            or "none recorded"
        )
        cpu = run.cpu_max_percent
        load = (
            "unknown"
            if run.saturated is None
            else ("**saturated**" if run.saturated else "not saturated")
        )
        cpu_text = f", peak CPU {cpu:.0f} %" if cpu is not None else ""
        lines.append(f"- `{run.name}`: fault {faults}; load generator {load}{cpu_text}.")
    if figures["rto"]:
        lines += [
            "",
            "RTO measured client side (± the largest request gap around recovery), beside "
            "the Prometheus-side cross-check (its difference and the mismatch bound):",
            "",
        ]
        lines += _md_table(RTO_HEAD, figures["rto"])
    if figures["rpo"]:
        lines += ["", RPO_CAPTION + ":", ""]
        lines += _md_table(RPO_HEAD, figures["rpo"])
    lines += ["", "### Files", ""]
    files = ["scorecard.html", "scorecard.json", "junit.xml", "manifest.json", *card.charts]
    lines.append(" · ".join(f"[{name}]({name})" for name in files))
    if card.repeated:
        lines += ["", "Runs:", ""]
        for run in card.runs:
            rel = os.path.relpath(run.path / "scorecard.md", out_dir)
            lines.append(f"- [{run.name}]({Path(rel).as_posix()})")
    if card.notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {note}" for note in card.notes]
    return "\n".join(lines) + "\n"


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def to_junit(card: Scorecard) -> str:
    """junit.xml (Jenkins/Ant JUnit format): one testcase per gate."""
    counts = card.counts()
    stamp = iso(card.scored_at, "T", "")
    suites = ET.Element(
        "testsuites",
        {
            "name": f"gameday scorecard {card.experiment}",
            "tests": str(len(card.gates)),
            "failures": str(counts["FAIL"]),
            "errors": "0",
            "skipped": str(counts["INCONCLUSIVE"]),
            "time": "0",
        },
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        {
            "name": f"gameday.{card.experiment}",
            "tests": str(len(card.gates)),
            "failures": str(counts["FAIL"]),
            "errors": "0",
            "skipped": str(counts["INCONCLUSIVE"]),
            "time": "0",
            "timestamp": stamp,
        },
    )
    props = ET.SubElement(suite, "properties")
    for name, value in (
        ("verdict", card.verdict.value),
        ("experiment", card.experiment),
        ("gates_file", card.gates_path),
        ("gates_sha256", card.gates_sha256),
        ("runs", ",".join(r.name for r in card.runs)),
    ):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for gate in card.gates:
        case = ET.SubElement(
            suite,
            "testcase",
            {"name": gate.id, "classname": f"gameday.{card.experiment}.{gate.gate}", "time": "0"},
        )
        summary = f"{gate.title} ({gate.scope}): {gate.reason}"
        if gate.verdict == Verdict.FAIL:
            failure = ET.SubElement(case, "failure", {"message": summary, "type": "GateFailed"})
            failure.text = f"measured {fmt(gate.value, gate.unit)}, limit {_limit(gate)}"
        elif gate.verdict == Verdict.INCONCLUSIVE:
            ET.SubElement(case, "skipped", {"message": f"INCONCLUSIVE: {summary}"})
        out = ET.SubElement(case, "system-out")
        out.text = json.dumps(_json_safe(gate_dict(gate)["observations"]), sort_keys=True)
    ET.indent(suites, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"
