"""Steady-state probes for Chaos Toolkit hypotheses: live SLOs and the drill's measured figures.

Both kinds hold before the fault and must still hold after it, so one steady-state
hypothesis serves as the "before" (the platform meets its SLOs) and the "after" (the
platform recovered, and the drill's measured RTO, RPO, integrity and residency are
within the tolerances written in the experiment, taken from the gates).

Configuration keys read: `gameday_platform_file` (the platform file: API shape,
entity ids, jurisdiction header, URLs; else `$GAMEDAY_PLATFORM_FILE`, else the
reference platform's), `gameday_router_url` (overrides the platform file's base URL)
and `gameday_run_dir` (the run directory where the drill's `events.jsonl` and
`measurements.json` live).
"""

from __future__ import annotations

import json
import os
import random
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from infra.local.describe import REFERENCE_PLATFORM
from infra.platform import Platform, load_platform
from infra.shapes import predict_request
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


def _platform(configuration: dict[str, Any] | None) -> Platform:
    named = (configuration or {}).get("gameday_platform_file") or os.environ.get(
        "GAMEDAY_PLATFORM_FILE"
    )
    return load_platform(Path(str(named)) if named else REFERENCE_PLATFORM)


def router_success_ratio(
    residency: str,
    requests: int = 20,
    entities: int = 10_000,
    timeout_s: float = 1.0,
    *,
    configuration: dict[str, Any] | None = None,
) -> float:
    """Share (0..1) of `requests` predictions for `residency` that the platform answers 2xx.

    Read-only: predictions do not change the platform. Requests are built as the
    platform file says (API shape, entity ids, jurisdiction header); entities are drawn
    at random among the first `entities` of the jurisdiction; each request has its own
    timeout, so the probe takes at most `requests * timeout_s` seconds. Use with a
    `range` tolerance such as `[0.99, 1.0]`.
    """
    if requests < 1:
        raise ValueError(f"requests {requests} must be at least 1")
    platform = _platform(configuration)
    if residency not in platform.jurisdictions:
        raise ValueError(
            f"residency {residency!r} is not a jurisdiction of the platform "
            f"({', '.join(platform.jurisdictions)})"
        )
    url = str((configuration or {}).get("gameday_router_url") or "").rstrip("/")
    if not url or residency in platform.traffic.urls:
        url = platform.url_for(residency)
    ok = 0
    rng = random.Random()
    for _ in range(requests):
        entity = platform.entity(residency, rng.randrange(entities))
        prepared = predict_request(platform, residency, entity)
        request = urllib.request.Request(
            url + prepared.path,
            data=json.dumps(prepared.body).encode() if prepared.body is not None else None,
            method=prepared.method,
            headers=prepared.headers,
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
