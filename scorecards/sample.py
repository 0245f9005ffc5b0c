"""A synthetic run directory: for the docs, the tests and the benchmark.

`write_sample_run` lays out what a region-kill drill leaves behind (measurements.json,
load.json, events.jsonl, timeline.parquet, world.json), with figures chosen by the
caller and a timeline consistent with them. It is deterministic for a given `seed`.
Nothing here is measured: it is constructed data, and says so in `run.note`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REGIONS = {"us": ("us-east", "us-west"), "eu": ("eu-west", "eu-central")}
T0 = 1_795_000_000.0

# The platform targets as a gates document: the base the tests and examples start from.
TARGET_GATES = """
version: 1
gates:
  rto_seconds: {less_than: 60}
  relapses: {at_most: 0}
  rpo_seconds: {less_than: 300}
  lost_after_fault: {at_most: 0}
  residency_violations: {at_most: 0}
  wrong_answers: {at_most: 0}
  error_budget: {at_most: 0.2}
  p99_latency_ms: {at_most: 2000}
  time_to_detect_seconds: {at_most: 30, enabled: false}
"""


def sample_measurements(
    fault_at: float,
    rto_us: float | None = 14.2,
    rto_eu: float = 0.0,
    rpo_us: float = 1.8,
    lost_us: int = 3,
    lost_after_fault: int = 0,
    residency_violations: int = 0,
    wrong_answers: int = 0,
    failed_us: int = 1_200,
    requests_us: int = 12_000,
    p99_ms: float = 850.0,
    mismatch: bool = False,
    time_to_detect: float | None = None,
    experiment: str = "region-kill",
) -> dict[str, Any]:
    """A measurements.json document (version 1) with the given figures."""

    def rto_entry(
        kind: str, residency: str, rto: float | None, failed: int, requests: int, p99: float
    ) -> dict[str, Any]:
        impact = rto is None or rto > 0
        return {
            "kind": kind,
            "residency": residency,
            "status": "ok",
            "impact": impact,
            "recovered": rto is not None,
            "rto_seconds": rto,
            "fault_at": fault_at,
            "recovered_at": None if rto is None else fault_at + rto,
            "uncertainty_seconds": 0.05,
            "failed": failed,
            "failed_after_fault": failed,
            "relapses": None if rto is None else [],
            "requests": requests,
            "p99_latency_ms_during_fault": p99,
            "brownout_seconds": 0.0 if rto is None else round(rto * 0.2, 2),
            "inputs": {"window_seconds": 1.0, "success_threshold": 0.99, "stability_seconds": 10},
        }

    lost_writes = [
        {
            "t_ack": fault_at - rpo_us + i * rpo_us / max(lost_us - 1, 1),
            "client": "w1",
            "seq": 1000 + i,
        }
        for i in range(lost_us)
    ]
    return {
        "version": 1,
        "run": {
            "experiment": experiment,
            "started_at": fault_at - 60.0,
            "note": "constructed data (scorecards.sample)",
        },
        "rto": [
            rto_entry("predict", "us", rto_us, failed_us, requests_us, p99_ms),
            rto_entry("write", "us", rto_us, failed_us // 4, requests_us // 4, p99_ms),
            rto_entry("predict", "eu", rto_eu, 0, requests_us, 40.0),
        ],
        "rto_prometheus": [
            {
                "residency": "us",
                "status": "ok",
                "rto_seconds": None if rto_us is None else rto_us + (30.0 if mismatch else 1.0),
                "client_rto_seconds": rto_us,
                "mismatch_bound_seconds": 2.5,
                "mismatch": mismatch,
            },
            {"residency": "eu", "status": "ok", "rto_seconds": 0.0, "mismatch": False},
        ],
        "rpo": [
            {
                "residency": "us",
                "status": "ok",
                "rpo_seconds": rpo_us if lost_us else 0.0,
                "acknowledged": 3_000,
                "lost": lost_us,
                "lost_after_fault": lost_after_fault,
                "ambiguous": 2,
                "lost_writes": lost_writes,
            },
            {
                "residency": "eu",
                "status": "ok",
                "rpo_seconds": 0.0,
                "acknowledged": 3_000,
                "lost": 0,
                "lost_after_fault": 0,
                "ambiguous": 0,
                "lost_writes": [],
            },
        ],
        "integrity": [
            {
                "status": "ok",
                "wrong_answers": wrong_answers,
                "time_to_detect_seconds": time_to_detect,
                "region": "us-west",
            },
        ],
        "residency": [
            {
                "status": "ok",
                "residency": "us",
                "violations": residency_violations,
                "requests": requests_us,
            },
            {"status": "ok", "residency": "eu", "violations": 0, "requests": requests_us},
        ],
    }


def sample_timeline(
    requests: int,
    fault_at: float,
    rto_us: float | None,
    seed: int = 7,
    duration: float = 180.0,
    lead: float = 60.0,
) -> pd.DataFrame:
    """A request timeline consistent with an outage of `rto_us` seconds for `us`."""
    rng = np.random.default_rng(seed)
    start = fault_at - lead
    t = np.sort(rng.uniform(start, start + duration, requests))
    residency = np.where(rng.random(requests) < 0.5, "us", "eu")
    kind = rng.choice(np.array(["predict", "write", "canary"]), requests, p=[0.75, 0.2, 0.05])
    latency = rng.lognormal(np.log(18.0), 0.35, requests)
    end = fault_at + (rto_us if rto_us is not None else duration)
    outage = (residency == "us") & (t >= fault_at) & (t < end)
    ok = ~outage | (rng.random(requests) < 0.02)
    latency = np.where(outage, rng.uniform(300.0, 2000.0, requests), latency)
    primary = np.where(residency == "us", REGIONS["us"][0], REGIONS["eu"][0])
    region = np.where((residency == "us") & (t >= end), REGIONS["us"][1], primary)
    region_col = pd.Series(region, dtype="string").where(ok)
    return pd.DataFrame(
        {
            "t_start": t,
            "latency_ms": latency,
            "kind": kind,
            "ok": ok,
            "status": np.where(ok, 200, np.where(rng.random(requests) < 0.5, 503, 0)),
            "residency": residency,
            "region": region_col,
        }
    )


def write_sample_run(
    path: Path,
    requests: int = 20_000,
    saturated: bool = False,
    timeline: bool = True,
    seed: int = 7,
    **figures: Any,
) -> Path:
    """Write a complete synthetic run directory at `path`; `figures` go to the measurements."""
    path.mkdir(parents=True, exist_ok=True)
    fault_at = T0 + 60.0
    measurements = sample_measurements(fault_at, **figures)
    (path / "measurements.json").write_text(json.dumps(measurements, indent=2) + "\n")
    load = {
        "saturated": saturated,
        "cpu_max_percent": 97.0 if saturated else 41.5,
        "requests": requests,
    }
    (path / "load.json").write_text(json.dumps(load, indent=2) + "\n")
    events = [
        {
            "type": "fault",
            "fault": "kill-region",
            "target": "us-east",
            "applied_at": fault_at,
            "reverted_at": None,
            "id": "f1",
        },
        {
            "type": "revert",
            "fault": "kill-region",
            "target": "us-east",
            "reverted_at": fault_at + 90.0,
            "id": "f1",
        },
    ]
    (path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    world = {
        "experiment": measurements["run"]["experiment"],
        "regions": [
            {"name": name, "jurisdiction": j} for j, names in REGIONS.items() for name in names
        ],
    }
    (path / "world.json").write_text(json.dumps(world, indent=2) + "\n")
    if timeline:
        rto = measurements["rto"][0]["rto_seconds"]
        sample_timeline(requests, fault_at, rto, seed).to_parquet(
            path / "timeline.parquet", index=False
        )
    return path


def edit_measurements(run_dir: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """Apply `change` to a run directory's measurements.json in place (for tests)."""
    path = run_dir / "measurements.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document, indent=2) + "\n")
    return run_dir
