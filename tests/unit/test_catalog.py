from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments import catalog
from infra.errors import ConfigError
from scorecards.gates import load_gates
from tests.conftest import REPO

GAMEDAY = [sys.executable, "-m", "experiments.cli"]


def test_the_catalog() -> None:
    assert catalog.names() == [
        "gameday",
        "network-partition",
        "network-partition-guarded",
        "region-kill",
        "replica-corruption",
    ]


@pytest.mark.parametrize("name", catalog.names())
def test_every_experiment_is_valid_and_rolls_back(name: str) -> None:
    experiment = catalog.load(catalog.resolve(name))
    assert experiment["controls"][0]["provider"]["module"] == "experiments.controls"
    rollbacks = [r["provider"]["func"] for r in experiment["rollbacks"]]
    assert rollbacks == ["revert_all"]
    tolerances = {
        p["name"]: p["tolerance"]["range"] for p in experiment["steady-state-hypothesis"]["probes"]
    }
    # The hypothesis after the fault holds the platform's targets (the default gates).
    assert tolerances["rto-below-60s"] == [0, 60]
    assert tolerances["rpo-below-300s"] == [0, 300]
    if name == "network-partition-guarded":
        # The fix's bound: the same number its gates hold the drill to.
        gates = load_gates(catalog.CATALOG / "gates.yaml").resolve(name, "eu")
        bound = gates.lost_after_fault.threshold
        assert tolerances["writes-lost-after-the-fault-within-the-guard-bound"] == [0, bound]
    else:
        assert tolerances["no-write-lost-after-the-fault"] == [0, 0]
    assert tolerances["no-wrong-answer"] == [0, 0]
    for action in experiment["method"]:
        args = action["provider"].get("arguments", {})
        assert action["provider"]["func"] in ("revert_all", "heal_partition") or args


def test_chaos_validate_accepts_the_catalog() -> None:
    chaos = Path(sys.executable).with_name("chaos")
    for name in catalog.names():
        done = subprocess.run(
            [str(chaos), "validate", str(catalog.resolve(name))],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_unknown_names_and_files() -> None:
    with pytest.raises(ConfigError, match=r"unknown experiment 'meteor'.*region-kill"):
        catalog.resolve("meteor")
    with pytest.raises(ConfigError, match=r"unknown experiment 'gates'"):
        catalog.resolve("gates")
    with pytest.raises(ConfigError, match="not found"):
        catalog.resolve("nowhere/x.yaml")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GAMEDAY, "run", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "GAMEDAY_HOME": str(tmp_path / "h")},
        timeout=60,
        check=False,
    )


def test_bad_drill_input_is_exit_2_and_starts_nothing(tmp_path: Path) -> None:
    unknown = _run(tmp_path, "meteor")
    assert unknown.returncode == 2 and "unknown experiment 'meteor'" in unknown.stderr
    invalid = tmp_path / "bad.yaml"
    invalid.write_text(yaml.safe_dump({"title": "t", "description": "d", "method": []}))
    bad = _run(tmp_path, str(invalid))
    assert bad.returncode == 2 and f"{invalid}: method: at least one action" in bad.stderr
    no_controls = tmp_path / "plain.yaml"
    plain = yaml.safe_load((REPO / "experiments" / "region-kill.yaml").read_text())
    del plain["controls"]
    no_controls.write_text(yaml.safe_dump(plain))
    uncontrolled = _run(tmp_path, str(no_controls))
    assert uncontrolled.returncode == 2 and "experiments.controls" in uncontrolled.stderr
    gates = tmp_path / "gates.yaml"
    gates.write_text("version: 1\ngates:\n  rto_seconds:\n    less_than: soon\n")
    wrong_gates = _run(tmp_path, "region-kill", "--gates", str(gates))
    assert wrong_gates.returncode == 2 and str(gates) in wrong_gates.stderr
    assert "rto_seconds" in wrong_gates.stderr
    repeat = _run(tmp_path, "region-kill", "--repeat", "0")
    assert repeat.returncode == 2 and "--repeat 0" in repeat.stderr
    for done in (unknown, bad, uncontrolled, wrong_gates, repeat):
        assert "Traceback" not in done.stderr
    assert not (tmp_path / "h" / "world").exists()  # no world was started


def test_the_guarded_partition_asks_for_the_guarded_topology() -> None:
    path = catalog.resolve("network-partition-guarded")
    topology = catalog.topology_of(catalog.load(path), path)
    assert topology == REPO / "infra" / "local" / "topology-guarded.yaml"
    plain = catalog.resolve("network-partition")
    assert catalog.topology_of(catalog.load(plain), plain) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(
            "infra/local/nowhere.yaml", "'infra/local/nowhere.yaml' not found", id="missing"
        ),
        pytest.param(3, "expected a path to a topology file, got 3", id="not-a-path"),
        pytest.param(
            "experiments/gates.yaml",
            "expected a mapping with a 'regions' list",
            id="not-a-topology",
        ),
    ],
)
def test_a_bad_experiment_topology_names_the_field(value: object, message: str) -> None:
    experiment = {"configuration": {"gameday_topology": value}}
    with pytest.raises(ConfigError, match=r"configuration\.gameday_topology") as err:
        catalog.topology_of(experiment, Path("x.yaml"))
    assert message in str(err.value)
    assert str(err.value).startswith("x.yaml: ")


def test_a_guarded_drill_refuses_a_running_world_without_the_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from experiments import runner
    from infra.local import world

    # A world's record as `testbed up` writes it; inside the world no pid check applies.
    base = tmp_path / "h"
    (base / "world").mkdir(parents=True)
    record = {"launcher_pid": 1, "init_pid": 1, "started_at": 0.0, "urls": {}}
    for topology, ok in (("topology.yaml", False), ("topology-guarded.yaml", True)):
        path = REPO / "infra" / "local" / topology
        (base / "world" / "world.json").write_text(json.dumps({**record, "topology": str(path)}))
        monkeypatch.setenv(world.IN_WORLD_ENV, "1")
        guarded = REPO / "infra" / "local" / "topology-guarded.yaml"
        if ok:
            runner._check_store_settings(guarded, base)
        else:
            with pytest.raises(ConfigError, match="other data group settings") as err:
                runner._check_store_settings(guarded, base)
            assert f"testbed up --topology {guarded}" in str(err.value)
