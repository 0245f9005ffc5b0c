"""Soak scale: `measure` and `scorecard` on synthetic 1 M, 10 M and 36 M-request runs, and
the recorder's final `merge` of an hour of batch files.

The run: 10 000 requests/s (predict 70 %, write 20 %, canary 10 %; us and eu) for as
long as the row count needs (36 M rows: one hour), a region kill of us-east 300 s in
with 20 s of us errors. The timeline is generated and written one row group at a time
(never whole in memory), in the recorder's row-group size. Each stage runs `RUNS`
times, each in a fresh child process: wall time, rows/s and `ru_maxrss` (peak RSS),
medians quoted.

The merge: the same soak written as a recorder writes it (`MERGE_WORKERS` workers, each
one batch file per second, rows in completion order), compacted by `loadgen.timeline.merge`
in a child process; at `MERGE_SIDE_BY_SIDE` rows also by the in-memory merge it replaced,
side by side (at 36 M rows that one would need about 10 GiB).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tests.bench.bench_probes import TOPOLOGY, LossyStore
from tests.bench.common import BenchResult

SECTION = "Soak scale"
RATE = 10_000.0
T0 = 1_700_000_000.0
FAULT_AFTER = 300.0
OUTAGE = 20.0
#: 36 M rows is one hour at 10 000 requests/s (the goal: each stage under 60 s); 100 M,
#: about three hours, shows memory staying flat.
SIZES = (1_000_000, 10_000_000, 36_000_000, 100_000_000)
GOAL_ROWS = 36_000_000
RUNS = 3
LIMIT_SECONDS = 60.0
LIMIT_MIB = 2048.0
#: The merge of an hour at 10 000 requests/s: 3 workers, 10 800 one-second batches.
MERGE_ROWS = 36_000_000
MERGE_SIDE_BY_SIDE = 5_000_000
MERGE_WORKERS = 3
MERGE_RUNS = 3


def _chunk(rng: np.random.Generator, start: int, rows: int) -> pa.Table:
    """Rows `start … start + rows` of the soak, in time order (evenly spaced plus jitter)."""
    from infra.types import timeline_schema

    idx = np.arange(start, start + rows, dtype=np.float64)
    t = T0 + idx / RATE
    kind = rng.choice(np.array(["predict", "write", "canary"]), rows, p=[0.7, 0.2, 0.1])
    residency = np.where(rng.random(rows) < 0.5, "us", "eu")
    fault_at = T0 + FAULT_AFTER
    us = residency == "us"
    outage = us & (t >= fault_at) & (t < fault_at + OUTAGE)
    ok = ~outage & (rng.random(rows) > 0.0001)
    region = np.where(us, "us-west", "eu-west")
    region = np.where(us & (t < fault_at) & (rng.random(rows) < 0.5), "us-east", region)
    writes = kind == "write"
    seq = (idx.astype(np.int64) // 100).astype(np.int64)
    client = np.char.add(residency, np.where(idx.astype(np.int64) % 2 == 0, "-w0", "-w1"))
    answered = ok & ~writes
    arrays = {
        "t_start": pa.array(t),
        "latency_ms": pa.array(rng.gamma(2.0, 4.0, rows)),
        "kind": pa.array(kind),
        "ok": pa.array(ok),
        "status": pa.array(np.where(ok, 200, 503).astype(np.int32)),
        "error": pa.array(np.full(rows, "HTTP 503"), mask=ok),
        "residency": pa.array(residency),
        "region": pa.array(region, mask=~ok),
        "model_digest": pa.array(np.full(rows, "sha256:abc"), mask=~answered),
        "score": pa.array(np.full(rows, 0.5), mask=~answered),
        "client": pa.array(client, mask=~writes),
        "seq": pa.array(seq, mask=~writes),
        "expected": pa.array(np.full(rows, 0.5), mask=kind != "canary"),
        "correct": pa.array(ok, mask=~((kind == "canary") & ok)),
    }
    schema = timeline_schema()
    return pa.Table.from_arrays([arrays[f.name] for f in schema], schema=schema)


def make_soak(path: Path, rows: int, seed: int = 11) -> Path:
    """Write a soak run directory of `rows` requests under `path`, one row group at a time."""
    from infra.types import timeline_schema
    from loadgen.timeline import ROW_GROUP_ROWS

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path / "timeline.parquet", timeline_schema()) as writer:
        for start in range(0, rows, ROW_GROUP_ROWS):
            writer.write_table(_chunk(rng, start, min(ROW_GROUP_ROWS, rows - start)))
    fault = {
        "type": "fault",
        "fault": "kill-region",
        "target": "us-east",
        "id": "soak",
        "applied_at": T0 + FAULT_AFTER,
        "details": {"jurisdiction": "us"},
    }
    (path / "events.jsonl").write_text(json.dumps(fault) + "\n")
    (path / "load.json").write_text('{"saturated": false}')
    (path / "topology.yaml").write_text(TOPOLOGY)
    return path


def make_batches(path: Path, rows: int, workers: int = MERGE_WORKERS, seed: int = 7) -> int:
    """Write `rows` requests of the soak under `path` as a recorder's batch files: each
    of `workers` workers one file per second (`path/w<n>/seg-<second>.parquet`), its rows
    in the order the requests ended, so a file is not sorted by `t_start` and the
    workers' files overlap in time. Returns the number of files."""
    rng = np.random.default_rng(seed)
    per_second = int(RATE)
    files = 0
    for w in range(workers):
        (path / f"w{w}").mkdir(parents=True, exist_ok=True)
    for second, start in enumerate(range(0, rows, per_second), start=1):
        chunk = _chunk(rng, start, min(per_second, rows - start))
        ended = pc.add(chunk.column("t_start"), pc.divide(chunk.column("latency_ms"), 1000.0))
        chunk = chunk.take(pc.sort_indices(ended))
        worker = np.arange(chunk.num_rows) % workers
        for w in range(workers):
            part = chunk.filter(pa.array(worker == w))
            pq.write_table(part, path / f"w{w}" / f"seg-{second:07d}.parquet")
            files += 1
    return files


def merge_in_memory(out: Path, sources: list[Path]) -> int:
    """The merge as it was before it was bounded (for the side-by-side figure): every
    batch read whole, concatenated, sorted (stable) and written at once."""
    from loadgen.timeline import ROW_GROUP_ROWS, SCHEMA

    files = sorted(p for s in sources for p in s.rglob("*.parquet"))
    tables = [pq.read_table(f).select(SCHEMA.names).cast(SCHEMA) for f in files]
    table = pa.concat_tables(tables).sort_by([("t_start", "ascending")])
    pq.write_table(table, out, row_group_size=ROW_GROUP_ROWS)
    return int(table.num_rows)


def child(stage: str, run: str) -> None:
    """Entry point of a measuring child: run `stage` once, print seconds and ru_maxrss (KiB)."""
    started = time.perf_counter()
    if stage == "merge":
        from loadgen.timeline import merge

        merge(Path(run) / "timeline.parquet", [Path(run) / "parts"])
    elif stage == "merge-in-memory":
        merge_in_memory(Path(run) / "timeline.parquet", [Path(run) / "parts"])
    elif stage == "measure":
        from probes.measure import Options, measure_run
        from probes.models import write_measurements

        options = Options(topology_path=Path(run) / "topology.yaml")
        doc = measure_run(Path(run), options, write_stores={"us": LossyStore(), "eu": LossyStore()})
        write_measurements(Path(run), doc)
    else:
        from experiments.cmd_scorecard import DEFAULT_GATES
        from scorecards.gates import load_gates
        from scorecards.scoring import score

        score([Path(run)], load_gates(DEFAULT_GATES), history=None)
    elapsed = time.perf_counter() - started
    print(f"{elapsed} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")


def _child(stage: str, run: Path) -> tuple[float, float]:
    code = f"from tests.bench.bench_soak import child; child({stage!r}, {str(run)!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=900
    )
    if done.returncode:
        raise RuntimeError(f"{stage} on {run} failed: {done.stderr[-2000:]}")
    seconds, kib = done.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(kib) / 1024


def run_merge(rows: int = MERGE_ROWS, side_by_side: int = MERGE_SIDE_BY_SIDE) -> list[BenchResult]:
    """The merge figures: the bounded merge at `rows`, both merges at `side_by_side`."""
    out: list[BenchResult] = []
    for size in sorted({side_by_side, rows}):
        with tempfile.TemporaryDirectory(
            prefix="bench-merge-", dir=os.environ.get("TMPDIR")
        ) as tmp:
            run_dir = Path(tmp)
            files = make_batches(run_dir / "parts", size)
            label = f"{size // 1_000_000}M"
            stages = ["merge"] + (["merge-in-memory"] if size == side_by_side else [])
            for stage in stages:
                runs = []
                for _ in range(MERGE_RUNS):
                    runs.append(_child(stage, run_dir))
                    (run_dir / "timeline.parquet").unlink()
                took = [t for t, _ in runs]
                name = "merge" if stage == "merge" else "merge in memory (before)"
                how = (
                    f"{stage} of {size:,} rows in {files:,} batch files ({MERGE_WORKERS} "
                    f"workers, one file a second each) in a child process, {MERGE_RUNS} runs"
                )
                out.append(
                    BenchResult.of(SECTION, f"{name}, {label} rows, wall time", took, "s", how)
                )
                out.append(
                    BenchResult.of(
                        SECTION,
                        f"{name}, {label} rows, peak RSS",
                        [mib for _, mib in runs],
                        "MiB",
                        "ru_maxrss of each of those children",
                        "<= 2048 MiB" if stage == "merge" else "",
                        LIMIT_MIB if stage == "merge" else None,
                    )
                )
    return out


def run(sizes: tuple[int, ...] = SIZES) -> list[BenchResult]:
    out: list[BenchResult] = run_merge()
    for rows in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-soak-", dir=os.environ.get("TMPDIR")) as tmp:
            run_dir = make_soak(Path(tmp) / "run", rows)
            label = f"{rows // 1_000_000}M"
            for stage in ("measure", "scorecard"):
                runs = [_child(stage, run_dir) for _ in range(RUNS)]
                took = [t for t, _ in runs]
                how = f"{stage} of a {rows:,}-request soak in a child process, {RUNS} runs"
                timed = rows == GOAL_ROWS
                out.append(
                    BenchResult.of(
                        SECTION,
                        f"{stage}, {label} rows, wall time",
                        took,
                        "s",
                        how,
                        f"< {LIMIT_SECONDS:g} s" if timed else "",
                        LIMIT_SECONDS if timed else None,
                    )
                )
                out.append(
                    BenchResult.of(
                        SECTION,
                        f"{stage}, {label} rows, rate",
                        [rows / t for t in took],
                        "rows/s",
                        how,
                        lower_is_better=False,
                    )
                )
                out.append(
                    BenchResult.of(
                        SECTION,
                        f"{stage}, {label} rows, peak RSS",
                        [mib for _, mib in runs],
                        "MiB",
                        "ru_maxrss of each of those children",
                        "<= 2048 MiB",
                        LIMIT_MIB,
                    )
                )
    return out


if __name__ == "__main__":
    # `python -m tests.bench.bench_soak [ROWS…]`, or `merge [ROWS [SIDE_BY_SIDE_ROWS]]`
    if sys.argv[1:2] == ["merge"]:
        figures = run_merge(*(int(a) for a in sys.argv[2:4]))
    else:
        figures = run(tuple(int(a) for a in sys.argv[1:]) or SIZES)
    for r in figures:
        print(f"{r.name}: {r.value:.4g} {r.unit} ({r.how})", flush=True)
