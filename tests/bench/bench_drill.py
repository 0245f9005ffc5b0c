"""`make drill` on a warm machine, by phase, and the reference platform's RTO/RPO over
repeated region kills."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.common import BenchResult
from tests.conftest import NO_HOST_PORTS

SECTION = "Drill"
REPO = Path(__file__).resolve().parents[2]
REPEATS = 5


def _run(home: Path, *args: str) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", "region-kill", "--json", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
        env={**os.environ, "GAMEDAY_HOME": str(home)},
    )
    wall = time.monotonic() - started
    if not done.stdout.strip():
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout), wall


Figures = tuple[float | None, float | None, float | None, dict[str, Any]]


def _figures(run_dir: Path) -> Figures:
    """Client RTO, Prometheus RTO, RPO of the US, and the Prometheus entry itself."""
    doc = json.loads((run_dir / "measurements.json").read_text())
    rto = next(
        (e["rto_seconds"] for e in doc["rto"] if e["kind"] == "all" and e["residency"] == "us"),
        None,
    )
    entry: dict[str, Any] = next((e for e in doc["rto_prometheus"] if e["residency"] == "us"), {})
    rpo = next((e["rpo_seconds"] for e in doc["rpo"] if e["residency"] == "us"), None)
    return rto, entry.get("rto_seconds"), rpo, entry


def run() -> list[BenchResult]:
    results: list[BenchResult] = []
    with tempfile.TemporaryDirectory(prefix="gd-bench-drill-") as tmp:
        home = Path(tmp)
        single, wall = _run(home)
        phases = single["phases_seconds"]
        results.append(
            BenchResult.of(
                SECTION,
                "`make drill` (gameday run region-kill), warm machine",
                [wall],
                "s",
                "wall time of one `gameday run region-kill` (the venv and packages installed); "
                "phases: "
                + ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
                + "; the drill phase holds a 15 s baseline and a 40 s observation window",
                "< 3 min",
                180.0,
            )
        )
        # Repeated kills on one world: the primary moves back and forth between regions.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "experiments.cli",
                "testbed",
                "up",
                *NO_HOST_PORTS,
            ],
            capture_output=True,
            cwd=REPO,
            check=True,
            env={**os.environ, "GAMEDAY_HOME": str(home)},
        )
        try:
            repeated, _ = _run(home, "--repeat", str(REPEATS), "--reuse-testbed")
        finally:
            subprocess.run(
                [sys.executable, "-m", "experiments.cli", "testbed", "down"],
                capture_output=True,
                cwd=REPO,
                check=False,
                env={**os.environ, "GAMEDAY_HOME": str(home)},
            )
        figures = [_figures(Path(d)) for d in repeated["run_dirs"]]
    rtos = [f[0] for f in figures if f[0] is not None]
    proms = [f[1] for f in figures if f[1] is not None]
    rpos = [f[2] for f in figures if f[2] is not None]
    differences = [f[3].get("difference_seconds") for f in figures]
    bounds = [f[3].get("mismatch_bound_seconds") for f in figures]
    mismatches = sum(f[3].get("instrumentation_mismatch") is True for f in figures)
    agreement = (
        "; Prometheus minus client per kill: "
        + ", ".join("n/a" if d is None else f"{d:.2f}" for d in differences)
        + " s against bounds of "
        + ", ".join("n/a" if b is None else f"{b:.2f}" for b in bounds)
        + f" s (2 s + completion lag); {mismatches} flagged as a mismatch"
    )
    how = (
        f"{REPEATS} region kills of the current US primary under 24 users, one world "
        f"(`gameday run region-kill --repeat {REPEATS} --reuse-testbed`)"
    )
    results += [
        BenchResult.of(
            SECTION,
            "client-side RTO, US, all traffic (median)",
            rtos,
            "s",
            how + f"; max {max(rtos):.2f} s",
            "< 60 s",
            60.0,
        ),
        BenchResult.of(
            SECTION,
            "Prometheus-side RTO, US router (median)",
            proms,
            "s",
            how + f"; max {max(proms):.2f} s" + agreement,
            "agrees within 2 s + completion lag",
        ),
        BenchResult.of(
            SECTION,
            "RPO, US, from the write ledger (median)",
            rpos,
            "s",
            how + f"; max {max(rpos):.2f} s",
            "< 300 s",
            300.0,
        ),
    ]
    return results
