"""Malformed run-directory input: exit 2 naming file, line (or column) and field.

Exactly one torn final line of `events.jsonl` (what a crash while appending leaves) is
tolerated, with a warning in `inputs`; anything else malformed is an error, never a
record silently skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from experiments.cmd_measure import measure as measure_command
from infra.errors import MalformedInput
from infra.types import FaultRecord, read_event_log
from probes.measure import Options, measure_run
from probes.timeline import normalise, read_timeline
from tests.unit.test_probes_measure import T0, make_run, stores

FAULT = {
    "type": "fault",
    "fault": "kill-region",
    "target": "us-east",
    "id": "f1",
    "applied_at": T0 + 10.0,
    "reverted_at": None,
    "details": {"jurisdiction": "us"},
}


def line(**changes: object) -> str:
    return json.dumps({**FAULT, **changes}) + "\n"


def cli() -> click.Group:
    group = click.Group("gameday")
    group.add_command(measure_command)
    return group


# -- events.jsonl: the one reader
@pytest.mark.parametrize(
    ("text", "message"),
    [
        (line() + line(id="f2", applied_at="2026-11-30T10:00:00Z"),
         ":2: field 'applied_at': expected epoch seconds (a number), got '2026-11-30T10:00:00Z'"),
        (line(applied_at=None), ":1: field 'applied_at': required in a fault record, got null"),
        (line(applied_at=True), ":1: field 'applied_at': expected epoch seconds (a number), "
         "got True"),
        (line(target=3), ":1: field 'target': expected a string, got 3"),
        (line(details=[1]), ":1: field 'details': expected an object, got [1]"),
        ('{"type": "fault"}\n', ":1: field 'fault': missing"),
        (line(type="oops"), ":1: field 'type': unknown record type 'oops'"),
        ("[1, 2]\n", ":1: expected a JSON object, got list"),
        ('{"type": "fau\n' + line(), ":1: not JSON: Unterminated string"),
    ],
    ids=["string-applied-at", "null-applied-at", "bool-applied-at", "int-target",
         "list-details", "missing-field", "unknown-type", "not-an-object", "torn-middle-line"],
)  # fmt: skip
def test_a_malformed_record_names_file_line_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(text)
    with pytest.raises(MalformedInput) as caught:
        read_event_log(path)
    assert str(caught.value).startswith(f"{path}{message}")


@pytest.mark.parametrize("newline", ["", "\n"], ids=["no-newline", "newline"])
def test_one_torn_final_line_is_dropped_with_a_warning(tmp_path: Path, newline: str) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(line() + line(id="f2") + '{"type": "fault", "fau' + newline)
    log = read_event_log(path)
    assert [r.id for r in log.records] == ["f1", "f2"]
    assert log.warnings == (
        f"{path}:3: torn final line ignored (not JSON: Unterminated string starting at); "
        "2 intact records before it kept",
    )


def test_a_complete_final_record_with_a_bad_field_is_not_torn(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(line() + line(id="f2", applied_at="soon"))
    with pytest.raises(MalformedInput, match=r"events.jsonl:2: field 'applied_at'"):
        read_event_log(path)


def test_records_round_trip(tmp_path: Path) -> None:
    record = FaultRecord.from_dict(FAULT)
    assert FaultRecord.from_dict(json.loads(record.to_json())) == record


def test_measure_keeps_the_records_before_a_torn_line(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    with (run / "events.jsonl").open("a") as fh:
        fh.write('{"type": "revert", "fault": "kill-re')
    doc = measure_run(run, Options(topology_path=run / "topology.yaml"), stores())
    events = doc["inputs"]["events"]
    assert (events["status"], events["faults"], events["records"]) == ("ok", 1, 1)
    assert len(events["warnings"]) == 1 and ":2: torn final line ignored" in events["warnings"][0]
    assert {e["status"] for e in doc["rto"]} == {"ok"}


def test_measure_raises_on_a_string_applied_at(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    (run / "events.jsonl").write_text(line(applied_at=str(T0 + 10.0)) + line(id="f2"))
    with pytest.raises(MalformedInput, match=r"events.jsonl:1: field 'applied_at'"):
        measure_run(run, Options(topology_path=run / "topology.yaml"), stores())


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ('{"type": "fault", not json}\n' + line(), "events.jsonl:1: not JSON"),
        (line() + line(id="f2", applied_at="x"), "events.jsonl:2: field 'applied_at'"),
    ],
    ids=["unparsable", "string-applied-at"],
)
def test_cli_exits_2_on_malformed_events(tmp_path: Path, events: str, message: str) -> None:
    run = make_run(tmp_path / "run")
    (run / "events.jsonl").write_text(events)
    result = CliRunner().invoke(cli(), ["measure", str(run)])
    assert result.exit_code == 2, result.output
    assert f"gameday: error: {run / message}" in result.output
    assert not (run / "measurements.json").exists()


def test_cli_tolerates_a_torn_last_line_and_says_so(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    with (run / "events.jsonl").open("a") as fh:
        fh.write('{"type": "rev')
    result = CliRunner().invoke(cli(), ["measure", str(run)])
    assert result.exit_code == 0, result.output
    assert f"warning: {run / 'events.jsonl'}:2: torn final line ignored" in result.output
    doc = json.loads((run / "measurements.json").read_text())
    assert len(doc["inputs"]["events"]["warnings"]) == 1


# -- timeline.parquet: Arrow types are checked at the boundary
def rewrite_column(path: Path, column: str, values: pa.Array) -> None:
    table = pq.read_table(path)
    index = table.schema.get_field_index(column)
    pq.write_table(table.set_column(index, column, values), path)


def test_a_string_ok_column_is_an_error_naming_the_column(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    path = run / "timeline.parquet"
    ok = pq.read_table(path).column("ok").to_pylist()
    rewrite_column(path, "ok", pa.array(["true" if v else "false" for v in ok]))
    with pytest.raises(MalformedInput, match=r"timeline.parquet: column 'ok' must be of type bool"):
        read_timeline(path)
    result = CliRunner().invoke(cli(), ["measure", str(run)])
    assert result.exit_code == 2, result.output
    assert f"{path}: column 'ok' must be of type bool" in result.output


@pytest.mark.parametrize(
    ("column", "values"),
    [("t_start", ["x"]), ("seq", ["7"]), ("kind", [1]), ("correct", ["yes"])],
)
def test_other_columns_of_the_wrong_family_are_errors(
    tmp_path: Path, column: str, values: list[object]
) -> None:
    path = tmp_path / "timeline.parquet"
    base = {"t_start": [1.0], "latency_ms": [1.0], "kind": ["write"], "ok": [True],
            "status": [200], "residency": ["us"], "seq": [7], "correct": [True]}  # fmt: skip
    pd.DataFrame({**base, column: values}).to_parquet(path)
    with pytest.raises(MalformedInput, match=rf"column '{column}' must be of type"):
        read_timeline(path)


def test_a_constructed_frame_with_string_ok_is_an_error() -> None:
    frame = pd.DataFrame({"t_start": [1.0], "latency_ms": [1.0], "kind": ["predict"],
                          "ok": ["false"], "status": [200], "residency": ["us"]})  # fmt: skip
    with pytest.raises(MalformedInput, match=r"<timeline>: column 'ok' must be boolean"):
        normalise(frame)


# -- load.json and world.json: absent is no-data, broken is exit 2
@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("world.json", '{"model": {"digest": "x"},\n "urls": }', "world.json:2: not valid JSON"),
        ("load.json", "[true]", "load.json: expected a JSON object, got list"),
    ],
    ids=["world-not-json", "load-not-an-object"],
)
def test_cli_exits_2_on_a_broken_optional_file(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    run = make_run(tmp_path / "run")
    (run / name).write_text(text)
    result = CliRunner().invoke(cli(), ["measure", str(run)])
    assert result.exit_code == 2, result.output
    assert f"gameday: error: {run / message}" in result.output


def test_absent_optional_files_are_no_data(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    (run / "load.json").unlink()
    doc = measure_run(run, Options(topology_path=run / "topology.yaml"), stores())
    assert doc["inputs"]["load"] == {
        "path": "load.json",
        "status": "no-data",
        "reason": "file absent",
    }
    assert doc["inputs"]["world"]["status"] == "no-data"
    assert doc["load"] == {"saturated": None, "valid": None}
