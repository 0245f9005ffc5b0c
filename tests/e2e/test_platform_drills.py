"""Drills of a platform gameday did not bring up (`gameday run --platform`).

The testbed is brought up, then drilled *as an external platform*: the platform file
points at its host URLs (driver `none`), and the method injects the fault through a
plain Chaos Toolkit `process` activity running `gameday fault kill-region us-east`,
which the drill's control records as the fault. Once with the reference API, once with
the Open Inference Protocol v2. And a three-jurisdiction world (us, eu, apac; six
regions) drilled natively, with residency and RTO for every jurisdiction.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.local import world
from infra.local.describe import REFERENCE_PLATFORM
from infra.local.model import read_manifest
from tests.conftest import NO_HOST_PORTS, REPO, needs_world
from tests.e2e.test_drills import QUICK, _drill, _entry, _gameday, _measurements, _not_passed

pytestmark = [needs_world, pytest.mark.world, pytest.mark.slow]
GAMEDAY_BIN = str(Path(sys.executable).with_name("gameday"))


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gd"
    path.mkdir()
    yield path
    world.down(path)


def _external_platform(home: Path, tmp_path: Path, api: dict[str, Any]) -> Path:
    up = _gameday(home, "testbed", "up", "--json", *NO_HOST_PORTS)
    assert up.returncode == 0, up.stderr[-3000:]
    urls = json.loads(up.stdout)
    registry = home / "world" / "registry"
    digest = read_manifest(registry).model_digest
    doc: dict[str, Any] = yaml.safe_load(REFERENCE_PLATFORM.read_text())
    doc.update(
        name="testbed-as-external",
        driver="none",
        canaries={"file": str(registry / "golden.json")},
        allow={"hosts": ["127.0.0.1"]},
    )
    doc["traffic"]["base_url"] = urls["router_url"]
    doc["traffic"]["api"] = api
    doc["prometheus"]["url"] = urls["prometheus_url"]
    doc["writes"]["readback"] = {"http": "/v1/events/{client}/{seq}"}
    doc["model"] = {"name": "gameday-reference", "digest": digest}
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _process_drill(tmp_path: Path) -> Path:
    experiment = yaml.safe_load((REPO / "experiments" / "region-kill.yaml").read_text())
    experiment = copy.deepcopy(experiment)
    experiment["title"] = "region-kill through a plain process activity"
    experiment["configuration"]["gameday_experiment"] = "region-kill"
    experiment["method"] = [
        {
            "type": "action",
            "name": "kill-region-us-east",
            "provider": {
                "type": "process",
                "path": GAMEDAY_BIN,
                "arguments": "fault kill-region us-east",
            },
        }
    ]
    experiment["rollbacks"] = [
        {
            "type": "action",
            "name": "restore-region-us-east",
            "provider": {
                "type": "process",
                "path": GAMEDAY_BIN,
                "arguments": "fault restore-region us-east",
            },
        }
    ]
    path = tmp_path / "region-kill-process.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    return path


@pytest.mark.parametrize(
    "api",
    [
        pytest.param({"shape": "reference"}, id="reference-api"),
        pytest.param({"shape": "oip-v2", "model": "gameday-reference"}, id="oip-v2"),
    ],
)
def test_the_testbed_drilled_as_an_external_platform(
    home: Path, tmp_path: Path, api: dict[str, Any]
) -> None:
    platform = _external_platform(home, tmp_path, api)
    experiment = _process_drill(tmp_path)
    plan = _gameday(home, "run", str(experiment), "--platform", str(platform), "--plan")
    assert plan.returncode == 0, plan.stderr
    assert "hits us-east (recorded as a fault when it ends)" in plan.stdout
    code, result = _drill(home, str(experiment), "--platform", str(platform), **QUICK)
    run_dir = Path(result["run_dirs"][0])
    card = json.loads((run_dir / "scorecard.json").read_text())
    assert (code, result["verdict"]) == (0, "PASS"), _not_passed(card)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [(e["type"], e["fault"], e["target"]) for e in events] == [
        ("fault", "kill-region-us-east", "us-east"),
        ("revert", "restore-region-us-east", "us-east"),
    ]
    doc = _measurements(result)
    us = _entry(doc["rto"], kind="all", residency="us")
    assert us["impact"] and us["recovered"] and 0 < us["rto_seconds"] < 60
    assert _entry(doc["rto"], kind="all", residency="eu")["impact"] is False
    prom = _entry(doc["rto_prometheus"], residency="us")
    assert prom["status"] == "ok" and prom["instrumentation_mismatch"] is False
    # The ledger was read back over HTTP through the platform's router.
    assert all(r["status"] == "ok" for r in doc["rpo"])
    assert doc["inputs"]["write_stores"] == "platform.yaml writes.readback"
    canaries = _entry(doc["integrity"], check="wrong-answers", residency="us")
    assert canaries["status"] == "ok" and canaries["canaries_checked"] > 0  # from the file
    # Nothing was brought up or left behind by the drill: the testbed is still the one.
    assert world.read_info(home) is not None


def test_three_jurisdictions_report_residency_and_rto_for_each(home: Path, tmp_path: Path) -> None:
    regions = [
        {"name": f"{j}-{n}", "provider": "aws", "jurisdiction": j, "role": role}
        for j in ("us", "eu", "apac")
        for n, role in (("a", "primary"), ("b", "replica"))
    ]
    topology = tmp_path / "three.yaml"
    topology.write_text(yaml.safe_dump({"regions": regions}))
    experiment = yaml.safe_load((REPO / "experiments" / "region-kill.yaml").read_text())
    experiment["configuration"]["gameday_topology"] = str(topology)
    experiment["controls"][0]["provider"]["arguments"]["guard_jurisdictions"] = "eu,apac"
    path = tmp_path / "region-kill-three.yaml"
    path.write_text(yaml.safe_dump(experiment, sort_keys=False))
    code, result = _drill(home, str(path), **QUICK)
    doc = _measurements(result)
    card = json.loads((Path(result["run_dirs"][0]) / "scorecard.json").read_text())
    assert (code, result["verdict"]) == (0, "PASS"), _not_passed(card)
    for jurisdiction in ("us", "eu", "apac"):
        rto = _entry(doc["rto"], kind="all", residency=jurisdiction)
        assert rto["status"] == "ok", rto
        residency = _entry(doc["residency"], residency=jurisdiction)
        assert residency["status"] == "ok" and residency["violations"] == 0, residency
    assert _entry(doc["rto"], kind="all", residency="us")["impact"] is True
    for jurisdiction in ("us", "eu", "apac"):
        wrong = _entry(doc["integrity"], check="wrong-answers", residency=jurisdiction)
        assert wrong["canaries_checked"] > 0, wrong
    assert _entry(doc["rto"], kind="all", residency="apac")["impact"] is False
