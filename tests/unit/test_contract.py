"""The run directory is a typed contract: what the probes write is what scorecards read.

The scorecard tests score `scorecards.sample` documents; these tests hold the sample to
the shape the probes really write (keys and types), so a test can never pass on a
hand-copied shape that the probes do not produce.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra.errors import MalformedInput
from probes.measure import Options, measure_run
from probes.models import Measurements, parse_measurements, read_measurements
from scorecards.sample import T0 as SAMPLE_T0
from scorecards.sample import sample_measurements
from tests.unit.test_probes_measure import T0, make_run, stores

CORRUPT = {
    "type": "fault",
    "fault": "corrupt-model",
    "target": "us-west",
    "id": "c1",
    "applied_at": T0 + 30.0,
    "reverted_at": None,
    "details": {"jurisdiction": "us"},
}


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What `measure` writes for a run with a region kill then a model corruption."""
    run = make_run(tmp_path_factory.mktemp("contract") / "run")
    with (run / "events.jsonl").open("a") as fh:
        fh.write(json.dumps(CORRUPT) + "\n")
    (run / "world.json").write_text(json.dumps({"model": {"digest": "sha256:m"}}))
    return measure_run(run, Options(topology_path=run / "topology.yaml"), stores())


def one(entries: list[dict[str, Any]], **match: Any) -> dict[str, Any]:
    found = [e for e in entries if all(e.get(k) == v for k, v in match.items())]
    assert found, f"no entry with {match}"
    return found[0]


SAMPLE = sample_measurements(SAMPLE_T0 + 60.0, time_to_detect=4.0)
SHAPES = {
    "rpo": {"status": "ok"},
    "residency": {"status": "ok"},
    "integrity/wrong-answers": {"status": "ok", "check": "wrong-answers"},
    "integrity/time-to-detect": {"status": "ok", "check": "time-to-detect"},
}


@pytest.mark.parametrize("section", SHAPES)
def test_the_sample_has_exactly_the_keys_the_probes_write(
    measured: dict[str, Any], section: str
) -> None:
    name = section.split("/", maxsplit=1)[0]
    probe = one(measured[name], **SHAPES[section])
    sample = one(SAMPLE[name], **SHAPES[section])
    assert sorted(sample) == sorted(probe)


def test_the_sample_rto_entry_has_only_keys_the_probes_write(measured: dict[str, Any]) -> None:
    # RTO entries grow with the definition: the sample may lag, never invent.
    probe = one(measured["rto"], status="ok", kind="predict")
    sample = SAMPLE["rto"][0]
    assert set(sample) - set(probe) == set()
    assert set(sample["inputs"]) == set(probe["inputs"])
    assert set(sample["latency_ms"]) == set(probe["latency_ms"])


def test_what_measure_writes_reads_back_typed(measured: dict[str, Any]) -> None:
    doc = parse_measurements(measured)
    assert isinstance(doc, Measurements)
    us = next(e for e in doc.rpo or () if e.residency == "us")
    assert us.replication_lag_estimate is not None and us.lost == 0
    assert {e.check for e in doc.integrity or ()} == {"wrong-answers", "time-to-detect"}
    assert parse_measurements(SAMPLE).rpo[0].lag_seconds == 0.4  # type: ignore[index]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["rpo"][0].update(lost_after_fault="0"),
         "field 'rpo[0].lost_after_fault': input should be a valid integer, got '0'"),
        (lambda d: d["integrity"][0].pop("check"), "field 'integrity[0].check': field required"),
        (lambda d: d["rto_prometheus"][0].pop("jurisdiction"),
         "field 'rto_prometheus[0].jurisdiction': field required"),
        (lambda d: d["residency"][1].update(status="fine"),
         "field 'residency[1].status': input should be 'ok', 'no-data' or 'error', got 'fine'"),
        (lambda d: d.update(version=2), "unsupported version 2 (this reader knows 1)"),
    ],
    ids=["string-count", "no-check", "no-jurisdiction", "unknown-status", "newer-version"],
)  # fmt: skip
def test_a_document_off_the_contract_names_the_field(
    tmp_path: Path, change: Any, message: str
) -> None:
    doc = json.loads(json.dumps(SAMPLE))
    change(doc)
    path = tmp_path / "measurements.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(MalformedInput) as caught:
        read_measurements(path)
    assert str(caught.value).startswith(f"{path}: {message}")


def test_unparsable_measurements_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "measurements.json"
    path.write_text('{"version": 1,\n "rto": [,]}')
    with pytest.raises(MalformedInput, match=r"measurements.json:2: not valid JSON"):
        read_measurements(path)
