"""The timeline's schema, rows, batches, merge; CPU sampling; counters; the stub's answers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client import generate_latest

from loadgen.cpu import CpuSampler
from loadgen.metrics import RequestCounts
from loadgen.payload import payload_digest, write_body
from loadgen.stub import MODEL_DIGEST, WRONG_OFFSET, StubApp, score_of
from loadgen.timeline import (
    ROW_GROUP_ROWS,
    SCHEMA,
    Recorder,
    Row,
    merge,
    percentiles,
    read_timeline,
    row_from_request,
)

PREDICT = {"kind": "predict", "residency": "eu"}
HEADERS = {"X-Region": "eu-west", "X-Model-Digest": "sha256:abc"}


def test_schema_is_exactly_the_documented_one() -> None:
    assert [(f.name, str(f.type)) for f in SCHEMA] == [
        ("t_start", "double"),
        ("latency_ms", "double"),
        ("kind", "string"),
        ("ok", "bool"),
        ("status", "int32"),
        ("error", "string"),
        ("residency", "string"),
        ("region", "string"),
        ("model_digest", "string"),
        ("score", "double"),
        ("client", "string"),
        ("seq", "int64"),
        ("expected", "double"),
        ("correct", "bool"),
    ]


def test_a_prediction_row() -> None:
    row = row_from_request(
        1795000000.1234567, 12.5, 200, None, HEADERS, b'{"score": 0.75}', PREDICT
    )
    assert row == (
        1795000000.123457,
        12.5,
        "predict",
        True,
        200,
        None,
        "eu",
        "eu-west",
        "sha256:abc",
        None,  # a prediction's body is not parsed
        None,
        None,
        None,
        None,
    )


def test_an_http_error_and_a_connection_error() -> None:
    bad = row_from_request(
        1.0, 3.0, 503, RuntimeError("503"), {"X-Region": "us-east"}, b"{}", PREDICT
    )
    assert (bad[3], bad[4], bad[7], bad[9]) == (False, 503, "us-east", None)
    assert bad[5] == "RuntimeError: 503"
    refused = row_from_request(1.0, 0.5, 0, ConnectionRefusedError("refused"), None, None, PREDICT)
    assert (refused[3], refused[4], refused[5], refused[7], refused[8]) == (
        False,
        0,
        "ConnectionRefusedError: refused",
        None,
        None,
    )
    # a non-2xx answer without an exception (a redirect Locust accepted) is not ok either
    assert row_from_request(1.0, 1.0, 304, None, {}, b"", PREDICT)[3:6] == (False, 304, "http 304")


def test_a_write_row_carries_client_and_seq_and_no_score() -> None:
    context = {"kind": "write", "residency": "us", "client": "w-1", "seq": 7}
    row = row_from_request(1.0, 2.0, 201, None, HEADERS, b'{"score": 1}', context)
    assert (row[2], row[3], row[9], row[10], row[11]) == ("write", True, None, "w-1", 7)


@pytest.mark.parametrize(
    ("status", "body", "correct"),
    [
        (200, b'{"score": 0.5000005}', True),
        (200, b'{"score": 0.500002}', False),
        (200, b"not json", False),
        (200, b'{"score": "0.5"}', False),
        (503, b'{"score": 0.5}', None),
    ],
    ids=["within-1e-6", "off-by-2e-6", "not-json", "score-not-a-number", "no-answer"],
)
def test_canary_correctness(status: int, body: bytes, correct: bool | None) -> None:
    context = {"kind": "canary", "residency": "us", "expected": 0.5}
    exc = None if status < 300 else RuntimeError("bad status")
    row = row_from_request(1.0, 1.0, status, exc, HEADERS, body, context)
    assert row[12] == 0.5
    assert row[13] is correct


def _row(t: float, seq: int) -> Row:
    ctx = {"kind": "write", "residency": "us", "client": "c", "seq": seq}
    return row_from_request(t, 1.0, 201, None, HEADERS, b"", ctx)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_recorder_writes_a_batch_when_full_or_old(tmp_path: Path) -> None:
    clock = FakeClock()
    recorder = Recorder(tmp_path / "segs", batch_rows=3, batch_seconds=10.0, clock=clock)
    for seq in range(1, 4):
        recorder.add(_row(100.0 + seq, seq))
    assert recorder.rows_written == 3 and recorder.buffered == 0
    recorder.add(_row(105.0, 4))
    assert recorder.buffered == 1
    clock.now = 10.0
    recorder.add(_row(106.0, 5))  # the batch is 10 s old: written with 2 rows
    assert recorder.rows_written == 5 and recorder.buffered == 0
    assert len(list((tmp_path / "segs").glob("*.parquet"))) == 2


def test_close_writes_the_last_batch_sorted_and_removes_the_segments(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "segs", batch_rows=2, batch_seconds=60.0, clock=FakeClock())
    for t, seq in [(5.0, 1), (3.0, 2), (4.0, 3), (1.0, 4), (2.0, 5)]:
        recorder.add(_row(t, seq))
    result = recorder.close(tmp_path / "timeline.parquet")
    assert result.rows == 5
    table = read_timeline(tmp_path / "timeline.parquet")
    assert table.column("t_start").to_pylist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert table.column("seq").to_pylist() == [4, 5, 2, 3, 1]
    assert not (tmp_path / "segs").exists()
    assert recorder.close(tmp_path / "timeline.parquet").rows == 0  # a second close: nothing


def test_a_crash_loses_at_most_the_batch_in_memory(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "segs", batch_rows=4, batch_seconds=60.0, clock=FakeClock())
    for seq in range(1, 11):
        recorder.add(_row(float(seq), seq))
    # "crash": never closed; a half-written batch would only exist under a .tmp name
    (tmp_path / "segs" / "seg-0000003.parquet.999.tmp").write_bytes(b"PAR1 half")
    result = merge(tmp_path / "recovered.parquet", [tmp_path / "segs"])
    assert (result.rows, result.files, result.skipped) == (8, 2, [])
    assert recorder.buffered == 2  # lost: less than one batch


def test_merge_skips_unreadable_files_and_names_them(tmp_path: Path) -> None:
    good = tmp_path / "a.parquet"
    pq.write_table(
        pa.Table.from_pylist([dict(zip(SCHEMA.names, _row(1.0, 1), strict=True))], schema=SCHEMA),
        good,
    )
    (tmp_path / "b.parquet").write_bytes(b"garbage")
    result = merge(tmp_path / "out" / "t.parquet", [tmp_path])
    assert result.rows == 1
    assert len(result.skipped) == 1 and "b.parquet" in result.skipped[0]


def test_merge_of_nothing_is_an_empty_timeline(tmp_path: Path) -> None:
    merge(tmp_path / "t.parquet", [tmp_path / "absent"])
    table = read_timeline(tmp_path / "t.parquet")
    assert table.num_rows == 0 and table.schema.equals(SCHEMA)


def test_percentiles_interpolate_linearly() -> None:
    values = pa.array([1.0, 2.0, 3.0, 4.0, None])
    assert percentiles(values, (0, 50, 100)) == [1.0, 2.5, 4.0]
    assert percentiles(pa.array([], pa.float64()), (50,)) == [None]


def test_write_payload_is_verifiable() -> None:
    body = write_body("w-1", 3)
    assert body["payload"]["digest"] == hashlib.sha256(b"w-1:3").hexdigest()[:16]
    assert payload_digest("w-1", 3) != payload_digest("w-1", 4)
    assert (body["client"], body["seq"]) == ("w-1", 3)


def test_cpu_sampler_windows_and_saturation() -> None:
    clock = FakeClock()
    used = {"p": 0.0}
    sampler = CpuSampler(window_s=1.0, clock=clock, reader=lambda pid: used["p"])
    # start-up: busy but inactive, ignored
    for step in range(4):
        clock.now, used["p"] = step * 0.5, step * 0.5
        sampler.sample({"p": 1}, active=False)
    # load: 40 % of a core for 2 s, then 95 % for 1 s
    base_t, base_u = 10.0, 5.0
    for step in range(5):
        clock.now, used["p"] = base_t + step * 0.5, base_u + step * 0.2
        sampler.sample({"p": 1}, active=True)
    assert sampler.summary().max_percent == pytest.approx(40.0)
    assert not sampler.summary().saturated
    for step in range(1, 3):
        clock.now, used["p"] = base_t + 2.0 + step * 0.5, base_u + 0.8 + step * 0.475
        sampler.sample({"p": 1}, active=True)
    summary = sampler.summary()
    assert summary.max_percent == pytest.approx(95.0)
    assert summary.mean_percent == pytest.approx(100 * 1.75 / 3.0, abs=0.1)
    assert summary.saturated and summary.samples == 7


def test_request_counts_travel_from_worker_to_master_and_to_prometheus() -> None:
    worker = RequestCounts()
    worker.count("predict", True, "us", "us-east", False)
    worker.count("predict", True, "us", "us-east", False)
    worker.count("canary", True, "eu", None, True)
    master = RequestCounts()
    master.add(worker.drain())
    assert worker.requests == {}
    text = generate_latest(master.registry()).decode()
    assert (
        'gameday_load_requests_total{kind="predict",outcome="ok",region="us-east",residency="us"}'
        " 2.0" in text
    )
    assert 'gameday_load_wrong_answers_total{region="none",residency="eu"} 1.0' in text


def test_stub_answers_like_the_platform() -> None:
    app = StubApp(wrong=frozenset({"us-3"}), fail_every=3)
    predict = app.answer(b"POST", b"/v1/predict", {b"x-residency": b"us"}, b'{"entity_id": "us-1"}')
    assert predict == (
        200,
        {"score": score_of("us-1")},
        {"X-Region": "us-east", "X-Model-Digest": MODEL_DIGEST},
    )
    wrong = app.answer(b"POST", b"/v1/predict", {b"x-residency": b"us"}, b'{"entity_id": "us-3"}')
    assert wrong[1]["score"] == score_of("us-3") + WRONG_OFFSET
    assert app.answer(b"POST", b"/v1/events", {b"x-residency": b"eu"}, b"{}")[0] == 503
    body = b'{"client": "c", "seq": 1, "payload": {}}'
    assert app.answer(b"POST", b"/v1/events", {b"x-residency": b"eu"}, body)[:1] == (201,)


def test_merged_timelines_have_row_groups_for_time_range_filters(tmp_path: Path) -> None:
    """Row groups of ROW_GROUP_ROWS rows, each with t_start min/max statistics: what
    lets a fault's window skip the rest of a soak (docs/measurement.md)."""
    rows = ROW_GROUP_ROWS * 2 + 5
    columns = {f.name: pa.nulls(rows, f.type) for f in SCHEMA}
    columns["t_start"] = pa.array([float(rows - i) for i in range(rows)])  # reversed
    (tmp_path / "segs").mkdir()
    pq.write_table(pa.table(columns, schema=SCHEMA), tmp_path / "segs" / "a.parquet")
    merge(tmp_path / "t.parquet", [tmp_path / "segs"])
    meta = pq.ParquetFile(tmp_path / "t.parquet").metadata
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sizes == [ROW_GROUP_ROWS, ROW_GROUP_ROWS, 5]
    t = meta.schema.to_arrow_schema().get_field_index("t_start")
    stats = meta.row_group(1).column(t).statistics
    assert (stats.min, stats.max) == (float(ROW_GROUP_ROWS + 1), float(2 * ROW_GROUP_ROWS))


def test_the_stub_answers_the_open_inference_protocol() -> None:
    app = StubApp(wrong=frozenset({"us-3"}))
    body = json.dumps(
        {"inputs": [{"name": "entity_id", "shape": [1], "datatype": "BYTES", "data": ["us-3"]}]}
    ).encode()
    status, answer, headers = app.answer(
        b"POST", b"/v2/models/stub/infer", {b"x-residency": b"us"}, body
    )
    assert status == 200 and headers["X-Region"] == "us-east"
    assert answer["outputs"][0]["data"] == [score_of("us-3") + 0.25]


HAPROXY_503 = (
    b"<html><body><h1>503 Service Unavailable</h1>\n"
    b"No server is available to handle this request.\n</body></html>\n"
)
BAD_STATUS = RuntimeError("URL http://10.200.0.2:8080/v1/events: code=503")


@pytest.mark.parametrize(
    ("exception", "content", "error"),
    [
        (
            BAD_STATUS,
            b'{"error": "primary unavailable: The previous master is now a slave"}',
            "RuntimeError: URL http://10.200.0.2:8080/v1/events: code=503; answer: "
            "primary unavailable: The previous master is now a slave",
        ),
        (
            None,
            HAPROXY_503,
            "http 503; answer: <html><body><h1>503 Service Unavailable</h1> No server is "
            "available to handle this request. </body></html>",
        ),
        (None, b"", "http 503"),
        (None, None, "http 503"),
        (None, b"{}", "http 503"),
        (None, b'{"error": 5}', "http 503"),
        (None, b'["error"]', "http 503"),
        (None, b'{"error": "  "}', "http 503"),
        (None, b"\xff\xfe not utf-8", "http 503; answer: \ufffd\ufffd not utf-8"),
    ],
    ids=[
        "service-json",
        "router-page",
        "empty",
        "no-body",
        "json-without-error",
        "error-not-a-string",
        "json-not-an-object",
        "blank-error",
        "undecodable",
    ],
)
def test_a_failed_answer_says_why_in_the_error(
    exception: BaseException | None, content: bytes | None, error: str
) -> None:
    row = row_from_request(1.0, 3.0, 503, exception, {}, content, PREDICT)
    assert (row[3], row[4], row[5]) == (False, 503, error)


def test_the_answer_is_kept_whole_within_the_error_column() -> None:
    # A long exception is cut, not the answer: 300 characters in all.
    long_exception = RuntimeError("x" * 400)
    said = "y" * 200  # only the first 150 characters are kept
    row = row_from_request(
        1.0, 3.0, 503, long_exception, {}, json.dumps({"error": said}).encode(), PREDICT
    )
    error = row[5]
    assert error is not None and len(error) == 300
    assert error.endswith("; answer: " + "y" * 150)
    assert error.startswith("RuntimeError: xxx")
    # A connection error has no answer to quote, whatever bytes came with it.
    refused = row_from_request(1.0, 0.5, 0, ConnectionRefusedError("refused"), None, b"x", PREDICT)
    assert refused[5] == "ConnectionRefusedError: refused"
