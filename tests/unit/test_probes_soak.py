"""The bounded-memory measurement gives the in-memory path's figures, exactly.

`tests/golden/soak/*.json` are what `measure_run` gave on the constructed runs of
`tests.unit.constructed_runs` before the timeline was queried in place (the whole
timeline in pandas). Row groups of 37 rows and steps of a few rows put faults, ties,
relapses and in-flight failures on and near every edge.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infra.errors import ConfigError, MalformedInput
from probes import rpo, rto
from probes.measure import Options, measure_run
from probes.rpo import MemoryWriteStore
from probes.timeline import IN_FLIGHT_SLACK, Timeline, read_timeline
from tests.unit.constructed_runs import SCENARIOS, _present, build, figures

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "soak"


def _measure(run: Path) -> dict[str, object]:
    stores = {j: MemoryWriteStore(_present(run, j)) for j in ("us", "eu")}
    options = Options(topology_path=run / "topology.yaml", expected_digest="sha256:good")
    return figures(measure_run(run, options, stores))


@pytest.mark.parametrize("chunk", [5, 1 << 20], ids=["steps-of-5", "one-step"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_figures_as_the_in_memory_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scenario: str, chunk: int
) -> None:
    monkeypatch.setattr(rto, "CHUNK_ROWS", chunk)
    monkeypatch.setattr(rpo, "LEDGER_GROUP_ROWS", chunk)  # 5: one client per ledger slice
    run = build(tmp_path / scenario, scenario)
    expected = json.loads((GOLDEN / f"{scenario}.json").read_text())
    assert _measure(run) == expected


def test_the_golden_runs_exercise_what_they_claim() -> None:
    """A golden file that lost its relapses or its no-data entries would prove less."""
    edge = json.loads((GOLDEN / "kill-at-edge.json").read_text())
    assert any(e["relapses"] for e in edge["rto"] if e["status"] == "ok")
    assert any(e["status"] == "no-data" for e in edge["rto"])
    overlap = json.loads((GOLDEN / "overlapping.json").read_text())
    assert {e["fault_id"] for e in overlap["rto"]} == {"kill-us", "kill-eu", "corrupt"}
    assert any(e["check"] == "time-to-detect" and e["status"] == "ok" for e in overlap["integrity"])
    assert sum(e["violations"] for e in overlap["residency"]) > 0
    assert all(
        e["status"] == "no-data" for e in json.loads((GOLDEN / "sparse.json").read_text())["rto"]
    )


def test_a_stream_reads_only_its_window_and_the_rows_before_it_needs(tmp_path: Path) -> None:
    run = build(tmp_path / "run", "kill-at-edge")
    frame = read_timeline(run / "timeline.parquet", columns=())
    fault_at = float(frame["t_start"].iloc[37 * 50])
    us = frame[frame["residency"] == "us"]
    timeline = Timeline(run / "timeline.parquet")
    try:
        s = timeline.stream(None, "us", len(us), fault_at, fault_at + 10.0)
    finally:
        timeline.close()
    window = us[(us["t_start"] >= fault_at) & (us["t_start"] <= fault_at + 10.0)]
    before = us[us["t_start"] < fault_at]
    ends = before["t_start"] + before["latency_ms"].fillna(0.0) / 1000
    in_flight = before[~before["ok"] & (ends > fault_at)]
    # The engine fetches failures that ended up to IN_FLIGHT_SLACK before the fault too.
    loose = before[~before["ok"] & (ends > fault_at - IN_FLIGHT_SLACK)]
    head = s.starts[s.starts < fault_at]
    assert s.total == len(us)
    assert head[-1] == before["t_start"].iloc[-1]
    assert set(in_flight["t_start"]) <= set(head) <= set(loose["t_start"]) | {head[-1]}
    assert len(in_flight) > 0
    np.testing.assert_array_equal(s.starts[head.size :], window["t_start"].to_numpy())
    np.testing.assert_array_equal(s.ok[head.size :], window["ok"].to_numpy())


def test_an_empty_timeline_is_no_data(tmp_path: Path) -> None:
    run = build(tmp_path / "run", "kill-at-edge")
    table = pq.read_table(run / "timeline.parquet").slice(0, 0)
    pq.write_table(table, run / "timeline.parquet")
    doc = measure_run(run, Options(topology_path=run / "topology.yaml"))
    assert doc["inputs"]["timeline"]["rows"] == 0
    assert [e["status"] for e in doc["rto"]] == ["no-data"]
    assert doc["rto"][0]["reason"] == "the timeline is empty"


@pytest.mark.parametrize(
    ("column", "values", "error", "message"),
    [
        ("t_start", pa.array([1.0, None]), ConfigError, "column 't_start' has null values"),
        ("t_start", pa.array([1.0, float("nan")]), ConfigError, "column 't_start' has null values"),
        ("ok", pa.array(["true", "false"]), MalformedInput, "column 'ok' must be of type bool"),
    ],
    ids=["null-start", "nan-start", "text-ok"],
)
def test_malformed_timelines_raise_naming_file_and_column(
    tmp_path: Path, column: str, values: pa.Array, error: type[Exception], message: str
) -> None:
    columns = {
        "t_start": pa.array([1.0, 2.0]),
        "latency_ms": pa.array([1.0, 1.0]),
        "kind": pa.array(["predict", "predict"]),
        "ok": pa.array([True, True]),
        "status": pa.array([200, 200], pa.int32()),
        "residency": pa.array(["us", "us"]),
    }
    columns[column] = values
    path = tmp_path / "timeline.parquet"
    pq.write_table(pa.table(columns), path)
    with pytest.raises(error, match=f"{path}: {message}"):
        Timeline(path)


def test_a_missing_timeline_or_column_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timeline not found"):
        Timeline(tmp_path / "absent.parquet")
    path = tmp_path / "timeline.parquet"
    pq.write_table(pa.table({"t_start": pa.array([1.0])}), path)
    with pytest.raises(ConfigError, match="timeline lacks column 'latency_ms'"):
        Timeline(path)


def test_chart_bins_equal_the_row_aggregates(tmp_path: Path) -> None:
    from scorecards.charts import read_bins

    run = build(tmp_path / "run", "overlapping")
    frame = read_timeline(run / "timeline.parquet", columns=("region",))
    fault_at = float(frame["t_start"].iloc[37 * 50])  # the constructed runs' first fault
    bins = read_bins(run / "timeline.parquet", fault_at)
    assert bins is not None and bins.width == 1.0 and bins.first == fault_at
    binned = np.floor((frame["t_start"] - fault_at) / 1.0) * 1.0
    grouped = frame.assign(bin=binned, residency=frame["residency"].astype(str))
    by = grouped.groupby(["residency", "bin"])
    traffic = bins.traffic.set_index(["residency", "bin"]).sort_index()
    np.testing.assert_allclose(traffic["ratio"], by["ok"].mean().sort_index(), rtol=1e-12)
    np.testing.assert_allclose(
        traffic["p99"], by["latency_ms"].quantile(0.99).sort_index(), rtol=1e-12
    )
    assert bins.served is not None and int(bins.served["n"].sum()) == len(frame)
    acked = frame[(frame["kind"] == "write") & frame["ok"]]
    assert bins.writes is not None and int(bins.writes["n"].sum()) == len(acked)


def test_chart_bins_of_nothing_are_none(tmp_path: Path) -> None:
    from scorecards.charts import read_bins

    assert read_bins(tmp_path / "absent.parquet", None) is None
    run = build(tmp_path / "run", "kill-at-edge")
    empty = pq.read_table(run / "timeline.parquet").slice(0, 0)
    pq.write_table(empty, run / "timeline.parquet")
    assert read_bins(run / "timeline.parquet", None) is None


@pytest.mark.parametrize("null_latency", [False, True], ids=["latencies", "a-null-latency"])
def test_time_to_detect_by_the_engine_equals_the_row_path(
    tmp_path: Path, null_latency: bool
) -> None:
    from probes.integrity import detection_of, detection_scan
    from probes.rundir import Fault

    run = build(tmp_path / "run", "overlapping")
    path = run / "timeline.parquet"
    if null_latency:  # numpy's max is NaN then: the engine must say the same
        table = pq.read_table(path)
        latency = table.column("latency_ms").to_pylist()
        latency[-40:] = [None] * 40
        index = table.schema.get_field_index("latency_ms")
        pq.write_table(table.set_column(index, "latency_ms", pa.array(latency)), path)
    frame = read_timeline(path, columns=("region",))
    starts = frame["t_start"].to_numpy()
    at, until = float(starts[37 * 50]), float(starts[-1])
    faults = [
        Fault("a", "corrupt-model", "us-east", at),
        Fault("b", "corrupt-model", "us-east", at, details={"jurisdiction": "eu"}),
        Fault("c", "corrupt-model", "eu-west", at, reverted_at=at + 30.0),
        Fault("d", "corrupt-model", "us-west", at),
        Fault("e", "corrupt-model", "eu-west", float(starts[10])),
        Fault("f", "corrupt-model", "nowhere", at),
        Fault("g", "corrupt-model", "us-east", until - 1.0),
    ]
    timeline = Timeline(path)
    try:
        for fault in faults:
            for jur in ({}, {"eu-west": "eu"}):
                expected = detection_of(frame, fault, until, 5.0, jur)
                assert detection_scan(timeline, fault, until, 5.0, jur) == expected
    finally:
        timeline.close()
    # The cases reach the entry's every branch.
    kinds = {(e["status"], e["detected"]) for e in [detection_of(frame, f, until) for f in faults]}
    assert {("ok", True), ("ok", False), ("no-data", None)} <= kinds
