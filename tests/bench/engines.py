"""The engines side by side on one soak timeline: how DuckDB was chosen (issue 15).

`python -m tests.bench.engines TIMELINE.parquet` (a `bench_soak` timeline of 10 M rows: its
fault is 300 s in) runs, for each of DuckDB, the pyarrow
dataset scanner and Polars (lazy, streaming), the queries `measure` needs in a child
process of its own and prints wall time and peak RSS (`ru_maxrss`). Polars is not a
dependency of the project: install it by hand to redo the comparison
(docs/measurement.md, "Why DuckDB"). Not part of `make bench`.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from typing import Any

import numpy as np

FAULT_AT = 1_700_000_300.0  # the soak of tests/bench/bench_soak.py
ENGINES = ("duckdb", "pyarrow", "polars")


def with_pyarrow(path: str) -> Any:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    data = ds.dataset(path)
    f = ds.field
    after = (f("residency") == "us") & (f("t_start") >= FAULT_AT)
    stream = data.to_table(columns=["t_start", "ok", "latency_ms"], filter=after)
    counts: dict[tuple[str, str], int] = {}
    for batch in data.to_batches(columns=["kind", "residency", "ok"]):
        grouped = pa.table(batch).group_by(["kind", "residency"]).aggregate([("ok", "count")])
        for k, r, c in zip(*(grouped[n].to_pylist() for n in grouped.column_names), strict=True):
            counts[(k, r)] = counts.get((k, r), 0) + c
    window = after & (f("t_start") < FAULT_AT + 20)
    latency = data.to_table(columns=["latency_ms"], filter=window)["latency_ms"].to_numpy()
    # Per-second p99 per residency: pyarrow has no exact grouped quantile (t-digest).
    for batch in data.to_batches(columns=["t_start", "residency", "ok", "latency_ms"]):
        table = pa.table(batch)
        table = table.append_column("sec", pc.floor(table["t_start"]))
        table.group_by(["residency", "sec"]).aggregate(
            [("ok", "count"), ("latency_ms", "tdigest", pc.TDigestOptions(q=0.99))]
        )
    return stream.num_rows, len(counts), np.percentile(latency, [50, 95, 99]).tolist()


def with_duckdb(path: str) -> Any:
    import duckdb

    db = duckdb.connect(config={"threads": 2})
    src = f"read_parquet('{path}')"
    stream = db.execute(
        f"SELECT t_start, ok, latency_ms FROM {src} WHERE residency = 'us' AND t_start >= ?",
        [FAULT_AT],
    ).fetchnumpy()
    counts = db.execute(f"SELECT kind, residency, count(*) FROM {src} GROUP BY ALL").fetchall()
    p = db.execute(
        f"SELECT quantile_cont(latency_ms, [0.5, 0.95, 0.99]) FROM {src} "
        "WHERE residency = 'us' AND t_start >= ? AND t_start < ?",
        [FAULT_AT, FAULT_AT + 20],
    ).fetchall()
    db.execute(
        f"SELECT residency, floor(t_start), count(*), sum(ok::INT), "
        f"quantile_cont(latency_ms, 0.99) FROM {src} GROUP BY ALL"
    ).fetchall()
    return len(stream["t_start"]), len(counts), p[0][0]


def with_polars(path: str) -> Any:
    import polars as pl  # type: ignore[import-not-found]

    lazy = pl.scan_parquet(path)
    us = pl.col("residency") == "us"
    t = pl.col("t_start")
    stream = lazy.filter(us & (t >= FAULT_AT)).select("t_start", "ok", "latency_ms")
    rows = stream.collect(engine="streaming").height
    counts = lazy.group_by("kind", "residency").agg(pl.len()).collect(engine="streaming")
    quantiles = [
        pl.col("latency_ms").quantile(q, "linear").alias(str(q)) for q in (0.5, 0.95, 0.99)
    ]
    p = lazy.filter(us & (t >= FAULT_AT) & (t < FAULT_AT + 20)).select(quantiles)
    lazy.group_by("residency", t.floor().alias("s")).agg(
        pl.len(), pl.col("ok").sum(), pl.col("latency_ms").quantile(0.99, "linear")
    ).collect(engine="streaming")
    return rows, counts.height, p.collect(engine="streaming").row(0)


def child(engine: str, path: str) -> None:
    """Run one engine's queries; print seconds, peak RSS in MiB and the answers."""
    run = {"duckdb": with_duckdb, "pyarrow": with_pyarrow, "polars": with_polars}[engine]
    started = time.perf_counter()
    answers = run(path)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{engine}: {time.perf_counter() - started:.2f} s, {peak:.0f} MiB, {answers}")


if __name__ == "__main__":
    for name in ENGINES:
        code = f"from tests.bench.engines import child; child({name!r}, {sys.argv[1]!r})"
        done = subprocess.run(
            [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=600
        )
        print(done.stdout.strip() or f"{name}: failed: {done.stderr.strip()[-300:]}")
