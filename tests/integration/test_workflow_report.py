"""The report job of the scheduled-drill workflow, its shell steps run in bash as GitHub would.

Constructed run directories stand in for the drill jobs' artifacts; the real `gameday`
of this checkout scores and reports them. A NO-GO (a failed or inconclusive drill, or
none at all) must fail the job; a GO must not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from scorecards.sample import write_sample_run
from tests.unit.test_workflow import BIN, run_step, step


def report_job(tmp_path: Path, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Run the report job's shell steps on constructed run directories, as the runner would."""
    work = tmp_path / "checkout"
    work.mkdir(parents=True)
    os.symlink(BIN.parent, work / ".venv")  # the steps call .venv/bin/gameday
    for name, figures in runs.items():
        write_sample_run(work / "runs" / f"run-{name}", timeline=False, **figures)
    summary = tmp_path / "summary.md"
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    codes: dict[str, Any] = {}
    for name in ("Record the runs in a history", "Readiness report", "Job summary"):
        done = run_step(step("report", name)["run"], work, env, tmp_path)
        codes[name] = done.returncode
    codes["summary"] = summary.read_text() if summary.exists() else ""
    codes["briefing"] = (work / "report" / "briefing.html").exists()
    return codes


def test_the_report_job_fails_on_no_go_and_passes_on_go(tmp_path: Path) -> None:
    failing = report_job(
        tmp_path / "a",
        {
            "region-kill": {},
            "network-partition": {"lost_after_fault": 4, "experiment": "network-partition"},
        },
    )
    assert failing["Record the runs in a history"] == 0  # FAIL is the drill jobs' to gate
    assert failing["Readiness report"] == 1  # NO-GO fails the job
    assert failing["Job summary"] == 0
    assert "Readiness: NO-GO" in failing["summary"] and "network-partition" in failing["summary"]
    assert "writes acknowledged by an isolated primary" in failing["summary"]  # what to fix
    assert failing["briefing"]

    inconclusive = report_job(tmp_path / "b", {"region-kill": {"saturated": True}})
    assert inconclusive["Readiness report"] == 1

    passing = report_job(tmp_path / "c", {"region-kill": {}})
    assert passing["Readiness report"] == 0
    assert "Readiness: GO" in passing["summary"]

    empty = report_job(tmp_path / "d", {})
    assert empty["Record the runs in a history"] == 2  # no run directory at all: an error
