"""Steady-state probes for Chaos Toolkit hypotheses: live SLOs and the drill's measured figures.

Both kinds hold before the fault and must still hold after it, so one steady-state
hypothesis serves as the "before" (the platform meets its SLOs) and the "after" (the
platform recovered, and the drill's measured RTO, RPO, integrity and residency are
within the tolerances written in the experiment, taken from the gates).

Configuration keys read: `gameday_router_url` (the router, e.g.
`http://10.200.0.2:8080` inside the local world) and `gameday_run_dir` (the run
directory where the drill's `events.jsonl` and `measurements.json` live).
"""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from infra.types import read_event_log

__all__ = ["measured", "router_success_ratio"]

NOT_MEASURED = -1.0
_METRICS = (
    "rto_seconds",
    "rpo_seconds",
    "lost_after_fault",
    "wrong_answers",
    "residency_violations",
)


def router_success_ratio(
    residency: str,
    requests: int = 20,
    entities: int = 10_000,
    timeout_s: float = 1.0,
    *,
    configuration: dict[str, Any] | None = None,
) -> float:
    """Share (0..1) of `requests` predictions for `residency` that the router answers 2xx.

    Read-only: predictions do not change the platform. Entities are drawn at random from
    `<residency>-0 … <residency>-(entities-1)`; each request has its own timeout, so the
    probe takes at most `requests * timeout_s` seconds. Use with a `range` tolerance such
    as `[0.99, 1.0]`.
    """
    if requests < 1:
        raise ValueError(f"requests {requests} must be at least 1")
    url = str((configuration or {}).get("gameday_router_url") or "").rstrip("/")
    if not url:
        raise ValueError("configuration gameday_router_url is required")
    ok = 0
    rng = random.Random()
    for _ in range(requests):
        body = json.dumps({"entity_id": f"{residency}-{rng.randrange(entities)}"}).encode()
        request = urllib.request.Request(
            url + "/v1/predict",
            data=body,
            method="POST",
            headers={"X-Residency": residency, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                ok += 200 <= response.status < 300
        except (urllib.error.URLError, OSError):
            continue
    return ok / requests


def _faults_applied(run_dir: Path) -> bool:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return False
    return any(r.type == "fault" for r in read_event_log(path).records)


def _worst(entries: list[dict[str, Any]], field: str, *, kind: str | None = None) -> float:
    values: list[float] = []
    for entry in entries:
        if kind is not None and entry.get("kind") != kind:
            continue
        if entry.get("status") != "ok":
            return NOT_MEASURED
        if field == "rto_seconds" and entry.get("recovered") is False:
            return NOT_MEASURED
        value = entry.get(field)
        if value is None:
            return NOT_MEASURED
        values.append(float(value))
    return max(values) if values else NOT_MEASURED


def measured(
    metric: str,
    run_dir: str = "",
    *,
    configuration: dict[str, Any] | None = None,
) -> float:
    """The drill's worst measured value of `metric`, from `measurements.json`.

    `metric` is one of `rto_seconds` (client side, all traffic, worst jurisdiction),
    `rpo_seconds`, `lost_after_fault`, `wrong_answers`, `residency_violations`.
    Returns 0 while no fault has been applied in this run (nothing to recover from:
    the "before" check), the figure once the drill has been measured, and -1 when a
    fault was applied but the figure is missing, not `ok`, or never recovered, so a
    `range` tolerance such as `[0, 60]` fails: missing data is never a pass.
    `run_dir` defaults to the configuration's `gameday_run_dir`.
    """
    if metric not in _METRICS:
        raise ValueError(f"metric {metric!r} must be one of {', '.join(_METRICS)}")
    directory = Path(run_dir or str((configuration or {}).get("gameday_run_dir") or ""))
    if not str(directory) or not directory.is_dir():
        raise ValueError(f"run directory {str(directory)!r} not found (gameday_run_dir)")
    if not _faults_applied(directory):
        return 0.0
    path = directory / "measurements.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return NOT_MEASURED
    if metric == "rto_seconds":
        return _worst(doc.get("rto", []), "rto_seconds", kind="all")
    if metric == "rpo_seconds":
        return _worst(doc.get("rpo", []), "rpo_seconds")
    if metric == "lost_after_fault":
        return _worst(doc.get("rpo", []), "lost_after_fault")
    if metric == "wrong_answers":
        wrong = [e for e in doc.get("integrity", []) if e.get("check") == "wrong-answers"]
        return _worst(wrong, "wrong_answers")
    return _worst(doc.get("residency", []), "violations")
