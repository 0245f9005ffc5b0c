"""`gameday run --platform --plan`: the blast radius, and targets refused before any action."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from experiments.cli import main
from experiments.plan import blast_radius, check_allowed
from infra.errors import ConfigError
from infra.local.describe import REFERENCE_PLATFORM
from infra.platform import parse_platform

REPO = Path(__file__).resolve().parents[2]
KILL = yaml.safe_load((REPO / "experiments" / "region-kill.yaml").read_text())
# chaos validate wants a process activity's program to exist.
GAMEDAY = str(Path(sys.executable).with_name("gameday"))


def _external(tmp_path: Path) -> Path:
    doc = yaml.safe_load(REFERENCE_PLATFORM.read_text())
    doc["driver"] = "none"
    doc["traffic"]["base_url"] = "http://127.0.0.1:18080"
    doc["prometheus"]["url"] = "http://127.0.0.1:19090"
    doc["allow"]["hosts"] = ["127.0.0.1"]
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _experiment(method: list[dict[str, Any]], rollbacks: list[dict[str, Any]]) -> dict[str, Any]:
    experiment: dict[str, Any] = copy.deepcopy(KILL)
    experiment["method"], experiment["rollbacks"] = method, rollbacks
    return experiment


PROCESS_KILL = {
    "type": "action",
    "name": "kill-us-east",
    "provider": {
        "type": "process",
        "path": GAMEDAY,
        "arguments": "fault kill-region us-east",
    },
}
PROCESS_RESTORE = {
    "type": "action",
    "name": "restore-us-east",
    "provider": {"type": "process", "path": GAMEDAY, "arguments": "fault restore-region us-east"},
}


def test_the_blast_radius_of_a_process_activity(tmp_path: Path) -> None:
    path = _external(tmp_path)
    platform = parse_platform(yaml.safe_load(path.read_text()), path)
    lines = blast_radius(_experiment([PROCESS_KILL], [PROCESS_RESTORE]), platform, path)
    runs = f"runs `{GAMEDAY} fault kill-region us-east`"
    assert f"  [method] kill-us-east: process activity, {runs}" in lines
    assert "      hits us-east (recorded as a fault when it ends)" in lines
    assert "      hits us-east (recorded as a revert when it ends)" in lines
    assert "guardrails:" in lines
    assert "  abort and roll back past 240 s" in lines
    assert "  rto-below-60s: [0, 60]" in lines


@pytest.mark.parametrize(
    ("action", "message"),
    [
        pytest.param(
            {**PROCESS_KILL, "gameday": {"target": "ap-south"}},
            r"gameday\.target 'ap-south' is not a region of the platform",
            id="extension-target-unknown",
        ),
        pytest.param(
            {
                "type": "action",
                "name": "poke",
                "provider": {"type": "http", "url": "https://prod.example.com/kill"},
            },
            r"provider\.url 'https://prod\.example\.com/kill': host not in allow\.hosts",
            id="http-host-not-allowed",
        ),
        pytest.param(
            {
                "type": "action",
                "name": "kill",
                "provider": {
                    "type": "python",
                    "module": "infra.actions",
                    "func": "kill_region",
                    "arguments": {"region": "ap-south"},
                },
            },
            r"region 'ap-south' is not a region of the platform",
            id="own-action-unknown-region",
        ),
    ],
)
def test_a_target_outside_the_allow_list_is_refused(
    tmp_path: Path, action: dict[str, Any], message: str
) -> None:
    path = _external(tmp_path)
    platform = parse_platform(yaml.safe_load(path.read_text()), path)
    with pytest.raises(ConfigError, match=message):
        check_allowed(_experiment([action], []), platform, path)


def test_the_cli_plans_and_refuses_with_exit_2(tmp_path: Path) -> None:
    path = _external(tmp_path)
    experiment = tmp_path / "drill.yaml"
    experiment.write_text(yaml.safe_dump(_experiment([PROCESS_KILL], [PROCESS_RESTORE])))
    runner = CliRunner()
    done = runner.invoke(main, ["run", str(experiment), "--platform", str(path), "--plan"])
    assert done.exit_code == 0, done.output
    assert "hits us-east (recorded as a fault when it ends)" in done.output
    bad = {**PROCESS_KILL, "gameday": {"target": "ap-south"}}
    experiment.write_text(yaml.safe_dump(_experiment([bad], [PROCESS_RESTORE])))
    for extra in (["--plan"], []):
        done = runner.invoke(main, ["run", str(experiment), "--platform", str(path), *extra])
        assert done.exit_code == 2, done.output
        assert "gameday.target 'ap-south'" in done.output
    assert not (tmp_path / "runs").exists()
    broken = tmp_path / "broken.yaml"
    broken.write_text(path.read_text() + "colour: blue\n")
    done = runner.invoke(main, ["run", str(experiment), "--platform", str(broken), "--plan"])
    assert done.exit_code == 2
    assert "broken.yaml: colour: unknown field" in done.output


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            lambda d: d.update(colour="blue"), "platform.yaml: colour: unknown field", id="field"
        ),
        pytest.param(
            lambda d: d["jurisdictions"]["us"]["regions"].append("us-north"),
            "jurisdictions.us.regions: unknown region 'us-north'",
            id="unknown-region",
        ),
        pytest.param(
            lambda d: d["traffic"].update(api={"shape": "template", "path": "/score"}),
            "traffic.api: shape template needs `score`",
            id="answer-shape-without-score",
        ),
        pytest.param(
            lambda d: d["traffic"].update(base_url="http://10.9.9.9:8080"),
            "traffic.base_url: host of 'http://10.9.9.9:8080' is not in allow.hosts",
            id="host-outside-allow-list",
        ),
    ],
)
def test_a_bad_platform_file_exits_2_naming_file_and_field(
    tmp_path: Path, edit: Any, message: str
) -> None:
    path = _external(tmp_path)
    doc = yaml.safe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.safe_dump(doc))
    experiment = tmp_path / "drill.yaml"
    experiment.write_text(yaml.safe_dump(_experiment([PROCESS_KILL], [PROCESS_RESTORE])))
    for extra in (["--plan"], []):
        done = CliRunner().invoke(main, ["run", str(experiment), "--platform", str(path), *extra])
        assert done.exit_code == 2, done.output
        assert message in done.output
    assert not list(tmp_path.rglob("events.jsonl"))  # nothing ran
