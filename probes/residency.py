"""Data residency: requests served by a region outside their jurisdiction (must be 0).

A request naming jurisdiction `eu` (the platform's jurisdiction header) answered by a
region whose jurisdiction (from the
topology) is not `eu` is a violation, and the reverse. Every answer carrying
`X-Region` counts, whatever its status: a 404 from the wrong jurisdiction still means
the request crossed the boundary. Requests without an answer (no `X-Region`) are not
counted; a region missing from the topology makes the result "error" (it cannot be
judged), never a pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from infra.errors import ConfigError
from probes.result import failed, record
from probes.rundir import read_topology, region_jurisdictions
from probes.timeline import Timeline, read_timeline

__all__ = ["residency_violations"]

DEFAULT_TOPOLOGY = Path(__file__).resolve().parents[1] / "infra" / "local" / "topology.yaml"


def residency_table(frame: pd.DataFrame, region_jur: dict[str, str]) -> list[dict[str, Any]]:
    """One entry per residency: answered requests, violations, serving regions."""
    answered = frame[frame["region"].notna()]
    residencies = sorted(str(r) for r in frame["residency"].dropna().unique())
    counts = answered.groupby(["residency", "region"], observed=True).size().reset_index(name="n")
    pairs = [
        (str(res), str(region), int(n))
        for res, region, n in zip(counts["residency"], counts["region"], counts["n"], strict=True)
    ]
    return residency_entries(pairs, residencies, region_jur)


def residency_table_scan(timeline: Timeline, region_jur: dict[str, str]) -> list[dict[str, Any]]:
    """`residency_table` over a timeline queried in place (the engine counts the pairs)."""
    rows = timeline.query(
        "SELECT residency, region, count(*) FROM tl "
        "WHERE region IS NOT NULL AND residency IS NOT NULL GROUP BY ALL ORDER BY ALL"
    )
    pairs = [(str(res), str(region), int(n)) for res, region, n in rows]
    return residency_entries(pairs, timeline.residencies(), region_jur)


def residency_entries(
    pairs: list[tuple[str, str, int]], residencies: list[str], region_jur: dict[str, str]
) -> list[dict[str, Any]]:
    """The entries of `residency_table` from (residency, region, answered) counts."""
    table: list[dict[str, Any]] = []
    for residency in residencies:
        head = {"residency": residency, "inputs": {"regions": dict(sorted(region_jur.items()))}}
        by_region: dict[str, int] = {}
        for res, region, n in pairs:
            if res == residency and n:
                by_region[region] = n
        if not by_region:
            table.append(failed("no-data", "no answered request of this residency", **head))
            continue
        unknown = sorted(r for r in by_region if r not in region_jur)
        violations = {
            r: n for r, n in by_region.items() if region_jur.get(r, residency) != residency
        }
        entry = {
            **head,
            "status": "error" if unknown else "ok",
            "reason": f"regions not in the topology: {', '.join(unknown)}" if unknown else None,
            "answered": sum(by_region.values()),
            "violations": sum(violations.values()),
            "violations_by_region": violations,
            "served_by_region": by_region,
        }
        table.append(record(entry))
    return table


def residency_violations(timeline_path: str, topology_path: str = "") -> dict[str, Any]:
    """Requests answered by a region outside the jurisdiction they named (must be 0).

    Reads the timeline's `residency` and `region` (the answer's `X-Region`) and maps
    regions to jurisdictions with `topology_path` (default: the local platform's
    `infra/local/topology.yaml`). Returns the total `violations` and, per residency,
    the counts by serving region. `status` "no-data" when no request was answered,
    "error" when a serving region is not in the topology.
    """
    try:
        frame = read_timeline(Path(timeline_path), columns=("region",))
        topology = read_topology(Path(topology_path) if topology_path else DEFAULT_TOPOLOGY)
    except (ConfigError, ValueError) as exc:
        return failed("error", str(exc))
    table = residency_table(frame, region_jurisdictions(topology))
    statuses = {e["status"] for e in table}
    status = "error" if "error" in statuses else "ok" if "ok" in statuses else "no-data"
    return record(
        {
            "status": status,
            "reason": None
            if status == "ok"
            else "; ".join(f"{e['residency']}: {e['reason']}" for e in table if e.get("reason"))
            or "no request in the timeline",
            "violations": sum(int(e.get("violations", 0)) for e in table),
            "residencies": table,
        }
    )
