"""Whole drills on the local platform, as users run them (`gameday run …`).

Each test gets a fresh state folder (its own world); each asserts that the fault had
its effect, then what the drill must show. `GAMEDAY_KEEP_WORLD=1` keeps a reused world
up after a failure for debugging.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.local import world
from scorecards.gates import load_gates
from tests.conftest import NO_HOST_PORTS, REPO, needs_world

pytestmark = [needs_world, pytest.mark.world, pytest.mark.slow]
GAMEDAY = [sys.executable, "-m", "experiments.cli"]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gd"
    path.mkdir()
    yield path
    world.down(path)  # whatever a test left, nothing survives it


# Shorter windows than the catalog's (15 s baseline, 40-45 s observation) keep the suite
# within its time budget; still long enough for the RTO probe's 10 s stability.
QUICK = {"GAMEDAY_BASELINE_SECONDS": "10", "GAMEDAY_OBSERVE_SECONDS": "30"}


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "GAMEDAY_HOME": str(home), **extra}


def _gameday(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GAMEDAY, *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(home, **extra),
        timeout=420,
        check=False,
    )


def _drill(home: Path, experiment: str, *args: str, **extra: str) -> tuple[int, dict[str, Any]]:
    done = _gameday(home, "run", experiment, "--json", *args, **extra)
    assert done.stdout.strip(), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout)


def _measurements(result: dict[str, Any]) -> dict[str, Any]:
    run_dir = Path(result["run_dirs"][0])
    return dict(json.loads((run_dir / "measurements.json").read_text()))


def _entry(entries: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    return next(e for e in entries if all(e.get(k) == v for k, v in match.items()))


def _not_passed(card: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The gates that decided a verdict other than PASS, for a failure message."""
    gates = card["gates"] if "gates" in card else card["runs"][0]["gates"]
    return [(g["id"], g["verdict"], g["reason"]) for g in gates if g["verdict"] != "PASS"]


def _world_gone(home: Path) -> None:
    assert world.read_info(home) is None
    leftovers = subprocess.run(
        ["pgrep", "-f", str(home)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == []


def test_region_kill_passes_its_gates(home: Path) -> None:
    code, result = _drill(home, "region-kill", **QUICK)
    assert (code, result["verdict"]) == (0, "PASS"), result
    doc = _measurements(result)
    us = _entry(doc["rto"], kind="all", residency="us")
    assert us["impact"] and us["recovered"] and 0 < us["rto_seconds"] < 60  # it did hurt
    eu = _entry(doc["rto"], kind="all", residency="eu")
    assert eu["impact"] is False  # and only where it should
    prom = _entry(doc["rto_prometheus"], residency="us")
    assert prom["status"] == "ok" and prom["instrumentation_mismatch"] is False
    assert abs(prom["rto_seconds"] - us["rto_seconds"]) <= prom["mismatch_bound_seconds"]
    assert all(r["status"] == "ok" for r in doc["rpo"])
    wrong = [e for e in doc["integrity"] if e.get("check") == "wrong-answers"]
    assert wrong and all(e["canaries_checked"] > 0 for e in wrong)  # canaries ran
    card = json.loads((Path(result["run_dirs"][0]) / "scorecard.json").read_text())
    assert card["verdict"] == "PASS"
    _world_gone(home)


def test_network_partition_finds_the_split_brain_and_the_guard_fixes_it(
    home: Path, tmp_path: Path
) -> None:
    """Find, fix, prove: the partition drill without the guard and with it, then compare."""
    # The partition lasts 20 s and the old primary needs some seconds to rejoin after
    # the heal: the catalog's 45 s observation stays.
    code, found = _drill(home, "network-partition", GAMEDAY_BASELINE_SECONDS="10")
    assert (code, found["verdict"]) == (1, "FAIL"), found
    eu = _entry(_measurements(found)["rpo"], residency="eu")
    # The isolated old primary acknowledged writes its clients still sent it; healing
    # the partition made it a replica and those writes vanished: the split brain.
    assert eu["status"] == "ok" and eu["lost_after_fault"] > 0
    assert eu["lost"] >= eu["lost_after_fault"] and eu["rpo_seconds"] > 0
    card = json.loads((Path(found["run_dirs"][0]) / "scorecard.json").read_text())
    failed = {g["id"] for g in card["gates"] if g["verdict"] == "FAIL"}
    assert "lost_after_fault[eu]" in failed
    _world_gone(home)

    code, fixed = _drill(home, "network-partition-guarded", GAMEDAY_BASELINE_SECONDS="10")
    fixed_dir = Path(fixed["run_dirs"][0])
    world_doc = json.loads((fixed_dir / "world.json").read_text())
    assert world_doc["data_groups"] == {
        "eu": {"min-replicas-to-write": 1, "min-replicas-max-lag": 2}
    }
    doc = _measurements(fixed)
    guarded = _entry(doc["rpo"], residency="eu")
    bound = load_gates(REPO / "experiments" / "gates.yaml").resolve(
        "network-partition-guarded", "eu"
    )
    # The fix: what the isolated primary still acknowledged fits the guard's bound...
    assert guarded["status"] == "ok"
    assert guarded["lost_after_fault"] <= bound.lost_after_fault.threshold
    assert guarded["lost_after_fault"] < eu["lost_after_fault"]
    # ...and its cost is measured: EU writes failed during the partition, then recovered.
    writes = _entry(doc["rto"], kind="write", residency="eu")
    assert writes["status"] == "ok" and writes["impact"] and writes["recovered"]
    assert writes["rto_seconds"] > 10  # the 20 s partition, not a blip
    card = json.loads((fixed_dir / "scorecard.json").read_text())
    budget = next(g for g in card["gates"] if g["id"] == "error_budget[eu]")
    assert budget["value"] > 0.01, budget
    # Every gate holds, relapses included: no request fails once the EU writes have
    # recovered (a write retried when Sentinel demotes the old primary at the heal
    # goes to the new one: docs/drills.md, "The late failure after the heal").
    assert (code, fixed["verdict"]) == (0, "PASS"), _not_passed(card)
    _world_gone(home)

    out = tmp_path / "compare"
    done = _gameday(
        home, "compare", found["run_dirs"][0], str(fixed_dir), "--out", str(out), "--json"
    )
    assert done.returncode == 0, done.stderr
    comparison = json.loads(done.stdout)
    # Both changes named: the loss fixed (verdict flips) and the availability it costs.
    assert comparison["verdict_changes"] == ["lost_after_fault[eu]"]
    assert "rto_seconds[write/eu]" in comparison["changes"]
    assert "error_budget[eu]" in comparison["changes"]
    assert sorted(p.name for p in out.iterdir()) == [
        "comparison.html",
        "comparison.json",
        "comparison.md",
    ]
    keys = ("acknowledged", "lost", "lost_after_fault", "rpo_seconds")
    for name, entry in (("unguarded", eu), ("guarded", guarded)):
        print(f"\n{name}: " + ", ".join(f"{k} {entry[k]}" for k in keys))
    print(f"guarded EU write RTO {writes['rto_seconds']:.1f} s, error budget {budget['value']:.3f}")


def test_replica_corruption_passes_when_the_platform_verifies(home: Path) -> None:
    code, result = _drill(home, "replica-corruption", **QUICK)
    assert (code, result["verdict"]) == (0, "PASS"), result
    detect = [e for e in _measurements(result)["integrity"] if e["check"] == "time-to-detect"]
    assert {e["fault"] for e in detect} == {"corrupt-model", "corrupt-features"}
    assert all(e["detected"] for e in detect)


def test_replica_corruption_fails_when_the_platform_does_not_verify(home: Path) -> None:
    up = _gameday(
        home,
        "testbed",
        "up",
        "--no-verify-model-digest",
        "--no-verify-features",
        *NO_HOST_PORTS,
    )
    assert up.returncode == 0, up.stderr
    code, result = _drill(home, "replica-corruption", "--reuse-testbed", **QUICK)
    assert (code, result["verdict"]) == (1, "FAIL"), result
    wrong = [e for e in _measurements(result)["integrity"] if e["check"] == "wrong-answers"]
    assert sum(e["wrong_answers"] for e in wrong) > 0  # the probes caught it
    status = json.loads(_gameday(home, "testbed", "status", "--json").stdout)
    assert status["faults"] == []  # the rollbacks repaired both replicas


def test_a_guardrail_breach_aborts_and_rolls_back(home: Path, tmp_path: Path) -> None:
    doc = yaml.safe_load((REPO / "experiments" / "region-kill.yaml").read_text())
    control = doc["controls"][0]["provider"]["arguments"]
    # Guard the very jurisdiction the drill hurts: the plan is exceeded at once.
    control.update(guard_jurisdictions="us", guard_error_ratio=0.001)
    experiment = tmp_path / "breach.yaml"
    experiment.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, result = _drill(
        home, str(experiment), GAMEDAY_OBSERVE_SECONDS="60", GAMEDAY_BASELINE_SECONDS="8"
    )
    assert code == 1 and result["verdict"] == "FAIL", result
    assert result["guardrails"] and result["guardrails"][0]["guardrail"] == "blast-radius"
    run_dir = Path(result["run_dirs"][0])
    journal = json.loads((run_dir / "journal.json").read_text())
    assert journal["status"] == "interrupted"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events] == ["fault", "revert"]  # rolled back
    # Aborted well before the 60 s observation window would have ended.
    assert result["phases_seconds"]["drill 1"] < 60
    _world_gone(home)


def _interrupt_during_the_fault(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(
        [*GAMEDAY, "run", "region-kill", *args],
        cwd=REPO,
        env=_env(home, GAMEDAY_OBSERVE_SECONDS="120", GAMEDAY_BASELINE_SECONDS="8"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if "[observe] t+" in line:  # the fault is in effect
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)  # a second Ctrl-C must not skip the rollbacks
            break
    else:
        proc.kill()
    out, err = proc.communicate(timeout=180)
    assert any("[observe] t+" in s for s in seen), "".join(seen)[-3000:]
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "".join(seen) + err)


def test_sigint_during_the_fault_leaves_the_platform_whole(home: Path) -> None:
    up = _gameday(home, "testbed", "up", *NO_HOST_PORTS)
    assert up.returncode == 0, up.stderr
    done = _interrupt_during_the_fault(home, "--reuse-testbed")
    assert done.returncode != 0, done.stderr[-2000:]
    status = json.loads(_gameday(home, "testbed", "status", "--json").stdout)
    assert status["faults"] == []
    assert all(state == "running" for r in status["regions"] for state in r["processes"].values())
    assert set(status["primaries"]) == {"us", "eu"} and all(status["primaries"].values())
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        status = json.loads(_gameday(home, "testbed", "status", "--json").stdout)
        if all(r["router"].startswith("UP") for r in status["regions"]):
            break
        time.sleep(1)
    assert all(r["router"].startswith("UP") for r in status["regions"]), status["regions"]


def test_sigint_during_the_fault_leaves_nothing_behind(home: Path) -> None:
    done = _interrupt_during_the_fault(home)
    assert done.returncode != 0
    assert "rolling back" in done.stderr
    _world_gone(home)


def test_plain_chaos_run_inside_a_running_testbed(home: Path, tmp_path: Path) -> None:
    up = _gameday(home, "testbed", "up", *NO_HOST_PORTS)
    assert up.returncode == 0, up.stderr
    run_dir = tmp_path / "manual"
    journal = tmp_path / "journal.json"
    chaos = str(Path(sys.executable).with_name("chaos"))
    done = _gameday(
        home,
        "testbed",
        "exec",
        "--",
        chaos,
        "run",
        "--journal-path",
        str(journal),
        str(REPO / "experiments" / "region-kill.yaml"),
        GAMEDAY_RUN_DIR=str(run_dir),
        GAMEDAY_EVENTS=str(run_dir / "events.jsonl"),
        GAMEDAY_BASELINE_SECONDS="8",
        GAMEDAY_OBSERVE_SECONDS="25",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(journal.read_text())
    assert result["status"] == "completed" and result["deviated"] is False
    assert (run_dir / "measurements.json").exists()
    # The manual run scores like any other.
    scored = _gameday(home, "scorecard", str(run_dir), "--no-history", "--json")
    assert scored.returncode == 0, _not_passed(json.loads(scored.stdout))
