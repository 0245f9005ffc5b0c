from __future__ import annotations

import json
from pathlib import Path

import pytest

from probes.steady_state import NOT_MEASURED, measured

FAULT = {
    "type": "fault",
    "fault": "kill-region",
    "target": "us-east",
    "id": "f1",
    "applied_at": 100.0,
}


def _run(tmp_path: Path, faults: bool, doc: dict[str, object] | None) -> Path:
    if faults:
        (tmp_path / "events.jsonl").write_text(json.dumps(FAULT) + "\n")
    if doc is not None:
        (tmp_path / "measurements.json").write_text(json.dumps(doc))
    return tmp_path


def _rto(
    residency: str, value: float | None, status: str = "ok", recovered: bool = True
) -> dict[str, object]:
    return {
        "kind": "all",
        "residency": residency,
        "status": status,
        "rto_seconds": value,
        "recovered": recovered,
    }


DOC = {
    "rto": [
        _rto("us", 4.5),
        _rto("eu", 0.0),
        {
            "kind": "write",
            "residency": "us",
            "status": "ok",
            "rto_seconds": 99.0,
            "recovered": True,
        },
    ],
    "rpo": [
        {"residency": "us", "status": "ok", "rpo_seconds": 1.25, "lost_after_fault": 0},
        {"residency": "eu", "status": "ok", "rpo_seconds": 0.0, "lost_after_fault": 3},
    ],
    "integrity": [
        {"check": "wrong-answers", "status": "ok", "wrong_answers": 2},
        {"check": "time-to-detect", "status": "no-data"},
    ],
    "residency": [{"residency": "us", "status": "ok", "violations": 0}],
}


def test_before_any_fault_everything_is_zero(tmp_path: Path) -> None:
    run = _run(tmp_path, faults=False, doc=None)
    assert measured("rto_seconds", str(run)) == 0.0
    assert measured("lost_after_fault", configuration={"gameday_run_dir": str(run)}) == 0.0


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        pytest.param("rto_seconds", 4.5, id="rto-worst-jurisdiction-of-all-traffic"),
        pytest.param("rpo_seconds", 1.25, id="rpo"),
        pytest.param("lost_after_fault", 3.0, id="lost-after-fault"),
        pytest.param("wrong_answers", 2.0, id="wrong-answers-only-its-check"),
        pytest.param("residency_violations", 0.0, id="residency"),
    ],
)
def test_measured_figures_after_the_fault(tmp_path: Path, metric: str, value: float) -> None:
    assert measured(metric, str(_run(tmp_path, faults=True, doc=DOC))) == value


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(None, id="no-measurements"),
        pytest.param({"rto": [_rto("us", None, status="no-data")]}, id="no-data"),
        pytest.param({"rto": [_rto("us", None, recovered=False)]}, id="never-recovered"),
        pytest.param({"rto": []}, id="empty"),
    ],
)
def test_missing_data_after_a_fault_is_never_a_pass(
    tmp_path: Path, doc: dict[str, object] | None
) -> None:
    assert measured("rto_seconds", str(_run(tmp_path, faults=True, doc=doc))) == NOT_MEASURED


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metric 'mttr'"):
        measured("mttr", str(tmp_path))
    with pytest.raises(ValueError, match="not found"):
        measured("rto_seconds", str(tmp_path / "nope"))
