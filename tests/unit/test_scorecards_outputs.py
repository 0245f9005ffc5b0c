"""Outputs: golden Markdown and JUnit, the JUnit schema, the JSON Schema, the manifest.

Regenerate the golden files after an intended change with
`GAMEDAY_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_scorecards_outputs.py`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import xmlschema

from scorecards.evaluate import Verdict
from scorecards.gates import parse_gates
from scorecards.manifest import verify
from scorecards.sample import TARGET_GATES, edit_measurements, write_sample_run
from scorecards.scoring import Scored, score

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
SCHEMA = REPO / "scorecards" / "scorecard.schema.json"
T = 1_795_000_500.0

GATES = (
    TARGET_GATES
    + """jurisdictions:
  eu: {rto_seconds: {less_than: 45}}
"""
)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("GAMEDAY_UPDATE_GOLDEN") == "1":
        path.write_text(text)
        return
    assert path.exists(), f"{path} missing: run with GAMEDAY_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{name} differs (GAMEDAY_UPDATE_GOLDEN=1 to accept)"


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Scored:
    """One run with a FAIL (a write lost after the fault), an INCONCLUSIVE (mismatch), PASSes."""
    base = tmp_path_factory.mktemp("outputs")
    run = write_sample_run(base / "run-golden", requests=5_000, lost_after_fault=1, mismatch=True)
    gates = parse_gates(GATES, Path("gates.yaml"))
    outcome = score([run], gates, clock=lambda: T)
    return outcome.runs[0]


def test_the_golden_run_has_every_verdict(scored: Scored) -> None:
    assert scored.card.verdict == Verdict.FAIL
    assert {g.verdict for g in scored.card.gates} == set(Verdict)


def test_markdown_matches_golden(scored: Scored) -> None:
    text = (scored.out_dir / "scorecard.md").read_text()
    assert text.startswith("## ❌ FAIL: region-kill\n")
    check_golden("scorecard.md", text)


def test_junit_matches_golden(scored: Scored) -> None:
    check_golden("junit.xml", (scored.out_dir / "junit.xml").read_text())


def test_junit_validates_against_the_junit_schema(scored: Scored) -> None:
    schema = xmlschema.XMLSchema(GOLDEN / "junit.xsd")
    schema.validate(scored.out_dir / "junit.xml")
    doc = schema.to_dict(scored.out_dir / "junit.xml")
    assert isinstance(doc, dict)
    cases = doc["testsuite"][0]["testcase"]
    assert len(cases) == len(scored.card.gates)  # one testcase per gate
    failures = [c["@name"] for c in cases if "failure" in c]
    skipped = [c["@name"] for c in cases if "skipped" in c]
    assert failures == ["lost_after_fault[us]"]
    assert skipped == ["rto_seconds[predict/us]", "rto_seconds[write/us]"]
    suite = doc["testsuite"][0]
    assert (suite["@tests"], suite["@failures"], suite["@skipped"]) == (len(cases), 1, 2)


def test_the_junit_schema_rejects_a_malformed_report(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites><testsuite tests="1"><testcase/></testsuite></testsuites>')
    assert not xmlschema.XMLSchema(GOLDEN / "junit.xsd").is_valid(bad)


def test_scorecard_json_validates_against_the_committed_schema(scored: Scored) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    document = json.loads((scored.out_dir / "scorecard.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["version"] == 1
    assert document["summary"] == scored.card.counts()
    broken = dict(document, verdict="MAYBE")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(broken)


def test_html_is_self_contained(scored: Scored) -> None:
    html = (scored.out_dir / "scorecard.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html
    assert html.count('src="data:image/png;base64,') == 3
    assert "What blocks the release" in html


def test_the_prometheus_rto_stands_beside_the_client_rto(tmp_path: Path) -> None:
    # A measured cross-check (the fields probes.prometheus.compare_rto writes) shows in
    # the Markdown and the HTML, on the rows of its fault and jurisdiction.
    run = write_sample_run(tmp_path / "run", timeline=False)

    def measured(doc: dict[str, Any]) -> None:
        for entry in doc["rto"]:
            entry["fault_id"] = "f1"
        doc["rto"][1]["covered_by"] = "f0"
        doc["rto_prometheus"] = [
            {"jurisdiction": "us", "residency": "us", "fault_id": "f1", "status": "ok",
             "rto_seconds": 14.69, "difference_seconds": 0.49, "mismatch_bound_seconds": 2.0,
             "instrumentation_mismatch": False},
            {"jurisdiction": "us", "residency": "us", "fault_id": "f0", "status": "ok",
             "rto_seconds": 99.0},
            {"jurisdiction": "eu", "residency": "eu", "fault_id": "f1", "status": "no-data"},
        ]  # fmt: skip

    edit_measurements(run, measured)
    out = score([run], parse_gates(GATES, Path("gates.yaml")), clock=lambda: T).runs[0].out_dir
    cell = "14.7 s (+0.49 s, bound 2 s)"
    markdown = (out / "scorecard.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| run | predict")]
    assert [r.split(" | ")[4] for r in rows] == [cell, "no-data"]
    assert "99.0 s" not in markdown  # another fault's figure
    assert "| write · us | ok (judged by f0) |" in markdown
    assert f"<td>{cell}</td>" in (out / "scorecard.html").read_text()


def test_charts_are_written(scored: Scored) -> None:
    for name in ("traffic", "served-by", "lost-writes"):
        png = scored.out_dir / "charts" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_manifest_detects_changed_added_and_removed_files(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / "run", timeline=False)
    score([run], parse_gates(GATES, Path("gates.yaml")), clock=lambda: T, charts=False)
    assert verify(run) == []
    manifest = json.loads((run / "manifest.json").read_text())
    assert "measurements.json" in manifest["files"]
    assert "scorecard.md" in manifest["files"]
    assert "manifest.json" not in manifest["files"]

    with (run / "measurements.json").open("a") as handle:
        handle.write(" ")
    (run / "extra.txt").write_text("planted")
    (run / "load.json").unlink()
    assert [str(d) for d in verify(run)] == [
        "added: extra.txt",
        "removed: load.json",
        "changed: measurements.json",
    ]


def test_rescoring_notes_inputs_changed_since_the_last_manifest(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / "run", timeline=False)
    gates = parse_gates(GATES, Path("gates.yaml"))
    score([run], gates, clock=lambda: T, charts=False)
    with (run / "measurements.json").open("a") as handle:
        handle.write("\n")
    again = score([run], gates, clock=lambda: T, charts=False)
    assert any("changed: measurements.json" in n for n in again.runs[0].card.notes)
    assert verify(run) == []


def test_the_rpo_table_shows_the_lag_and_never_a_vacuous_zero(tmp_path: Path) -> None:
    run = write_sample_run(tmp_path / "run", requests=2_000, timeline=False, lag_us=0.4)

    def vacuous(doc: dict[str, Any]) -> None:
        doc["rpo"][0].update(lost_after_fault=None, acknowledged_after_fault=0)

    edit_measurements(run, vacuous)
    scored = score([run], parse_gates(GATES, Path("gates.yaml")), clock=lambda: T).runs[0]
    markdown = (scored.out_dir / "scorecard.md").read_text()
    assert (
        "| run | us | ok | 1.80 s | 3,000 | 3 | n/a (none acknowledged after) | 2 | 0.40 s |"
        in markdown
    )
    html = (scored.out_dir / "scorecard.html").read_text()
    assert "replication lag at fault" in html and "0.40 s" in html
