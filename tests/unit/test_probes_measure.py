"""`measure` on a constructed run directory; the CLI command; probe discovery."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from experiments.cmd_measure import measure as measure_command
from infra.errors import ConfigError
from probes.discovery import activities, discover, portable_type
from probes.measure import Options, measure, measure_run
from probes.rpo import MemoryWriteStore
from scorecards.evaluate import Verdict, evaluate
from scorecards.gates import parse_gates
from scorecards.rundir import load_run
from scorecards.sample import TARGET_GATES

T0 = 1_700_000_000.0
DT = 0.125
RTO_FIELDS = {"kind", "residency", "status", "impact", "recovered", "rto_seconds", "fault_at",
              "recovered_at", "uncertainty_seconds"}  # fmt: skip
RPO_FIELDS = {"residency", "status", "rpo_seconds", "acknowledged", "lost", "lost_after_fault",
              "ambiguous"}  # fmt: skip
TOPOLOGY = (
    "regions:\n"
    "  - {name: us-east, provider: aws, jurisdiction: us, role: primary}\n"
    "  - {name: us-west, provider: gcp, jurisdiction: us, role: replica}\n"
    "  - {name: eu-west, provider: aws, jurisdiction: eu, role: primary}\n"
)


def make_run(path: Path, events: bool = True) -> Path:
    """60 s of traffic; us fails from 10 s to 15 s (predictions and writes), eu is fine."""
    offsets = np.arange(0, 480) * DT
    parts = []
    for kind, residency, region in (
        ("predict", "us", "us-west"),
        ("write", "us", "us-west"),
        ("predict", "eu", "eu-west"),
    ):
        ok = ~((offsets >= 10) & (offsets < 15)) if residency == "us" else np.ones(480, bool)
        parts.append(
            pd.DataFrame(
                {
                    "t_start": T0 + offsets,
                    "latency_ms": 8.0,
                    "kind": kind,
                    "ok": ok,
                    "status": np.where(ok, 200, 503).astype(np.int32),
                    "error": None,
                    "residency": residency,
                    "region": [region if good else None for good in ok],
                    "model_digest": [
                        "sha256:m" if good and kind == "predict" else None for good in ok
                    ],
                    "client": "w1" if kind == "write" else None,
                    "seq": pd.array(np.arange(480) if kind == "write" else [None] * 480, "Int64"),
                }
            )
        )
    path.mkdir(parents=True, exist_ok=True)
    pd.concat(parts, ignore_index=True).to_parquet(path / "timeline.parquet")
    if events:
        (path / "events.jsonl").write_text(
            '{"type": "fault", "fault": "kill-region", "target": "us-east", "id": "f1", '
            f'"applied_at": {T0 + 10.0}, "reverted_at": null, '
            '"details": {"jurisdiction": "us"}}\n'
        )
    (path / "load.json").write_text('{"saturated": false, "requests": 1440}')
    (path / "topology.yaml").write_text(TOPOLOGY)
    return path


def stores(lost: range = range(0)) -> dict[str, MemoryWriteStore]:
    acked = {f"ev:w1:{s}" for s in range(480) if not 80 <= s < 120}
    return {"us": MemoryWriteStore(acked - {f"ev:w1:{s}" for s in lost})}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_measurements_document(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    options = Options(topology_path=run / "topology.yaml")
    doc = measure_run(run, options, write_stores=stores(lost=range(70, 75)))
    json.dumps(doc, allow_nan=False)
    assert doc["version"] == 1
    for name in ("rto", "rto_prometheus", "rpo", "integrity", "residency"):
        assert doc[name], name
        assert all(e["status"] in ("ok", "no-data", "error") for e in doc[name])
    assert all(set(e) >= RTO_FIELDS for e in doc["rto"] + doc["rto_prometheus"] if "kind" in e)
    assert all(set(e) >= RPO_FIELDS for e in doc["rpo"])
    rto = {(e["kind"], e["residency"]): e for e in doc["rto"]}
    assert rto["predict", "us"]["rto_seconds"] == 5.0
    assert rto["all", "us"]["rto_seconds"] == 5.0
    assert rto["predict", "eu"]["impact"] is False
    by_residency = {e["residency"]: e for e in doc["rpo"]}
    rpo = by_residency["us"]
    # eu has predictions but no write: its RPO is not 0, it is unknown.
    assert by_residency["eu"]["status"] == "no-data"
    assert (
        by_residency["eu"]["reason"] == "no acknowledged write of this residency: nothing to check"
    )
    # seq 70-74 acknowledged 8.76 … 9.26 s, before the fault at 10 s: RPO = 10 - 8.758.
    assert (rpo["lost"], rpo["lost_after_fault"], rpo["ambiguous"]) == (5, 0, 0)
    assert rpo["rpo_seconds"] == pytest.approx(10.0 - 8.758, abs=1e-6)
    assert {e["residency"]: e["violations"] for e in doc["residency"]} == {"eu": 0, "us": 0}
    assert [(e["check"], e["residency"], e["wrong_answers"]) for e in doc["integrity"]] == [
        ("wrong-answers", "eu", 0),
        ("wrong-answers", "us", 0),
    ]
    assert rto["predict", "us"]["p99_latency_ms_during_fault"] == 8.0
    assert rto["predict", "us"]["requests"] == 400
    assert [e["status"] for e in doc["rto_prometheus"]] == ["no-data", "no-data"]
    assert doc["load"] == {"saturated": False, "valid": True}
    assert doc["inputs"]["timeline"]["rows"] == 1440
    assert doc["inputs"]["parameters"]["min_requests"] == 5


def test_prometheus_down_is_an_error_never_ok(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    url = f"http://127.0.0.1:{closed_port()}"
    doc = measure_run(run, Options(prometheus_url=url, prometheus_timeout=1.0), stores())
    assert {e["status"] for e in doc["rto_prometheus"]} == {"error"}
    assert all(url in e["reason"] for e in doc["rto_prometheus"])
    us = next(e for e in doc["rpo"] if e["residency"] == "us")
    assert us["replication_lag_estimate"]["status"] == "error"
    assert all(e["instrumentation_mismatch"] is None for e in doc["rto_prometheus"])
    assert {e["residency"] for e in doc["rto_prometheus"]} == {"us", "eu"}


@pytest.mark.parametrize(
    ("events", "status", "reason"),
    [
        (None, "no-data", "file absent"),
        ("", "no-data", "no applied fault"),
    ],
    ids=["events-absent", "events-empty"],
)
def test_missing_or_bad_events_are_never_ok(
    tmp_path: Path, events: str | None, status: str, reason: str
) -> None:
    run = make_run(tmp_path / "run", events=False)
    if events is not None:
        (run / "events.jsonl").write_text(events)
    doc = measure_run(run, Options(topology_path=run / "topology.yaml"), stores())
    assert doc["inputs"]["events"]["status"] == status
    assert reason in doc["inputs"]["events"]["reason"]
    for name in ("rto", "rto_prometheus", "rpo"):
        assert {e["status"] for e in doc[name]} == {"no-data"}, name
    assert all(e["rto_seconds"] is None for e in doc["rto"])


def test_missing_topology_makes_residency_no_data(tmp_path: Path) -> None:
    doc = measure_run(make_run(tmp_path / "run"), Options(), stores())
    assert {e["status"] for e in doc["residency"]} == {"no-data"}
    assert all(e["violations"] is None for e in doc["residency"])


def test_bad_run_directories_raise_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run directory not found"):
        measure_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="timeline not found"):
        measure_run(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    pd.DataFrame({"t_start": [1.0], "kind": ["predict"]}).to_parquet(bad / "timeline.parquet")
    with pytest.raises(ConfigError, match="lacks column 'latency_ms'"):
        measure_run(bad)
    (bad / "timeline.parquet").write_text("not parquet")
    with pytest.raises(ConfigError, match="cannot read the timeline"):
        measure_run(bad)


def test_measure_probe_writes_measurements_json(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    doc = measure(str(run), topology_path=str(run / "topology.yaml"))
    assert json.loads((run / "measurements.json").read_text()) == doc
    # Without stores (no world.json) the RPO cannot be read back: no-data, not a pass.
    assert doc["rpo"][0]["status"] == "no-data"


def cli() -> click.Group:
    group = click.Group("gameday")
    group.add_command(measure_command)
    return group


def test_cli_writes_and_summarises(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    result = CliRunner().invoke(
        cli(), ["measure", str(run), "--topology", str(run / "topology.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert re.search(r"predict +us +ok +yes +5\.000 s +0\.125 s +40 +5\.0 s", result.output)
    assert "wrote" in result.output
    assert (run / "measurements.json").exists()
    as_json = CliRunner().invoke(cli(), ["measure", str(run), "--json"])
    assert json.loads(as_json.output)["version"] == 1


@pytest.mark.parametrize(
    "args",
    [["measure", "/nonexistent/run"], ["measure", "{empty}"]],
    ids=["missing-run-dir", "no-timeline"],
)
def test_cli_bad_input_exits_2(tmp_path: Path, args: list[str]) -> None:
    (tmp_path / "empty").mkdir()
    args = [a.replace("{empty}", str(tmp_path / "empty")) for a in args]
    result = CliRunner().invoke(cli(), args)
    assert result.exit_code == 2
    assert "gameday: error:" in result.output


def test_discovery_walks_the_package() -> None:
    found = {(a["mod"], a["name"]): a for a in activities()}
    expected = {
        ("probes.rto", "client_rto"),
        ("probes.prometheus", "prometheus_rto"),
        ("probes.prometheus", "replication_lag_at_fault"),
        ("probes.rpo", "lost_writes"),
        ("probes.integrity", "time_to_detect"),
        ("probes.integrity", "wrong_answers"),
        ("probes.integrity", "feature_divergence"),
        ("probes.residency", "residency_violations"),
        ("probes.measure", "measure"),
        ("probes.steady_state", "router_success_ratio"),
        ("probes.steady_state", "measured"),
    }
    assert set(found) == expected
    rto = found["probes.rto", "client_rto"]
    args = {a["name"]: a for a in rto["arguments"]}
    assert args["fault_at"] == {"name": "fault_at", "type": "number | null", "default": None}
    assert args["window_seconds"]["default"] == 1.0
    for activity in found.values():
        # Steady-state probes return the number their tolerance checks.
        expected_type = "number" if activity["mod"] == "probes.steady_state" else "mapping"
        assert activity["doc"] and activity["return_type"] == expected_type
        for arg in activity["arguments"]:
            assert arg["type"] != "object", (activity["name"], arg)
    json.dumps(discover(), allow_nan=False)


def test_chaoslib_sees_the_same_probes_and_can_run_one(tmp_path: Path) -> None:
    from chaoslib.discovery.discover import discover_probes
    from chaoslib.provider.python import run_python_activity, validate_python_activity

    ours = {(a["mod"], a["name"]) for a in activities()}
    theirs: set[tuple[str, str]] = set()
    for module in {m for m, _ in ours}:
        theirs |= {(a["mod"], a["name"]) for a in discover_probes(module)}
    assert theirs == ours
    run = make_run(tmp_path / "run")
    activity: dict[str, Any] = {
        "type": "probe",
        "name": "rto",
        "provider": {
            "type": "python",
            "module": "probes.rto",
            "func": "client_rto",
            "arguments": {
                "timeline_path": str(run / "timeline.parquet"),
                "events_path": str(run / "events.jsonl"),
                "residency": "us",
            },
        },
    }
    validate_python_activity(activity)
    result = run_python_activity(activity, {}, {})
    assert (result["status"], result["rto_seconds"]) == ("ok", 5.0)


def test_portable_types() -> None:
    assert portable_type(str) == "string"
    assert portable_type(float | None) == "number | null"
    assert portable_type(dict[str, Any]) == "mapping"


def test_the_expected_digest_is_the_deployed_one_else_no_data(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    options = Options(topology_path=run / "topology.yaml")

    def checks() -> set[tuple[str, str]]:
        doc = measure_run(run, options, stores())
        found = [e for e in doc["integrity"] if e["check"] == "wrong-answers"]
        return {(e["status"], e["digest_source"]) for e in found}

    # No world.json: nothing says what was deployed; the answers never decide it.
    assert checks() == {("no-data", "unknown")}
    (run / "world.json").write_text(json.dumps({"model": {"digest": "sha256:m"}}))
    assert checks() == {("ok", "deployed")}
    # The platform has a model but its digest could not be read: never a guess.
    (run / "world.json").write_text(json.dumps({"model": {"digest": None}}))
    assert checks() == {("no-data", "unknown")}


def two_kills(path: Path) -> Path:
    """make_run, plus an EU kill 3 s after the US kill: EU predictions fail 13-16 s."""
    run = make_run(path)
    frame = pd.read_parquet(run / "timeline.parquet")
    offset = frame["t_start"] - T0
    hit = (frame["residency"] == "eu") & (offset >= 13) & (offset < 16)
    frame.loc[hit, "ok"] = False
    frame.to_parquet(run / "timeline.parquet")
    (run / "events.jsonl").write_text(
        "".join(
            f'{{"type": "fault", "fault": "kill-region", "target": "{target}", "id": "{fid}", '
            f'"applied_at": {T0 + at}, "reverted_at": null}}\n'
            for fid, target, at in (("us-kill", "us-east", 10.0), ("eu-kill", "eu-west", 13.0))
        )
    )
    return run


def test_overlapping_kills_are_each_measured_from_their_own_fault(tmp_path: Path) -> None:

    run = two_kills(tmp_path / "run")
    doc = measure_run(run, Options(topology_path=run / "topology.yaml"), stores())
    rto = {(e["fault_id"], e["kind"], e["residency"]): e for e in doc["rto"]}
    assert rto["us-kill", "all", "us"]["rto_seconds"] == 5.0
    assert rto["eu-kill", "all", "eu"]["rto_seconds"] == 3.0
    assert rto["us-kill", "all", "eu"]["covered_by"] == "eu-kill"
    assert rto["eu-kill", "all", "us"]["covered_by"] == "us-kill"
    (run / "measurements.json").write_text(json.dumps(doc))
    card = evaluate([load_run(run)], parse_gates(TARGET_GATES, Path("g.yaml")), T0 + 100)
    verdicts = {g.id: (g.verdict, g.value) for g in card.gates}
    assert verdicts["rto_seconds[all/us]"] == (Verdict.PASS, 5.0)
    assert verdicts["rto_seconds[all/eu]"] == (Verdict.PASS, 3.0)
    # Without the topology the faults' jurisdictions are unknown: the EU kill ends the
    # US kill's observation after 3 s, and the US figure is no-data, never a pass.
    blind = measure_run(run, Options(), stores())
    us = next(e for e in blind["rto"] if (e["fault_id"], e["kind"], e["residency"]) == (
        "us-kill", "all", "us"))  # fmt: skip
    assert (us["status"], us["observed_until"]) == ("no-data", T0 + 13.0)


def test_clients_stopping_at_the_fault_are_inconclusive_never_pass(tmp_path: Path) -> None:

    run = make_run(tmp_path / "run")
    frame = pd.read_parquet(run / "timeline.parquet")
    # The eu clients stop 1 s after the fault and never return; us goes on to 60 s.
    gone = (frame["residency"] == "eu") & (frame["t_start"] >= T0 + 11.0)
    frame[~gone].to_parquet(run / "timeline.parquet")
    doc = measure_run(run, Options(topology_path=run / "topology.yaml"), stores())
    eu = next(e for e in doc["rto"] if (e["kind"], e["residency"]) == ("all", "eu"))
    assert (eu["status"], eu["rto_seconds"], eu["impact"]) == ("no-data", None, None)
    (run / "measurements.json").write_text(json.dumps(doc))
    card = evaluate([load_run(run)], parse_gates(TARGET_GATES, Path("g.yaml")), T0 + 100)
    assert {g.id: g.verdict for g in card.gates}["rto_seconds[all/eu]"] == Verdict.INCONCLUSIVE
    assert card.verdict == Verdict.INCONCLUSIVE


def test_the_regions_world_json_recorded_place_the_faults(tmp_path: Path) -> None:
    run = two_kills(tmp_path / "run")
    regions = [
        {"name": name, "provider": "aws", "jurisdiction": name[:2]}
        for name in ("us-east", "us-west", "eu-west")
    ]
    # The topology file it names is gone (the run was copied elsewhere): the regions
    # recorded in the run directory are enough.
    world = {"regions": regions, "topology": str(tmp_path / "gone.yaml")}
    (run / "world.json").write_text(json.dumps(world))
    doc = measure_run(run, Options(), stores())
    assert doc["inputs"]["topology"]["source"] == "world.json regions"
    us = next(e for e in doc["rto"] if (e["fault_id"], e["kind"], e["residency"]) == (
        "us-kill", "all", "us"))  # fmt: skip
    assert (us["status"], us["rto_seconds"]) == ("ok", 5.0)
    # A region list missing a jurisdiction is no map at all, never a partial one.
    regions[0] = {"name": "us-east"}
    (run / "world.json").write_text(json.dumps({"regions": regions}))
    assert measure_run(run, Options(), stores())["inputs"]["topology"]["status"] == "no-data"
