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

from probes.models import write_measurements

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


def _fault(fault_at: float) -> dict[str, Any]:
    return {
        "fault_id": "f1",
        "fault": "kill-region",
        "target": "us-east",
        "fault_at": fault_at,
        "reverted_at": fault_at + 90.0,
    }


def _rto_entry(
    fault_at: float,
    kind: str,
    residency: str,
    rto: float | None,
    failed: int,
    requests: int,
    p99: float,
) -> dict[str, Any]:
    """An RTO entry shaped as probes.rto writes it (keys and nesting)."""
    impact = rto is None or rto > 0
    until = fault_at + 120.0
    return {
        "kind": kind,
        "residency": residency,
        **_fault(fault_at),
        "status": "ok",
        "reason": None,
        "impact": impact,
        "recovered": rto is not None,
        "rto_seconds": rto,
        "recovered_at": None if rto is None else fault_at + rto,
        "uncertainty_seconds": 0.05,
        "observed_until": until,
        "inputs": {
            "window_seconds": 1.0,
            "threshold": 0.99,
            "stability_seconds": 10.0,
            "min_requests": 5,
            "requests": requests,
        },
        "requests_after_fault": requests,
        "requests": requests,
        "impact_onset_at": fault_at if impact else None,
        "last_failure_at": None if not impact or rto is None else fault_at + rto - 0.1,
        "last_failure_completed_at": None if not impact or rto is None else fault_at + rto,
        "failed": failed,
        "failed_after_fault": failed,
        "failed_after_recovery": 0 if rto is not None else None,
        "relapses": None if rto is None else [],
        "unobserved_seconds": 0.0,
        "brownout_seconds": 0.0 if rto is None else round(rto * 0.2, 2),
        "unhealthy_windows": {"below_threshold": failed, "too_few_requests": 0},
        "p99_latency_ms_during_fault": p99,
        "latency_ms": {
            "p50": p99 / 4,
            "p95": p99 / 2,
            "p99": p99,
            "requests": requests,
            "from": fault_at,
            "until": until,
        },
    }


def _rpo_entry(
    fault_at: float,
    residency: str,
    rpo: float,
    lost: int,
    lost_after_fault: int,
    ambiguous: int,
    lag: float,
) -> dict[str, Any]:
    """An RPO entry shaped as probes.rpo writes it."""
    lost_writes = [
        {"key": f"ev:w1:{1000 + i}", "t_ack": fault_at - rpo + i * rpo / max(lost - 1, 1)}
        for i in range(lost)
    ]
    return {
        "residency": residency,
        **_fault(fault_at),
        "status": "ok",
        "reason": None,
        "rpo_seconds": rpo if lost else 0.0,
        "writes": 3_010,
        "acknowledged": 3_000,
        "acknowledged_after_fault": 1_500,
        "present": 3_000 - lost,
        "lost": lost,
        "lost_after_fault": lost_after_fault,
        "lost_after_fault_reason": None,
        "lost_ack_time_unknown": 0,
        "ambiguous": ambiguous,
        "failed_writes_checked": 10,
        "sequence_holes": 0,
        "unrecorded_present": 0,
        "unaccounted": 0,
        "unaccounted_keys": [],
        "residency_from_client": 0,
        "first_lost_ack_at": lost_writes[0]["t_ack"] if lost_writes else None,
        "last_lost_ack_at": lost_writes[-1]["t_ack"] if lost_writes else None,
        "lost_writes": lost_writes,
        "lost_writes_truncated": False,
        "store": {"store": "redis via sentinel", "group": residency, "primary": "10.200.0.12:6379"},
        "replication_lag_estimate": {
            "status": "ok",
            "reason": None,
            "lag_seconds": lag,
            "query": "max by (jurisdiction) (max_over_time(gameday_replication_lag_seconds[5s]))",
            "at": fault_at,
        },
    }


def _wrong_answers_entry(residency: str, wrong: int) -> dict[str, Any]:
    """A `wrong-answers` integrity entry shaped as probes.integrity writes it."""
    return {
        "check": "wrong-answers",
        "residency": residency,
        "digest_source": "deployed",
        "expected_digest": "9f2c" * 16,
        "since": None,
        "canaries_checked": 600,
        "answers_with_digest": 9_000,
        "status": "ok",
        "reason": None,
        "wrong_answers": wrong,
        "canary_mismatches": 0,
        "unexpected_digests": wrong,
        "first_wrong_at": None,
        "last_wrong_at": None,
        "by_region": {REGIONS[residency][1]: wrong} if wrong else {},
    }


def _detection_entry(fault_at: float, seconds: float | None) -> dict[str, Any]:
    """A `time-to-detect` integrity entry shaped as probes.integrity writes it."""
    detected = seconds is not None
    return {
        "check": "time-to-detect",
        "region": "us-west",
        "jurisdiction": "us",
        **_fault(fault_at),
        "observed_until": fault_at + 90.0,
        "inputs": {"settle_seconds": 5.0},
        "detected": detected,
        "time_to_detect_seconds": seconds,
        "served_before_fault": 2_000,
        "requests_after_fault": 6_000,
        "status": "ok",
        "reason": None,
        "served_after_fault": 40 if detected else 3_000,
        "last_served_at": fault_at + (89.0 if seconds is None else seconds),
    }


def _residency_entry(residency: str, violations: int, answered: int) -> dict[str, Any]:
    """A residency entry shaped as probes.residency writes it."""
    regions = {name: j for j, names in REGIONS.items() for name in names}
    home = REGIONS[residency][0]
    other = next(n for j, names in REGIONS.items() if j != residency for n in names)
    return {
        "residency": residency,
        "inputs": {"regions": regions},
        "status": "ok",
        "reason": None,
        "answered": answered,
        "violations": violations,
        "violations_by_region": {other: violations} if violations else {},
        "served_by_region": {
            home: answered - violations,
            **({other: violations} if violations else {}),
        },
    }


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
    lag_us: float = 0.4,
) -> dict[str, Any]:
    """A measurements.json document (version 1) with the given figures, every entry in
    the shape the probes write (tests/unit/test_contract.py holds them to it)."""
    prom_us = None if rto_us is None else rto_us + (30.0 if mismatch else 1.0)
    return {
        "version": 1,
        "run": {
            "experiment": experiment,
            "started_at": fault_at - 60.0,
            "note": "constructed data (scorecards.sample)",
        },
        "rto": [
            _rto_entry(fault_at, "predict", "us", rto_us, failed_us, requests_us, p99_ms),
            _rto_entry(fault_at, "write", "us", rto_us, failed_us // 4, requests_us // 4, p99_ms),
            _rto_entry(fault_at, "predict", "eu", rto_eu, 0, requests_us, 40.0),
        ],
        "rto_prometheus": [
            {
                "jurisdiction": "us",
                "residency": "us",
                **_fault(fault_at),
                "status": "ok",
                "reason": None,
                "rto_seconds": prom_us,
                "client_rto_seconds": rto_us,
                "difference_seconds": None
                if prom_us is None or rto_us is None
                else prom_us - rto_us,
                "mismatch_bound_seconds": 2.5,
                "completion_lag_seconds": 0.5,
                "instrumentation_mismatch": mismatch,
            },
            {
                "jurisdiction": "eu",
                "residency": "eu",
                **_fault(fault_at),
                "status": "ok",
                "reason": None,
                "rto_seconds": 0.0,
                "client_rto_seconds": 0.0,
                "difference_seconds": 0.0,
                "mismatch_bound_seconds": 2.0,
                "completion_lag_seconds": 0.0,
                "instrumentation_mismatch": False,
            },
        ],
        "rpo": [
            _rpo_entry(fault_at, "us", rpo_us, lost_us, lost_after_fault, 2, lag_us),
            _rpo_entry(fault_at, "eu", 0.0, 0, 0, 0, 0.05),
        ],
        "integrity": [
            _wrong_answers_entry("us", wrong_answers),
            _wrong_answers_entry("eu", 0),
            _detection_entry(fault_at, time_to_detect),
        ],
        "residency": [
            _residency_entry("us", residency_violations, requests_us),
            _residency_entry("eu", 0, requests_us),
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
    write_measurements(path, measurements)
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
