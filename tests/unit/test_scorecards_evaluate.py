"""Evaluation: every gate at, just below and just above its threshold; INCONCLUSIVE paths."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scorecards.evaluate import Scorecard, Verdict, combine, evaluate
from scorecards.gates import Gates, parse_gates
from scorecards.rundir import load_run
from scorecards.sample import edit_measurements, write_sample_run
from scorecards.stats import bootstrap_ci

PASS, FAIL, INCONCLUSIVE = Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE
T = 1_795_000_500.0

GATES = """
version: 1
gates:
  rto_seconds: {less_than: 60}
  rpo_seconds: {less_than: 300}
  lost_after_fault: {at_most: 2}
  residency_violations: {at_most: 2}
  wrong_answers: {at_most: 2}
  error_budget: {at_most: 0.2}
  p99_latency_ms: {at_most: 2000}
  time_to_detect_seconds: {at_most: 30}
"""


def gates(extra: str = "") -> Gates:
    return parse_gates(GATES + extra, Path("gates.yaml"))


def score(
    tmp_path: Path,
    change: Callable[[dict[str, Any]], None] | None = None,
    gate_text: str = "",
    **figures: Any,
) -> Scorecard:
    figures.setdefault("time_to_detect", 5.0)
    run = write_sample_run(tmp_path / "run", timeline=False, **figures)
    if change:
        edit_measurements(run, change)
    return evaluate([load_run(run)], gates(gate_text), T)


def gate(card: Scorecard, gate_id: str) -> Verdict:
    found = [g for g in card.gates if g.id == gate_id]
    assert len(found) == 1, [g.id for g in card.gates]
    return found[0].verdict


def set_ttd(value: float | None) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        (entry,) = [e for e in doc["integrity"] if e["check"] == "time-to-detect"]
        entry["time_to_detect_seconds"] = value

    return change


def set_rto(field: str, value: Any, index: int = 0) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["rto"][index][field] = value

    return change


# (gate id, figures, expected): at, just below and just above each threshold.
CASES: list[Any] = [
    ("rto_seconds[predict/us]", {"rto_us": 60.0}, FAIL, "rto-at-60-fails-strict-less-than"),
    ("rto_seconds[predict/us]", {"rto_us": 59.99}, PASS, "rto-just-below"),
    ("rto_seconds[predict/us]", {"rto_us": 60.01}, FAIL, "rto-just-above"),
    ("rpo_seconds[us]", {"rpo_us": 300.0}, FAIL, "rpo-at-300-fails"),
    ("rpo_seconds[us]", {"rpo_us": 299.99}, PASS, "rpo-just-below"),
    ("rpo_seconds[us]", {"rpo_us": 300.01}, FAIL, "rpo-just-above"),
    ("lost_after_fault[us]", {"lost_after_fault": 2}, PASS, "lost-at"),
    ("lost_after_fault[us]", {"lost_after_fault": 1}, PASS, "lost-below"),
    ("lost_after_fault[us]", {"lost_after_fault": 3}, FAIL, "lost-above"),
    ("residency_violations[us]", {"residency_violations": 2}, PASS, "residency-at"),
    ("residency_violations[us]", {"residency_violations": 1}, PASS, "residency-below"),
    ("residency_violations[us]", {"residency_violations": 3}, FAIL, "residency-above"),
    ("wrong_answers[us]", {"wrong_answers": 2}, PASS, "wrong-at"),
    ("wrong_answers[us]", {"wrong_answers": 1}, PASS, "wrong-below"),
    ("wrong_answers[us]", {"wrong_answers": 3}, FAIL, "wrong-above"),
    # us: (failed + failed/4) / (requests + requests/4) = failed / requests
    ("error_budget[us]", {"failed_us": 2400, "requests_us": 12000}, PASS, "budget-at-0.2"),
    ("error_budget[us]", {"failed_us": 2396, "requests_us": 12000}, PASS, "budget-below"),
    ("error_budget[us]", {"failed_us": 2404, "requests_us": 12000}, FAIL, "budget-above"),
    ("p99_latency_ms[predict/us]", {"p99_ms": 2000.0}, PASS, "p99-at"),
    ("p99_latency_ms[predict/us]", {"p99_ms": 1999.9}, PASS, "p99-below"),
    ("p99_latency_ms[predict/us]", {"p99_ms": 2000.1}, FAIL, "p99-above"),
]


@pytest.mark.parametrize(
    ("gate_id", "figures", "expected"), [pytest.param(*c[:3], id=c[3]) for c in CASES]
)
def test_gate_thresholds(
    tmp_path: Path, gate_id: str, figures: dict[str, Any], expected: Verdict
) -> None:
    card = score(tmp_path, **figures)
    assert gate(card, gate_id) == expected
    assert card.verdict == expected  # every other gate passes on the sample


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(30.0, PASS, id="at"),
        pytest.param(29.99, PASS, id="below"),
        pytest.param(30.01, FAIL, id="above"),
        pytest.param(None, FAIL, id="never-detected"),
    ],
)
def test_time_to_detect(tmp_path: Path, value: float | None, expected: Verdict) -> None:
    card = score(tmp_path, set_ttd(value))
    assert gate(card, "time_to_detect_seconds[us-west/us]") == expected


def test_the_default_count_gates_allow_zero_and_fail_on_one(tmp_path: Path) -> None:
    zero = "experiments:\n  region-kill:\n    lost_after_fault: {at_most: 0}\n"
    assert gate(score(tmp_path / "a", gate_text=zero), "lost_after_fault[us]") == PASS
    one = score(tmp_path / "b", gate_text=zero, lost_after_fault=1)
    assert gate(one, "lost_after_fault[us]") == FAIL
    assert "1 writes > 0 writes" in next(
        g.reason for g in one.gates if g.gate == "lost_after_fault" and g.jurisdiction == "us"
    )


def test_a_run_that_never_recovered_fails(tmp_path: Path) -> None:
    card = score(tmp_path, rto_us=None)
    result = next(g for g in card.gates if g.id == "rto_seconds[predict/us]")
    assert result.verdict == FAIL
    assert "never recovered" in result.reason
    assert card.verdict == FAIL


def test_per_jurisdiction_override_applies_to_that_jurisdiction_only(tmp_path: Path) -> None:
    text = "jurisdictions:\n  eu: {rto_seconds: {less_than: 45}}\n"
    card = score(tmp_path, gate_text=text, rto_us=50.0, rto_eu=50.0)
    assert gate(card, "rto_seconds[predict/us]") == PASS
    assert gate(card, "rto_seconds[predict/eu]") == FAIL
    eu = next(g for g in card.gates if g.id == "rto_seconds[predict/eu]")
    assert (eu.threshold, eu.comparison) == (45, "<")


def test_per_experiment_override_and_disabled_gates(tmp_path: Path) -> None:
    text = (
        "experiments:\n  region-kill:\n    rpo_seconds: {less_than: 1}\n"
        "    time_to_detect_seconds: {enabled: false}\n"
    )
    card = score(tmp_path, gate_text=text, rpo_us=1.5)
    assert gate(card, "rpo_seconds[us]") == FAIL
    assert not [g for g in card.gates if g.gate == "time_to_detect_seconds"]
    assert any("time_to_detect_seconds" in n for n in card.notes)


# ---------------------------------------------------------------- inconclusive paths
def _drop(section: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc.pop(section)

    return change


def _no_data(doc: dict[str, Any]) -> None:
    doc["rto"][0].update(status="no-data", reason="no requests after the fault")


def test_missing_measurements_make_everything_inconclusive(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / "run", timeline=False)
    (run / "measurements.json").unlink()
    card = evaluate([load_run(run)], gates(), T)
    assert card.verdict == INCONCLUSIVE
    assert {g.verdict for g in card.gates} == {INCONCLUSIVE, PASS}
    assert gate(card, "measurements") == INCONCLUSIVE
    rto = next(g for g in card.gates if g.gate == "rto_seconds")
    assert "measurements.json: missing" in rto.reason


@pytest.mark.parametrize(
    ("change", "gate_id", "why"),
    [
        pytest.param(_no_data, "rto_seconds[predict/us]", "status 'no-data'", id="no-data"),
        pytest.param(
            set_rto("rto_seconds", "soon"),
            "rto_seconds",
            "field 'rto[0].rto_seconds': input should be a valid number, got 'soon'",
            id="malformed",
        ),
        pytest.param(_drop("rpo"), "rpo_seconds", "no `rpo` list", id="missing-rpo"),
        pytest.param(
            _drop("residency"),
            "residency_violations",
            "no `residency` list",
            id="missing-residency",
        ),
        pytest.param(
            _drop("integrity"), "wrong_answers", "no `integrity` list", id="missing-integrity"
        ),
        pytest.param(
            set_rto("p99_latency_ms_during_fault", None),
            "p99_latency_ms[predict/us]",
            "no p99",
            id="no-p99",
        ),
        pytest.param(set_rto("requests", None), "error_budget[us]", "lacks", id="no-requests"),
        pytest.param(
            set_rto("failed_after_fault", None), "error_budget[us]", "lacks", id="no-failures"
        ),
        pytest.param(
            set_rto("relapses", None), "relapses[predict/us]", "not a list", id="no-relapses"
        ),
    ],
)
def test_missing_or_unusable_data_is_inconclusive(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], gate_id: str, why: str
) -> None:
    card = score(tmp_path, change)
    result = next(g for g in card.gates if g.id == gate_id)
    assert result.verdict == INCONCLUSIVE
    assert why in result.reason
    assert card.verdict == INCONCLUSIVE


def test_an_unknown_measurements_version_is_inconclusive(tmp_path: Path) -> None:
    def v2(doc: dict[str, Any]) -> None:
        doc["version"] = 2

    card = score(tmp_path, v2)
    assert card.verdict == INCONCLUSIVE
    assert "unsupported version 2" in next(g for g in card.gates if g.id == "measurements").reason


def test_a_saturated_generator_is_inconclusive_never_pass(tmp_path: Path) -> None:
    card = score(tmp_path, saturated=True)
    assert card.verdict == INCONCLUSIVE
    assert gate(card, "load_generator") == INCONCLUSIVE
    assert gate(card, "rto_seconds[predict/us]") == INCONCLUSIVE
    assert gate(card, "p99_latency_ms[predict/us]") == INCONCLUSIVE
    # Counts are facts whatever the generator's load: they keep their verdicts.
    assert gate(card, "residency_violations[us]") == PASS


def test_a_real_loss_still_fails_a_saturated_run(tmp_path: Path) -> None:
    card = score(tmp_path, saturated=True, lost_after_fault=5)
    assert gate(card, "lost_after_fault[us]") == FAIL
    assert card.verdict == FAIL


@pytest.mark.parametrize("missing", ["load.json", "events.jsonl"])
def test_a_missing_load_or_events_file_is_inconclusive(tmp_path: Path, missing: str) -> None:
    run = write_sample_run(tmp_path / "run", timeline=False, time_to_detect=5.0)
    (run / missing).unlink()
    card = evaluate([load_run(run)], gates(), T)
    check = "load_generator" if missing == "load.json" else "fault_injected"
    assert gate(card, check) == INCONCLUSIVE
    assert card.verdict == INCONCLUSIVE


def test_an_instrumentation_mismatch_is_inconclusive(tmp_path: Path) -> None:
    card = score(tmp_path, mismatch=True)
    result = next(g for g in card.gates if g.id == "rto_seconds[predict/us]")
    assert result.verdict == INCONCLUSIVE
    assert result.reason == (
        "instrumentation mismatch: Prometheus 44.2 s, client side (all traffic) 14.2 s: "
        "more than the 2.50 s bound apart"
    )
    assert gate(card, "rto_seconds[predict/eu]") == PASS
    assert card.verdict == INCONCLUSIVE


def test_a_required_cross_check_without_prometheus_is_inconclusive(tmp_path: Path) -> None:
    text = "jurisdictions:\n  us: {rto_seconds: {require_cross_check: true}}\n"
    card = score(tmp_path, _drop("rto_prometheus"), gate_text=text)
    assert gate(card, "rto_seconds[predict/us]") == INCONCLUSIVE
    assert gate(card, "rto_seconds[predict/eu]") == PASS


def test_fail_outranks_inconclusive() -> None:
    assert combine([PASS, INCONCLUSIVE, FAIL]) == FAIL
    assert combine([PASS, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([PASS, PASS]) == PASS
    assert combine([]) == INCONCLUSIVE


# ---------------------------------------------------------------- repeated drills
def drill(tmp_path: Path, rtos: list[float | None], statistic: str) -> Scorecard:
    runs = []
    for i, rto in enumerate(rtos):
        path = write_sample_run(
            tmp_path / f"run-{i:02d}", timeline=False, rto_us=rto, time_to_detect=5.0
        )
        runs.append(load_run(path))
    text = GATES.replace("{less_than: 60}", f"{{less_than: 60, statistic: {statistic}}}")
    return evaluate(runs, parse_gates(text, Path("gates.yaml")), T)


def test_repeated_drill_on_max_p95_and_ci_upper(tmp_path: Path) -> None:
    rtos: list[float | None] = [*([10.0] * 19), 100.0]
    on_max = drill(tmp_path / "max", rtos, "max")
    result = next(g for g in on_max.gates if g.id == "rto_seconds[predict/us]")
    assert (result.verdict, result.value, result.statistic) == (FAIL, 100.0, "max")
    assert "worst of 20 drills: 100 s ≥ 60 s" in result.reason

    on_p95 = drill(tmp_path / "p95", rtos, "p95")
    result = next(g for g in on_p95.gates if g.id == "rto_seconds[predict/us]")
    # linear interpolation: rank 0.95 * 19 = 18.05 → 10 + 0.05 * 90 = 14.5
    assert result.value == pytest.approx(14.5)
    assert result.verdict == PASS

    on_ci = drill(tmp_path / "ci", rtos, "ci_upper")
    result = next(g for g in on_ci.gates if g.id == "rto_seconds[predict/us]")
    values = [float(v) for v in rtos if v is not None]
    assert result.value == pytest.approx(bootstrap_ci(values, 0.95)[1])
    assert sum(values) / len(values) < (result.value or 0) < 100.0
    assert result.statistic == "ci_upper (95%)"


def test_a_drill_that_never_recovered_fails_whatever_the_statistic(tmp_path: Path) -> None:
    card = drill(tmp_path, [10.0, 12.0, None], "p95")
    result = next(g for g in card.gates if g.id == "rto_seconds[predict/us]")
    assert result.verdict == FAIL
    assert "run-02: never recovered" in result.reason


def test_run_directory_summary_is_tolerant(tmp_path: Path) -> None:
    run = tmp_path / "bare"
    run.mkdir()
    (run / "measurements.json").write_text("{not json")
    (run / "events.jsonl").write_text('{"type": "revert"}\nnot json\n')
    data = load_run(run)
    assert data.measurements is None
    assert data.experiment == "unnamed"
    assert {p.file for p in data.problems} == {"measurements.json", "load.json", "events.jsonl"}
    card = evaluate([data], gates(), T)
    assert card.verdict == INCONCLUSIVE
    assert json.dumps([g.reason for g in card.gates])  # every reason is plain text


def test_in_a_repeated_drill_a_breaking_run_fails_despite_an_inconclusive_one(
    tmp_path: Path,
) -> None:
    bad = write_sample_run(tmp_path / "a", timeline=False, rpo_us=400.0, time_to_detect=5.0)
    unsure = write_sample_run(tmp_path / "b", timeline=False, saturated=True, time_to_detect=5.0)
    card = evaluate([load_run(bad), load_run(unsure)], gates(), T)
    result = next(g for g in card.gates if g.id == "rpo_seconds[us]")
    assert (result.verdict, result.value) == (FAIL, 400.0)
    assert result.reason == "a: 400 s ≥ 300 s"
    # p95 over runs is not decided by one run: an inconclusive run keeps it inconclusive.
    p95 = parse_gates(
        GATES.replace("{less_than: 60}", "{less_than: 60, statistic: p95}"), Path("gates.yaml")
    )
    slow = write_sample_run(tmp_path / "c", timeline=False, rto_us=90.0, time_to_detect=5.0)
    card = evaluate([load_run(slow), load_run(unsure)], p95, T)
    assert gate(card, "rto_seconds[predict/us]") == INCONCLUSIVE


def _probes_shaped(doc: dict[str, Any]) -> None:
    """The field names `gameday measure` (probes/measure.py) writes."""

    def rto(kind: str, fault_id: str, rto_s: float, failed: int, requests: int) -> dict[str, Any]:
        return {
            "kind": kind, "residency": "us", "fault_id": fault_id, "fault": "kill-region",
            "target": "us-east", "fault_at": 1.0, "status": "ok", "reason": None,
            "impact": True, "recovered": True, "rto_seconds": rto_s, "recovered_at": 1.0 + rto_s,
            "uncertainty_seconds": 0.01, "failed": failed, "failed_after_fault": failed,
            "relapses": [], "brownout_seconds": 1.0,
            "latency_ms": {"p50": 20.0, "p95": 900.0, "p99": 2500.0, "requests": 90},
            "inputs": {"requests": requests, "window_seconds": 1.0},
        }  # fmt: skip

    doc["rto"] = [
        rto("predict", "f1", 12.0, 100, 800),
        rto("all", "f1", 12.0, 100, 1000),
        rto("predict", "f2", 18.0, 10, 800),  # a second fault of the same run
    ]
    doc["rto_prometheus"] = [
        {"jurisdiction": "us", "status": "ok", "rto_seconds": 40.0, "fault_id": "f2",
         "instrumentation_mismatch": True},
    ]  # fmt: skip
    doc["integrity"] = [
        {"check": "wrong-answers", "status": "ok", "reason": None, "wrong_answers": 0},
        {"check": "time-to-detect", "status": "ok", "region": "us-west",
         "time_to_detect_seconds": 12.0},
    ]  # fmt: skip


def test_measurements_in_the_probes_field_names(tmp_path: Path) -> None:
    card = score(tmp_path, _probes_shaped)
    by_id = {g.id: g for g in card.gates}
    assert "instrumentation mismatch" in by_id["rto_seconds[predict/us]"].reason
    assert by_id["rto_seconds[predict/us]"].verdict == INCONCLUSIVE
    # Two faults in one run: the worse one is the run's figure, not a second "drill".
    assert by_id["rto_seconds[predict/us]"].value == 18.0
    assert len(by_id["rto_seconds[predict/us]"].observations) == 1
    assert by_id["p99_latency_ms[predict/us]"].verdict == FAIL
    assert by_id["p99_latency_ms[predict/us]"].value == 2500.0
    budget = by_id["error_budget[us]"]  # kind "all" alone: no request counted twice
    assert budget.value == pytest.approx(0.1)
    assert budget.observations[0].evidence == {"failed": 100.0, "requests": 1000.0}
    assert by_id["wrong_answers"].verdict == PASS
    assert by_id["time_to_detect_seconds[us-west/us]"].verdict == PASS


@pytest.mark.parametrize(
    ("journal", "guardrail", "expected"),
    [
        pytest.param(None, None, None, id="no-journal-no-check"),
        pytest.param({"status": "completed", "deviated": False}, None, PASS, id="completed"),
        pytest.param({"status": "interrupted"}, None, INCONCLUSIVE, id="interrupted"),
        pytest.param(
            {"status": "interrupted"},
            {"message": "eu fell to 90 %"},
            FAIL,
            id="guardrail-breach-fails",
        ),
    ],
)
def test_a_drill_must_run_to_completion(
    tmp_path: Path,
    journal: dict[str, Any] | None,
    guardrail: dict[str, Any] | None,
    expected: Verdict | None,
) -> None:
    run = write_sample_run(tmp_path / "run", timeline=False)
    if journal is not None:
        (run / "journal.json").write_text(json.dumps(journal))
    if guardrail is not None:
        (run / "guardrail.json").write_text(json.dumps(guardrail))
    card = evaluate([load_run(run)], gates(), T)
    ids = {g.id for g in card.gates}
    if expected is None:
        assert "drill_completed" not in ids
        return
    assert gate(card, "drill_completed") == expected
    if expected != PASS:
        assert card.verdict != PASS  # an unfinished or breached drill never passes
    if guardrail is not None:
        result = next(g for g in card.gates if g.id == "drill_completed")
        assert "guardrail: eu fell to 90 %" in result.reason


def test_a_mismatch_without_the_compared_figures_names_this_gates_own() -> None:
    # measurements.json files written before the bound was recorded.
    from scorecards.evaluate import _mismatch_reason

    old = [{"status": "ok", "rto_seconds": 44.2, "instrumentation_mismatch": True}]
    assert _mismatch_reason(old, 14.2) == (
        "instrumentation mismatch: client side 14.2 s, Prometheus 44.2 s"
    )


# ---------------------------------------------------------------- RPO: vacuous and holes
def set_rpo(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["rpo"][0].update(fields)

    return change


def test_lost_after_fault_without_writes_after_the_fault_is_inconclusive(tmp_path: Path) -> None:
    why = "no write acknowledged after the fault: nothing to lose after it"
    change = set_rpo(lost_after_fault=None, acknowledged_after_fault=0, lost_after_fault_reason=why)
    card = score(tmp_path, change)
    result = next(g for g in card.gates if g.id == "lost_after_fault[us]")
    assert (result.verdict, result.reason) == (INCONCLUSIVE, why)
    assert gate(card, "rpo_seconds[us]") == PASS
    assert card.verdict == INCONCLUSIVE


def test_a_ledger_hole_is_inconclusive_unless_a_loss_after_the_fault_is_proven(
    tmp_path: Path,
) -> None:
    hole = {"status": "no-data", "reason": "3 sequence numbers are missing", "unaccounted": 3}
    card = score(tmp_path / "a", set_rpo(**hole))
    assert gate(card, "lost_after_fault[us]") == INCONCLUSIVE
    assert gate(card, "rpo_seconds[us]") == INCONCLUSIVE
    within = score(tmp_path / "c", set_rpo(**hole, lost_after_fault=2))  # at_most: 2
    assert gate(within, "lost_after_fault[us]") == INCONCLUSIVE
    lost = score(tmp_path / "b", set_rpo(**hole, lost_after_fault=4))
    result = next(g for g in lost.gates if g.id == "lost_after_fault[us]")
    assert result.verdict == FAIL
    assert (
        result.reason
        == "4 writes lost after the fault (status 'no-data': 3 sequence numbers are missing)"
    )


# ---------------------------------------------------------------- integrity: nothing to compare
def no_digest(canary_mismatches: int) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        doc["integrity"][0].update(
            status="no-data",
            reason="no expected model digest (none given, none deployed in world.json)",
            wrong_answers=canary_mismatches,
            unexpected_digests=None,
        )

    return change


def test_wrong_answers_without_an_expected_digest_are_inconclusive(tmp_path: Path) -> None:
    card = score(tmp_path, no_digest(2))  # at_most: 2
    assert gate(card, "wrong_answers[us]") == INCONCLUSIVE
    assert card.verdict == INCONCLUSIVE


def test_canary_mismatches_beyond_the_limit_fail_even_without_a_digest(tmp_path: Path) -> None:
    card = score(tmp_path, no_digest(3))
    result = next(g for g in card.gates if g.id == "wrong_answers[us]")
    assert result.verdict == FAIL
    assert result.reason.startswith("at least 3 answers (status 'no-data': no expected model")


def test_a_malformed_events_record_makes_the_fault_check_inconclusive(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / "run", timeline=False, time_to_detect=5.0)
    (run / "events.jsonl").write_text(
        '{"type": "fault", "fault": "kill-region", "target": "us-east", "id": "f1", '
        '"applied_at": "2026-11-30T10:00:00Z"}\n'
    )
    card = evaluate([load_run(run)], gates(), T)
    result = next(g for g in card.gates if g.id == "fault_injected")
    assert result.verdict == INCONCLUSIVE
    assert result.reason == (
        "events.jsonl: line 1: field 'applied_at': expected epoch seconds (a number), "
        "got '2026-11-30T10:00:00Z'"
    )
    assert card.verdict == INCONCLUSIVE


# ---------------------------------------------------------------- relapses and faults
RELAPSE = {"start_at": T + 40.0, "end_at": T + 70.0, "length_seconds": 30.0, "failures": 2400}


def _relapse(doc: dict[str, Any]) -> None:
    # predict · us recovered, then failed again for 30 s: 2,400 more failures.
    doc["rto"][0].update(relapses=[RELAPSE], failed_after_fault=1200 + 2400)


def test_a_relapse_fails_its_gate_and_burns_the_error_budget(tmp_path: Path) -> None:
    card = score(tmp_path, _relapse)
    by_id = {g.id: g for g in card.gates}
    assert (by_id["relapses[predict/us]"].verdict, by_id["relapses[predict/us]"].value) == (
        FAIL,
        1.0,
    )
    assert by_id["relapses[predict/us]"].observations[0].evidence["relapses"] == [RELAPSE]
    assert by_id["relapses[write/us]"].verdict == PASS
    # (1,200 + 2,400 + 300) / (12,000 + 3,000): the relapse counts, not only the
    # failures before recovery (those alone burn 0.1).
    budget = by_id["error_budget[us]"]
    assert budget.verdict == FAIL
    assert budget.value == pytest.approx(0.26)
    assert card.verdict == FAIL


def test_no_relapse_seen_in_unobserved_time_is_inconclusive(tmp_path: Path) -> None:
    card = score(tmp_path, set_rto("unobserved_after_recovery_seconds", 10.5))
    result = next(g for g in card.gates if g.id == "relapses[predict/us]")
    assert result.verdict == INCONCLUSIVE
    assert "10.5 s after the recovery went unobserved" in result.reason

    # A relapse that was seen fails whatever else went unseen.
    def both(doc: dict[str, Any]) -> None:
        _relapse(doc)
        doc["rto"][0]["unobserved_after_recovery_seconds"] = 10.5

    assert gate(score(tmp_path / "b", both), "relapses[predict/us]") == FAIL


def test_the_relapses_gate_can_be_loosened(tmp_path: Path) -> None:
    card = score(tmp_path, _relapse, gate_text="  relapses: {at_most: 1}\n")
    assert gate(card, "relapses[predict/us]") == PASS


def test_a_never_recovered_stream_has_no_relapse_count(tmp_path: Path) -> None:
    card = score(tmp_path, rto_us=None)
    assert gate(card, "relapses[predict/us]") == INCONCLUSIVE
    assert gate(card, "rto_seconds[predict/us]") == FAIL


def _two_faults(doc: dict[str, Any]) -> None:
    """A US kill (f1) and an EU kill (f2); the blast-radius entries name who covers them."""
    for entry in doc["rto"]:
        entry["fault_id"] = "f1" if entry["residency"] == "us" else "f2"
    doc["rto"] += [
        {**doc["rto"][0], "fault_id": "f2", "recovered": False, "rto_seconds": None,
         "covered_by": "f1"},
        {**doc["rto"][2], "fault_id": "f1", "status": "no-data", "reason": "too short",
         "covered_by": "f2"},
    ]  # fmt: skip
    doc["rto_prometheus"] = [
        {"jurisdiction": "us", "residency": "us", "fault_id": "f1", "status": "ok",
         "rto_seconds": 15.0,
         "instrumentation_mismatch": False},
        {"jurisdiction": "us", "residency": "us", "fault_id": "f2", "status": "ok",
         "rto_seconds": 99.0,
         "instrumentation_mismatch": True},
        {"jurisdiction": "eu", "residency": "eu", "fault_id": "f2", "status": "ok",
         "rto_seconds": 0.0,
         "instrumentation_mismatch": False},
    ]  # fmt: skip


def test_entries_covered_by_another_fault_do_not_gate(tmp_path: Path) -> None:
    # Each stream is judged by its own fault's entry; the covered ones (a not-recovered
    # us entry under f2, a no-data eu entry under f1) and f2's Prometheus mismatch on us
    # do not reach the us gates.
    card = score(tmp_path, _two_faults)
    assert gate(card, "rto_seconds[predict/us]") == PASS
    assert gate(card, "rto_seconds[predict/eu]") == PASS
    assert gate(card, "error_budget[eu]") == PASS
    assert card.verdict == PASS


def test_without_covered_by_an_overlapping_fault_is_inconclusive(tmp_path: Path) -> None:
    def uncovered(doc: dict[str, Any]) -> None:
        _two_faults(doc)
        doc["rto"][-1]["covered_by"] = None

    card = score(tmp_path, uncovered)
    assert gate(card, "rto_seconds[predict/eu]") == INCONCLUSIVE
