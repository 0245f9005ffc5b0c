"""`gameday scorecard` and `gameday report` exit codes, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from experiments.cmd_scorecard import report, scorecard
from scorecards.sample import write_sample_run

T = 1_795_000_500.0
OBJ = {"clock": lambda: T}


def invoke(command: click.Command, args: list[str]) -> Result:
    return CliRunner().invoke(command, args, obj=dict(OBJ), catch_exceptions=False)


def run_dir(tmp_path: Path, name: str = "run", **figures: Any) -> Path:
    return write_sample_run(tmp_path / name, timeline=False, **figures)


@pytest.mark.parametrize(
    ("figures", "code", "verdict"),
    [
        pytest.param({}, 0, "PASS", id="pass"),
        pytest.param({"rto_us": 61.0}, 1, "FAIL", id="fail"),
        pytest.param({"saturated": True}, 3, "INCONCLUSIVE", id="inconclusive"),
    ],
)
def test_scorecard_exits_with_the_verdict(
    tmp_path: Path, figures: dict[str, Any], code: int, verdict: str
) -> None:
    run = run_dir(tmp_path, **figures)
    history = tmp_path / "h.sqlite"
    result = invoke(scorecard, [str(run), "--history", str(history), "--no-charts"])
    assert result.exit_code == code, result.output
    assert f"verdict: {verdict}" in result.output
    assert (run / "scorecard.md").exists() and (run / "junit.xml").exists()
    assert history.exists()


def test_scorecard_json_and_no_history(tmp_path: Path) -> None:
    run = run_dir(tmp_path)
    result = invoke(
        scorecard,
        [
            str(run),
            "--no-history",
            "--no-charts",
            "--json",
            "--history",
            str(tmp_path / "h.sqlite"),
        ],
    )
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["verdict"] == "PASS"
    assert data["runs"][0]["experiment"] == "region-kill"
    assert not (tmp_path / "h.sqlite").exists()


def test_a_repeated_drill_exits_with_the_drill_verdict(tmp_path: Path) -> None:
    runs = [run_dir(tmp_path, f"r{i}", rto_us=rto) for i, rto in enumerate([10.0, 20.0, 70.0])]
    out = tmp_path / "drill"
    result = invoke(scorecard, [*map(str, runs), "--no-history", "--no-charts", "--out", str(out)])
    assert result.exit_code == 1
    assert json.loads((out / "scorecard.json").read_text())["repeated"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--gates", "{tmp}/bad.yaml"], "bad.yaml: gates.rto_seconds", id="bad-gates"),
        pytest.param(["--gates", "{tmp}/none.yaml"], "none.yaml: cannot read", id="no-gates"),
        pytest.param(["{tmp}/no-such-run"], "not a run directory", id="no-run"),
    ],
)
def test_configuration_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.yaml").write_text("version: 1\ngates:\n  rto_seconds: {less_than: soon}\n")
    run = run_dir(tmp_path)
    argv = [a.format(tmp=tmp_path) for a in args]
    if not any("no-such-run" in a for a in argv):
        argv.insert(0, str(run))
    result = invoke(scorecard, [*argv, "--no-history", "--no-charts"])
    assert result.exit_code == 2
    assert message in result.stderr


def test_no_run_dir_is_a_usage_error() -> None:
    assert invoke(scorecard, []).exit_code == 2


def test_verify_passes_intact_and_fails_tampered(tmp_path: Path) -> None:
    run = run_dir(tmp_path)
    assert invoke(scorecard, [str(run), "--no-history", "--no-charts"]).exit_code == 0
    assert invoke(scorecard, ["--verify", str(run)]).exit_code == 0

    events = run / "events.jsonl"
    events.write_text(events.read_text().replace("us-east", "us-west"))
    result = invoke(scorecard, ["--verify", str(run)])
    assert result.exit_code == 1
    assert "TAMPERED" in result.output and "changed: events.jsonl" in result.output
    data = json.loads(invoke(scorecard, ["--verify", "--json", str(run)]).stdout)
    assert data == {"intact": False, "differences": {str(run): ["changed: events.jsonl"]}}


def test_verify_without_a_manifest_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(scorecard, ["--verify", str(run_dir(tmp_path))])
    assert result.exit_code == 2
    assert "manifest.json: missing" in result.stderr


def test_report_exit_codes(tmp_path: Path) -> None:
    history = tmp_path / "h.sqlite"
    out = tmp_path / "report"
    missing = invoke(report, ["--history", str(history), "--out", str(out)])
    assert missing.exit_code == 2

    run = run_dir(tmp_path)
    invoke(scorecard, [str(run), "--history", str(history), "--no-charts"])
    go = invoke(report, ["--history", str(history), "--out", str(out)])
    assert go.exit_code == 0, go.output
    assert "Readiness: GO" in go.stdout
    assert (out / "report.html").exists()

    stale = invoke(
        report, ["--history", str(history), "--out", str(out), "--max-age", "0", "--json"]
    )
    assert stale.exit_code == 1
    assert json.loads(stale.stdout)["decision"] == "NO-GO"
