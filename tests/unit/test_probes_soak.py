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
from probes import rpo, rto, timeline
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
    monkeypatch.setattr(rto, "FRAME_ROWS", chunk)  # 5: frames end at faults and relapses
    monkeypatch.setattr(timeline, "FETCH_ROWS", max(chunk // 2, 1) + 1)  # 3: blocks cut ties
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
    engine = Timeline(run / "timeline.parquet")
    try:
        head, _, _ = engine.before(None, "us", fault_at)
        blocks = list(engine.blocks(None, "us", fault_at, fault_at + 10.0, ordered=False))
    finally:
        engine.close()
    window = us[(us["t_start"] >= fault_at) & (us["t_start"] <= fault_at + 10.0)]
    before = us[us["t_start"] < fault_at]
    ends = before["t_start"] + before["latency_ms"].fillna(0.0) / 1000
    in_flight = before[~before["ok"] & (ends > fault_at)]
    # The engine fetches failures that ended up to IN_FLIGHT_SLACK before the fault too.
    loose = before[~before["ok"] & (ends > fault_at - IN_FLIGHT_SLACK)]
    assert head[-1] == before["t_start"].iloc[-1]
    assert set(in_flight["t_start"]) <= set(head) <= set(loose["t_start"]) | {head[-1]}
    assert len(in_flight) > 0
    starts = np.concatenate([b[0] for b in blocks])
    np.testing.assert_array_equal(starts, window["t_start"].to_numpy())
    np.testing.assert_array_equal(np.concatenate([b[1] for b in blocks]), window["ok"].to_numpy())


def test_frames_own_every_row_once_and_never_split_a_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rto, "FRAME_ROWS", 4)
    t = np.array([0.0, 0.5, 1.0, 1.0, 1.0, 1.5, 2.0, 4.0, 4.0, 6.0, 6.5, 9.0])
    ok = np.ones(t.size, dtype=bool)
    blocks = [(t[a : a + 3], ok[a : a + 3], t[a : a + 3]) for a in range(0, t.size, 3)]
    frames = list(rto._frames(blocks, lookahead=2.0))
    owned = [rows[0][:own] for rows, own in frames]
    np.testing.assert_array_equal(np.concatenate(owned), t)
    # A frame owns 4 rows, then on to the end of their last start's tie; it reaches 2 s
    # past the first row it does not own; the last frame owns what is left.
    assert [o.tolist() for o in owned] == [
        [0.0, 0.5, 1.0, 1.0, 1.0],
        [1.5, 2.0, 4.0, 4.0],
        [6.0, 6.5, 9.0],
    ]
    assert frames[0][0][0].tolist() == [0.0, 0.5, 1.0, 1.0, 1.0, 1.5, 2.0, 4.0]
    assert frames[1][0][0][-1] == 9.0
    # The cuts are the rows', not the arrival's: one block, or none at all.
    whole = list(rto._frames([(t, ok, t)], lookahead=2.0))
    assert [(r[0].tolist(), own) for r, own in whole] == [(r[0].tolist(), own) for r, own in frames]
    assert list(rto._frames([], lookahead=2.0)) == []
    assert list(rto._frames([(t[:0], ok[:0], t[:0])], lookahead=2.0)) == []


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


@pytest.mark.parametrize("n", [1, 2, 3, 7, 100, 101, 12_345])
def test_selected_percentiles_are_numpys_floats(n: int) -> None:
    values = np.sort(np.random.default_rng(n).gamma(2.0, 4.0, n))
    got = timeline._linear_percentiles(
        n, (50.0, 95.0, 99.0), lambda ranks: {r: float(values[r]) for r in ranks}
    )
    assert got == np.percentile(values, [50, 95, 99]).tolist()


@pytest.mark.parametrize("bits", [4, 20], ids=["16-bins", "default-bins"])
def test_binned_latency_percentiles_equal_numpys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bits: int
) -> None:
    """Ties, near-equal values, zeros and outliers; with 16 bins a bin holds most of the
    values: the percentiles read once through `BinnedSpread` are numpy's."""
    rng = np.random.default_rng(5)
    n = 20_000
    latency = np.where(rng.random(n) < 0.6, 5.0, rng.gamma(2.0, 4.0, n))
    latency[rng.random(n) < 0.01] = 1e6
    latency[:50] = 7.0 + np.arange(50) * 1e-9
    latency[50:60] = 0.0
    t = 1000.0 + np.arange(n) / 100.0
    path = tmp_path / "timeline.parquet"
    pq.write_table(
        pa.table(
            {
                "t_start": t,
                "latency_ms": latency,
                "kind": ["predict"] * n,
                "ok": np.ones(n, dtype=bool),
                "status": pa.array(np.full(n, 200), pa.int32()),
                "residency": ["us"] * n,
            }
        ),
        path,
    )
    monkeypatch.setattr(timeline, "KEY_BITS", bits)
    engine = Timeline(path)
    try:
        spread = engine.spread("predict", "us", 1000.0, 1150.0, 1190.0)
        for a in range(0, n, 777):  # read as a scan does: in pieces, in time order
            part = slice(a, a + 777)
            spread.add(latency[part][t[part] < 1150.0])
        got = spread.result()
    finally:
        engine.close()
    during = latency[t < 1150.0]
    expected = np.percentile(during, [50, 95, 99])
    assert got == {
        "p50": round(float(expected[0]), 3),
        "p95": round(float(expected[1]), 3),
        "p99": round(float(expected[2]), 3),
        "requests": during.size,
    }
    assert got["p50"] == 5.0  # a tie


def test_binned_percentiles_of_nothing_or_of_unknown_latencies_are_null() -> None:
    def never(ranges: object) -> list[tuple[float, int]]:
        raise AssertionError("nothing to fetch")

    empty = timeline.BinnedSpread(never, "t")
    assert empty.result() == {"p50": None, "p95": None, "p99": None, "requests": 0}
    unknown = timeline.BinnedSpread(never, "t")
    unknown.add(np.array([1.0, float("nan"), 2.0]))
    assert unknown.result() == {"p50": None, "p95": None, "p99": None, "requests": 3}


def test_a_timeline_changed_under_the_percentiles_is_an_error() -> None:
    spread = timeline.BinnedSpread(lambda ranges: [(1.0, 1)], "run/timeline.parquet")
    spread.add(np.array([1.0, 1.0]))
    with pytest.raises(ConfigError, match=r"run/timeline\.parquet: the timeline changed"):
        spread.result()


def _random_stream(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """A stream with an outage, relapses, ties, thin spells and gaps around a fault."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 1500))
    t = np.sort(np.round(rng.uniform(0.0, 60.0, n), int(rng.integers(1, 4))))
    gap = rng.uniform(0.0, 55.0)
    t = t[(t < gap) | (t > gap + rng.uniform(0.0, 3.0))]  # a hole longer than W, maybe
    ok = rng.random(t.size) > rng.uniform(0.0, 0.05)
    fault = float(rng.uniform(5.0, 30.0))
    ok[(t >= fault) & (t < fault + rng.uniform(0.0, 10.0))] = False
    for start in rng.uniform(fault, 60.0, int(rng.integers(0, 4))):
        ok[(t >= start) & (t < start + rng.uniform(0.0, 1.5))] = False  # relapses
    latency = rng.gamma(2.0, 40.0, t.size)
    latency[rng.random(t.size) < 0.01] = np.nan
    return t, ok, latency, fault, float(rng.uniform(fault, 62.0))


@pytest.mark.parametrize("seed", range(30))
def test_rto_figures_do_not_depend_on_the_frames(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    t, ok, latency, fault, until = _random_stream(seed)
    params = rto.RtoParams(stability_seconds=float(seed % 4) * 2.5)
    whole = rto.rto_of(t, ok, latency, fault, until, params, latency_until=fault + 5.0)
    for frame in (2, 9, 100):
        monkeypatch.setattr(rto, "FRAME_ROWS", frame)
        monkeypatch.setattr(rto, "CHUNK_ROWS", max(frame // 2, 1))
        framed = rto.rto_of(t, ok, latency, fault, until, params, latency_until=fault + 5.0)
        assert framed == whole, frame
