"""The scheduled-drill workflow: valid for GitHub, calls only what exists, gates on exit codes.

The workflow cannot run here (it needs GitHub's runners), so its pieces are checked one
by one: the file against GitHub's published schema; every `make` target and `gameday`
command and option it names; the plan step's script, run as the runner would; and the
report job's steps, run in bash on constructed run directories, so a NO-GO is seen to
fail them. The exit codes those steps rely on are checked on scored constructed runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

from experiments import catalog
from experiments.cli import main
from experiments.cmd_scorecard import EXIT_FOR_VERDICT
from experiments.runner import DrillResult, verdict_exit_code
from scorecards.evaluate import Verdict
from scorecards.gates import load_gates
from scorecards.sample import write_sample_run
from scorecards.scoring import score

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "multi-region.yml"
BIN = Path(sys.executable).parent
T = 1_795_000_500.0


def load() -> dict[Any, Any]:
    return dict(yaml.safe_load(WORKFLOW.read_text()))


def triggers(doc: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the key `on` as the boolean True.
    return dict(doc.get("on") or doc[True])


def steps(job: str) -> list[dict[str, Any]]:
    return list(load()["jobs"][job]["steps"])


def step(job: str, name: str) -> dict[str, Any]:
    return next(s for s in steps(job) if s.get("name") == name)


def scripts() -> list[str]:
    return [s["run"] for job in load()["jobs"].values() for s in job["steps"] if "run" in s]


# ------------------------------------------------------------------ schema


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    tool = BIN / "check-jsonschema"
    assert tool.exists(), "check-jsonschema is in the dev extra: make setup"
    return subprocess.run(
        [str(tool), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_workflow_validates_against_githubs_schema() -> None:
    done = check_jsonschema(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = WORKFLOW.read_text().replace("    runs-on: ubuntu-24.04\n", "    run-on: x\n", 1)
    assert broken != WORKFLOW.read_text()
    (tmp_path / "broken.yml").write_text(broken)
    assert check_jsonschema(tmp_path / "broken.yml").returncode == 1


# ------------------------------------------------------------------ what it calls


def make_targets() -> set[str]:
    found = set()
    for script in scripts():
        found |= set(re.findall(r"(?:^|[;&|]\s*|\n\s*)make\s+([a-z][\w-]*)", script))
    return found


def gameday_calls() -> list[list[str]]:
    calls = []
    for script in scripts():
        for line in script.replace("\\\n", " ").splitlines():
            if "gameday " not in line or line.lstrip().startswith("#"):
                continue
            words = shlex.split(line)
            start = next(i for i, w in enumerate(words) if w.endswith("bin/gameday"))
            calls.append(words[start + 1 :])
    return calls


def test_every_make_target_it_calls_exists() -> None:
    targets = make_targets()
    assert targets == {"setup", "venv"}
    for target in sorted(targets):
        done = subprocess.run(
            ["make", "-n", "-C", str(REPO), target],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"make {target}: {done.stderr}"
    nothing = subprocess.run(
        ["make", "-n", "-C", str(REPO), "no-such-target"], capture_output=True, check=False
    )
    assert nothing.returncode != 0


def resolve(words: list[str]) -> tuple[click.Command, list[str]]:
    """The (sub)command the words name, and the words after it."""
    command: click.Command = main
    rest = list(words)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        with click.Context(command) as ctx:
            found = command.get_command(ctx, rest[0])
        assert found is not None, f"gameday has no command {rest[0]!r}"
        command, rest = found, rest[1:]
    return command, rest


def test_every_gameday_command_and_option_it_calls_exists() -> None:
    calls = gameday_calls()
    assert [c[0] for c in calls] == ["run", "scorecard", "report"]
    for words in calls:
        command, rest = resolve(words)
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for word in rest:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"gameday {words[0]}: no option {word}"
        helped = CliRunner().invoke(main, [*words[: len(words) - len(rest)], "--help"])
        assert helped.exit_code == 0, helped.output
    assert resolve(["report"])[0].name == "report"
    with pytest.raises(AssertionError, match="no command 'nope'"):
        resolve(["nope"])


# ------------------------------------------------------------------ the plan job


def run_step(
    script: str, cwd: Path, env: dict[str, str], tmp: Path
) -> subprocess.CompletedProcess[str]:
    """A `run:` script as GitHub runs it on Linux: `bash -e {0}`, in `cwd`."""
    path = tmp / "step.sh"
    path.write_text(script)
    return subprocess.run(
        ["bash", "-e", str(path)],
        cwd=cwd,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        pytest.param("all", [n for n in catalog.names() if n != "gameday"], id="nightly"),
        pytest.param("network-partition", ["network-partition"], id="dispatch-one"),
        pytest.param("gameday", ["gameday"], id="dispatch-suite"),
        pytest.param("no-such-drill", None, id="unknown"),
    ],
)
def test_plan_picks_the_matrix(tmp_path: Path, wanted: str, expected: list[str] | None) -> None:
    out = tmp_path / "github_output"
    script = step("plan", "List the catalog")["run"]
    done = run_step(script, REPO, {"WANTED": wanted, "GITHUB_OUTPUT": str(out)}, tmp_path)
    if expected is None:
        assert done.returncode == 1 and "unknown experiment 'no-such-drill'" in done.stderr
        return
    assert done.returncode == 0, done.stderr
    assert out.read_text() == f"experiments={json.dumps(expected)}\n"
    assert len(expected) >= 1


def test_triggers_matrix_and_artifacts() -> None:
    doc = load()
    on = triggers(doc)
    assert on["schedule"] and on["workflow_dispatch"]["inputs"]["experiment"]["default"] == "all"
    drill = doc["jobs"]["drill"]
    assert drill["needs"] == "plan"
    assert drill["strategy"]["matrix"]["experiment"] == (
        "${{ fromJSON(needs.plan.outputs.experiments) }}"
    )
    assert drill["strategy"]["fail-fast"] is False
    upload = step("drill", "Upload the run directory")
    assert upload["uses"].startswith("actions/upload-artifact@v")
    assert upload["with"]["path"] == "runs/${{ matrix.experiment }}"
    junit = step("drill", "Publish the JUnit report")
    assert junit["uses"] == "mikepenz/action-junit-report@v4"
    assert junit["with"]["report_paths"] == "runs/${{ matrix.experiment }}/junit.xml"
    for later in (upload, junit):
        assert later["if"] == "${{ !cancelled() }}"  # also after a failed drill
    assert doc["jobs"]["report"]["needs"] == "drill"
    assert doc["jobs"]["report"]["if"] == "${{ !cancelled() }}"


def test_the_gating_steps_keep_their_exit_codes() -> None:
    drill = step("drill", "Drill")
    assert drill["run"] == '.venv/bin/gameday run "$EXPERIMENT" --out "runs/$EXPERIMENT"'
    report = step("report", "Readiness report")
    for gating in (drill, report):
        assert "continue-on-error" not in gating
        assert "if" not in gating
        assert not re.search(r"\|\||set \+e|; *true|exit 0", gating["run"])
    # the job fails on any nonzero exit of these steps: no shell that would hide it
    assert all("shell" not in s for s in (drill, report))


# ------------------------------------------------------------------ exit codes


def gates_file() -> Path:
    return REPO / "experiments" / "gates.yaml"


@pytest.mark.parametrize(
    ("figures", "verdict", "code"),
    [
        pytest.param({}, Verdict.PASS, 0, id="pass"),
        pytest.param({"rto_us": 75.0}, Verdict.FAIL, 1, id="fail"),
        pytest.param({"saturated": True}, Verdict.INCONCLUSIVE, 3, id="inconclusive"),
    ],
)
def test_gameday_run_exit_code_of_a_scored_drill(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    figures: dict[str, Any],
    verdict: Verdict,
    code: int,
) -> None:
    run = write_sample_run(tmp_path / "run", timeline=False, **figures)
    outcome = score([run], load_gates(gates_file()), clock=lambda: T, charts=False)
    assert outcome.verdict == verdict
    assert verdict_exit_code(outcome.verdict.value) == EXIT_FOR_VERDICT[verdict] == code

    # `gameday run` itself, with the world replaced by that scored run directory.
    def drill(target: str, **_: Any) -> DrillResult:
        return DrillResult(target, [run], outcome.verdict.value, run / "scorecard.md", {}, False)

    monkeypatch.setattr("experiments.runner.run_drill", drill)
    result = CliRunner().invoke(main, ["run", "region-kill"])
    assert result.exit_code == code, result.output
