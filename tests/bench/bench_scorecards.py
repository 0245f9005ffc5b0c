"""Scorecards: scoring and rendering a run with a 1,000,000-request timeline.

The run directory is synthetic (`scorecards.sample`: measurements.json built by hand,
a region-kill timeline consistent with it). Timed: load the run, evaluate the gates,
draw the charts from the timeline, write scorecard.json/.md/.html, junit.xml and
manifest.json (SHA-256 of every file, the timeline included). History is off.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from scorecards.gates import load_gates
from scorecards.sample import write_sample_run
from scorecards.scoring import score
from tests.bench.common import BenchResult

REPO = Path(__file__).resolve().parents[2]
REQUESTS = 1_000_000
RUNS = 3
LIMIT_S = 10.0


def run() -> list[BenchResult]:
    gates = load_gates(REPO / "experiments" / "gates.yaml")
    base = Path(tempfile.mkdtemp(prefix="gd-bench-scorecards-"))
    try:
        run_dir = write_sample_run(base / "run", requests=REQUESTS, lost_after_fault=1)
        size_mb = (run_dir / "timeline.parquet").stat().st_size / 2**20
        samples = []
        for _ in range(RUNS):
            started = time.perf_counter()
            outcome = score([run_dir], gates, clock=lambda: 1_795_000_500.0)
            samples.append(time.perf_counter() - started)
            assert outcome.runs[0].card.charts, "the charts were not drawn"
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return [
        BenchResult.of(
            "Scorecards",
            "score and render a 1,000,000-request run",
            samples,
            "s",
            f"scorecards.scoring.score on a synthetic region-kill run ({REQUESTS:,} requests, "
            f"timeline.parquet {size_mb:.0f} MiB): gates, 3 PNG charts, JSON/Markdown/HTML/"
            f"JUnit, manifest; median of {RUNS}",
            target=f"< {LIMIT_S:g} s",
            limit=LIMIT_S,
        )
    ]
