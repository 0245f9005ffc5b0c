"""Measurement: `measure` on a synthetic 1 000 000-request run directory.

The run: 600 s of traffic (predict 70 %, write 20 %, canary 10 %; us and eu), a region
kill of us-east at 200 s with 30 s of us errors. Everything `gameday measure` computes
is computed (client RTO for every kind and residency, RPO read-back of ~200 000
acknowledged writes, integrity, residency) except the network: the write store is in
memory and Prometheus is not asked. Wall time is the median of 3 runs in this process;
peak memory is the `ru_maxrss` of a child process that runs it once.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tests.bench.common import BenchResult

SECTION = "Measurement"
ROWS = 1_000_000
SECONDS = 600.0
FAULT_AT = 1_700_000_200.0
TOPOLOGY = (
    "regions:\n"
    "  - {name: us-east, provider: aws, jurisdiction: us, role: primary}\n"
    "  - {name: us-west, provider: gcp, jurisdiction: us, role: replica}\n"
    "  - {name: eu-west, provider: aws, jurisdiction: eu, role: primary}\n"
    "  - {name: eu-central, provider: gcp, jurisdiction: eu, role: replica}\n"
)


class LossyStore:
    """In-memory stand-in for the primary: every write with a seq ending in 000 is lost."""

    def present(self, keys: Sequence[str]) -> set[str]:
        return {k for k in keys if not k.endswith("000")}

    def describe(self) -> dict[str, Any]:
        return {"store": "synthetic"}


def nullable(values: np.ndarray, keep: np.ndarray) -> pd.Categorical[str]:
    """`values` where `keep`, null elsewhere, as a categorical (as loadgen's strings read)."""
    return pd.Categorical(pd.Series(values).where(keep))


def make_run(path: Path, rows: int = ROWS, seed: int = 7) -> Path:
    """Write timeline.parquet, events.jsonl, load.json and a topology under `path`."""
    rng = np.random.default_rng(seed)
    t = 1_700_000_000.0 + np.sort(rng.uniform(0, SECONDS, rows))
    kind = rng.choice(np.array(["predict", "write", "canary"]), rows, p=[0.7, 0.2, 0.1])
    residency = rng.choice(np.array(["us", "eu"]), rows)
    outage = (residency == "us") & (t >= FAULT_AT) & (t < FAULT_AT + 30.0)
    ok = ~outage & (rng.random(rows) > 0.0001)
    region = np.where(residency == "us", "us-west", "eu-west")
    region = np.where(
        (residency == "us") & (t < FAULT_AT) & (rng.random(rows) < 0.5), "us-east", region
    )
    writes = kind == "write"
    # As loadgen's writers: 50 clients per residency, each numbering its writes 0, 1, 2 …
    ordinal = np.zeros(rows, dtype=np.int64)
    for name in ("us", "eu"):
        mine = writes & (residency == name)
        ordinal[mine] = np.arange(int(mine.sum()))
    seq = np.where(writes, ordinal // 50, -1)
    client = np.char.add(np.char.add(residency, "-w"), (ordinal % 50).astype(str))
    frame = pd.DataFrame(
        {
            "t_start": t,
            "latency_ms": rng.gamma(2.0, 4.0, rows),
            "kind": pd.Categorical(kind),
            "ok": ok,
            "status": np.where(ok, 200, 503).astype(np.int32),
            "error": nullable(np.full(rows, "HTTP 503"), ~ok),
            "residency": pd.Categorical(residency),
            "region": nullable(region, ok),
            "model_digest": nullable(np.full(rows, "sha256:abc"), ok & (kind != "write")),
            "score": np.where(ok & (kind != "write"), 0.5, np.nan),
            "client": nullable(client, writes),
            "seq": pd.Series(seq, dtype="Int64").where(writes),
            "expected": np.where(kind == "canary", 0.5, np.nan),
            "correct": pd.Series(ok, dtype="boolean").where((kind == "canary") & ok),
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path / "timeline.parquet")
    (path / "events.jsonl").write_text(
        json.dumps(
            {
                "type": "fault",
                "fault": "kill-region",
                "target": "us-east",
                "id": "bench",
                "applied_at": FAULT_AT,
                "details": {"jurisdiction": "us"},
            }
        )
        + "\n"
    )
    (path / "load.json").write_text('{"saturated": false}')
    (path / "topology.yaml").write_text(TOPOLOGY)
    return path


def measure_once(run: Path) -> dict[str, Any]:
    from probes.measure import Options, measure_run

    options = Options(topology_path=run / "topology.yaml")
    return measure_run(run, options, write_stores={"us": LossyStore(), "eu": LossyStore()})


def child(run: str) -> None:
    """Entry point of the memory child: measure once, print ru_maxrss in KiB."""
    doc = measure_once(Path(run))
    assert doc["rpo"][0]["status"] == "ok"
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def run() -> list[BenchResult]:
    with tempfile.TemporaryDirectory(prefix="bench-probes-") as tmp:
        run_dir = make_run(Path(tmp) / "run")
        timings = []
        doc: dict[str, Any] = {}
        for _ in range(3):
            started = time.perf_counter()
            doc = measure_once(run_dir)
            timings.append(time.perf_counter() - started)
        rto = next(e for e in doc["rto"] if e["kind"] == "all" and e["residency"] == "us")
        assert rto["status"] == "ok" and rto["recovered"], rto
        code = f"from tests.bench.bench_probes import child; child({str(run_dir)!r})"
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
        )
        peak_mib = int(done.stdout.strip().splitlines()[-1]) / 1024
    how = (
        f"measure_run on {ROWS:,} synthetic requests (3 kinds, 2 residencies, 1 fault), "
        "write store in memory, no Prometheus"
    )
    return [
        BenchResult.of(SECTION, "measure, 1M-request timeline", timings, "s", how, "< 5 s", 5.0),
        BenchResult.of(
            SECTION,
            "measure, peak memory (RSS)",
            [peak_mib],
            "MiB",
            "ru_maxrss of a child process running the same measure_run once",
            "< 1024 MiB",
            1024.0,
        ),
    ]
