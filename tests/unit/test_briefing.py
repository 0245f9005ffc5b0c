"""The readiness briefing: every hint comes from a gate that really fails, the page, sparklines."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from experiments.cmd_scorecard import report as report_command
from infra.errors import ConfigError
from scorecards import briefing
from scorecards.briefing import (
    GENERIC,
    HINTS,
    MISMATCH,
    NEVER_RECOVERED,
    NO_DATA,
    Risk,
    latest_run_ids,
    residual_risks,
    sparkline,
    to_html,
)
from scorecards.evaluate import GateResult, Verdict, evaluate
from scorecards.gates import parse_gates
from scorecards.history import connect, record, runs_since, stored_scorecards
from scorecards.report import DAY, readiness
from scorecards.rundir import load_run
from scorecards.sample import edit_measurements, write_sample_run
from scorecards.scoring import score

REPO = Path(__file__).resolve().parents[2]
GATES = parse_gates((REPO / "experiments" / "gates.yaml").read_text(), Path("gates.yaml"))
T = 1_795_000_500.0  # scoring time; the sample runs start at 1_795_000_000


def risks_of(db: Path, now: float = T, max_age: float = 30.0) -> list[Risk]:
    conn = connect(db)
    try:
        runs = runs_since(conn, None)
        cards = stored_scorecards(conn, latest_run_ids(runs))
    finally:
        conn.close()
    return residual_risks(readiness(runs, now, 90.0, max_age, str(db)), runs, cards)


def scored(tmp_path: Path, name: str = "run", **figures: Any) -> Path:
    run = write_sample_run(tmp_path / name, timeline=False, **figures)
    score([run], GATES, clock=lambda: T, history=tmp_path / "h.sqlite", charts=False)
    return tmp_path / "h.sqlite"


def _guardrail(run: Path) -> None:
    (run / "guardrail.json").write_text(json.dumps({"message": "eu error ratio 0.4 > 0.05"}))


def _bad_measurements(run: Path) -> None:
    (run / "measurements.json").write_text('{"version": 1, "rto": [')


def _bad_events(run: Path) -> None:
    (run / "events.jsonl").write_text('{"type": "fault", "fault": "kill-region"\n')


def _rpo_no_data(run: Path) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["rpo"][0]["status"] = "no-data"
        doc["rpo"][0]["reason"] = "no write acknowledged"

    edit_measurements(run, change)


# (figures for write_sample_run, edit of the run directory, gate, verdict, hint)
CASES: list[Any] = [
    pytest.param({"rto_us": 61.0}, None, "rto_seconds", "FAIL", HINTS["rto_seconds"], id="rto"),
    pytest.param({"rto_us": None}, None, "rto_seconds", "FAIL", NEVER_RECOVERED, id="never"),
    pytest.param({"mismatch": True}, None, "rto_seconds", "INCONCLUSIVE", MISMATCH, id="mismatch"),
    pytest.param({"rpo_us": 400.0}, None, "rpo_seconds", "FAIL", HINTS["rpo_seconds"], id="rpo"),
    pytest.param(
        {"lost_after_fault": 2},
        None,
        "lost_after_fault",
        "FAIL",
        HINTS["lost_after_fault"],
        id="lost-after-fault",
    ),
    pytest.param(
        {"residency_violations": 1},
        None,
        "residency_violations",
        "FAIL",
        HINTS["residency_violations"],
        id="residency",
    ),
    pytest.param(
        {"wrong_answers": 1}, None, "wrong_answers", "FAIL", HINTS["wrong_answers"], id="wrong"
    ),
    pytest.param(
        {"failed_us": 6_000}, None, "error_budget", "FAIL", HINTS["error_budget"], id="budget"
    ),
    pytest.param(
        {"p99_ms": 3_000.0}, None, "p99_latency_ms", "FAIL", HINTS["p99_latency_ms"], id="p99"
    ),
    pytest.param(
        {"experiment": "replica-corruption", "time_to_detect": 45.0},
        None,
        "time_to_detect_seconds",
        "FAIL",
        HINTS["time_to_detect_seconds"],
        id="time-to-detect",
    ),
    pytest.param(
        {"saturated": True},
        None,
        "load_generator",
        "INCONCLUSIVE",
        HINTS["load_generator"],
        id="saturated",
    ),
    pytest.param(
        {}, _guardrail, "drill_completed", "FAIL", HINTS["drill_completed"], id="guardrail"
    ),
    pytest.param(
        {},
        _bad_measurements,
        "measurements",
        "INCONCLUSIVE",
        HINTS["measurements"],
        id="measurements",
    ),
    pytest.param(
        {}, _bad_events, "fault_injected", "INCONCLUSIVE", HINTS["fault_injected"], id="events"
    ),
    pytest.param({}, _rpo_no_data, "rpo_seconds", "INCONCLUSIVE", NO_DATA, id="no-data"),
]


@pytest.mark.parametrize(("figures", "edit", "gate", "verdict", "expected"), CASES)
def test_a_failing_gate_gets_its_hint(
    tmp_path: Path,
    figures: dict[str, Any],
    edit: Callable[[Path], None] | None,
    gate: str,
    verdict: str,
    expected: str,
) -> None:
    run = write_sample_run(tmp_path / "run", timeline=False, **figures)
    if edit is not None:
        edit(run)
    score([run], GATES, clock=lambda: T, history=tmp_path / "h.sqlite", charts=False)
    found = [r for r in risks_of(tmp_path / "h.sqlite") if r.gate == gate]
    assert found, f"no risk for {gate}"
    assert {(r.verdict, r.hint) for r in found} == {(verdict, expected)}
    assert all(r.reason for r in found)


def _with_extra_gate(tmp_path: Path, gate: str) -> Path:
    """A scored run with one more failing gate than this branch's evaluation knows."""
    run = write_sample_run(tmp_path / "run", timeline=False)
    card = evaluate([load_run(run)], GATES, T)
    extra = GateResult(
        id=f"{gate}[us]",
        gate=gate,
        title=gate,
        unit="",
        jurisdiction="us",
        kind=None,
        verdict=Verdict.FAIL,
        value=2.0,
        comparison="<=",
        threshold=0.0,
        statistic=None,
        reason="2 > 0",
        observations=(),
    )
    card = dataclasses.replace(card, gates=(*card.gates, extra), verdict=Verdict.FAIL)
    conn = connect(tmp_path / "h.sqlite")
    record(conn, card)
    conn.close()
    return tmp_path / "h.sqlite"


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        pytest.param("relapses", HINTS["relapses"], id="relapses"),
        pytest.param("some_future_gate", GENERIC, id="generic-fallback"),
    ],
)
def test_gates_added_elsewhere_get_their_hint(tmp_path: Path, gate: str, expected: str) -> None:
    risks = [r for r in risks_of(_with_extra_gate(tmp_path, gate)) if r.gate == gate]
    assert [(r.gate_id, r.verdict, r.hint) for r in risks] == [(f"{gate}[us]", "FAIL", expected)]


def test_a_stale_drill_says_run_it_again(tmp_path: Path) -> None:
    db = scored(tmp_path)
    assert risks_of(db, now=T + 10 * DAY) == []
    stale = risks_of(db, now=T + 40 * DAY)
    assert {(r.gate, r.verdict, r.hint) for r in stale} == {("freshness", "STALE", "run it again")}
    assert [r.scope for r in stale] == ["eu, us"]  # one risk per experiment and latest drill
    assert stale[0].reason.startswith("latest drill 40.0 days old (max 30)")


def test_every_hint_is_covered_by_a_case() -> None:
    covered = {p.values[4] for p in CASES} | {HINTS["relapses"], GENERIC, "run it again"}
    every = {*HINTS.values(), MISMATCH, NEVER_RECOVERED, NO_DATA, GENERIC}
    assert every == covered


def test_only_the_latest_run_of_an_experiment_counts(tmp_path: Path) -> None:
    old = write_sample_run(tmp_path / "old", timeline=False, lost_after_fault=5)
    new = write_sample_run(tmp_path / "new", timeline=False)
    edit_measurements(new, lambda d: d["run"].update(started_at=T - 100))
    score([old, new], GATES, clock=lambda: T, history=tmp_path / "h.sqlite", charts=False)
    assert risks_of(tmp_path / "h.sqlite") == []


def test_hint_prefers_the_cause_named_in_the_reason() -> None:
    saturated = "load generator saturated (peak CPU 97 %): latency and recovery are distorted"
    assert briefing.hint("rto_seconds", "INCONCLUSIVE", saturated) == HINTS["load_generator"]
    assert briefing.hint("rto_seconds", "INCONCLUSIVE", "status 'error'") == NO_DATA
    assert briefing.hint("rto_seconds", "FAIL", "61.0 s ≥ 60 s") == HINTS["rto_seconds"]


def test_sparkline_exact_shapes() -> None:
    svg = sparkline([(1.0, 10.0), (2.0, None), (3.0, 70.0)], 60.0)
    # top = 70 x 1.15 = 80.5; y(v) = 3 + 24 x (1 - v / 80.5); x spread over 134 px
    assert '<line x1="0" y1="9.1" x2="140" y2="9.1"' in svg
    assert re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="2.2" fill="(#\w+)"', svg) == [
        ("3.0", "24.0", "#1b7f3b"),
        ("137.0", "6.1", "#b42318"),
    ]
    assert svg.count("<path ") == 1  # the never-recovered drill: a cross
    assert "<title>1970-01-01: 10 s; 1970-01-01: never recovered; 1970-01-01: 70 s</title>" in svg
    assert '<polyline points="3.0,24.0 137.0,6.1"' in svg
    assert sparkline([], 60.0) == '<span class="muted">no conclusive drill</span>'
    single = sparkline([(1.0, 0.0)], None)
    assert '<circle cx="70.0" cy="27.0"' in single and "<line" not in single


def test_page_lists_experiments_risks_and_statements(tmp_path: Path) -> None:
    db = scored(tmp_path, lost_after_fault=3)
    conn = connect(db)
    runs = runs_since(conn, None)
    conn.close()
    ready = readiness(runs, T, 90.0, 30.0, str(db))
    html = to_html(ready, risks_of(db))
    assert "Readiness briefing" in html and "NO-GO" in html
    assert html.count("<svg") == 4  # RTO and RPO for us and eu
    assert (
        "writes acknowledged by an isolated primary: consider <code>min-replicas-to-write</code>"
        in html
    )
    assert "What these drills can and cannot show" in html
    assert "The worst of 1 drill is an upper bound" in html
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")


def test_empty_window_page_says_no_go(tmp_path: Path) -> None:
    html = to_html(readiness([], T, 90.0, 30.0, "h.sqlite"), [])
    assert "No drill in the window" in html and "NO-GO" in html


def test_a_corrupt_stored_scorecard_is_an_error_naming_the_run(tmp_path: Path) -> None:
    db = scored(tmp_path)
    conn = connect(db)
    conn.execute("UPDATE runs SET scorecard = '{not json'")
    with pytest.raises(ConfigError, match=r"history run 1: scorecard: not valid JSON"):
        stored_scorecards(conn, [1])
    conn.close()


def test_report_command_writes_the_briefing(tmp_path: Path) -> None:
    db = scored(tmp_path, rto_us=61.0)
    out = tmp_path / "report"
    invoke = partial(CliRunner().invoke, report_command, obj={"clock": lambda: T})
    result = invoke(["--history", str(db), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 1
    page = (out / "briefing.html").read_text()
    assert HINTS["rto_seconds"].split(":")[0] in page
    chosen = tmp_path / "elsewhere" / "board.html"
    result = invoke(["--history", str(db), "--out", str(out), "--html", str(chosen)])
    assert result.exit_code == 1 and chosen.exists()


def test_risks_in_markdown_exactly() -> None:
    risk = Risk(
        "region-kill",
        "us",
        "runs/a",
        T,
        "rto_seconds",
        "rto_seconds[predict/us]",
        "FAIL",
        "64 s ≥ 60 s | worst",
        HINTS["lost_after_fault"],
    )
    assert briefing.to_markdown([risk]) == (
        "## Residual risks\n\n"
        "| experiment | scope | gate | verdict | what the drill showed | what to look at |\n"
        "|---|---|---|---|---|---|\n"
        "| region-kill | us | `rto_seconds[predict/us]` | FAIL | 64 s ≥ 60 s \\| worst | "
        "writes acknowledged by an isolated primary: consider `min-replicas-to-write` |\n"
    )
    assert briefing.to_markdown([]) == (
        "## Residual risks\n\nNone: every gate of every experiment's latest drill passed.\n"
    )


def test_report_md_and_stdout_carry_the_risks(tmp_path: Path) -> None:
    db = scored(tmp_path, lost_after_fault=2)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        report_command, ["--history", str(db), "--out", str(out)], obj={"clock": lambda: T}
    )
    assert result.exit_code == 1
    for text in (result.stdout, (out / "report.md").read_text()):
        assert "## Residual risks" in text
        assert "| `lost_after_fault[us]` | FAIL |" in text
