"""`measurements.json` of a run directory: every probe of DESIGN 4 in one document.

A run directory holds `timeline.parquet` (required), `events.jsonl` (the faults),
optionally `load.json` (saturation), `world.json` (the local platform: stores,
Prometheus URL, topology). What is missing turns the affected entries into `no-data`
(or `error` when unreadable) with the reason: never into a pass. The Prometheus query
results used are stored under `RUN_DIR/prometheus/`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.errors import ConfigError, MalformedInput
from infra.platform import Platform, load_platform
from infra.types import read_event_log
from probes.integrity import expected_digest_of, integrity_table_scan
from probes.models import MEASUREMENTS_VERSION, write_measurements
from probes.prometheus import PromClient, compare_rto, prometheus_rto_table
from probes.readback import stores_from_platform
from probes.residency import residency_table_scan
from probes.result import failed, record, seconds
from probes.rpo import NULL_RPO, WriteStore, rpo_table_scan, stores_from_world
from probes.rto import ALL, NULL_RTO, RtoParams, rto_table_scan
from probes.rundir import (
    Fault,
    faults_from_records,
    read_json,
    read_topology,
    region_jurisdictions,
)
from probes.timeline import Timeline

__all__ = ["measure"]

TIMELINE = "timeline.parquet"
EVENTS = "events.jsonl"
LOAD = "load.json"
WORLD = "world.json"
PLATFORM = "platform.yaml"
PROMETHEUS_DIR = "prometheus"


@dataclass(frozen=True)
class Options:
    """Everything `measure_run` takes besides the run directory."""

    prometheus_url: str | None = None
    topology_path: Path | None = None
    expected_digest: str | None = None
    rto: RtoParams = field(default_factory=RtoParams)
    scrape_interval: float = 1.0
    settle_seconds: float = 5.0
    prometheus_timeout: float = 5.0
    store_timeout: float = 0.5


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _optional_json(path: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(content, input description) of an optional JSON file.

    Absent is `no-data`; present but not a JSON object raises MalformedInput (a run
    directory with a broken file is not measured as if the file were not there).
    """
    if not path.exists():
        return None, {"path": path.name, "status": "no-data", "reason": "file absent"}
    try:
        return read_json(path), {"path": path.name, "status": "ok", "reason": None}
    except ValueError as exc:
        raise MalformedInput(str(exc)) from exc


def _faults(run: Path) -> tuple[list[Fault], dict[str, Any]]:
    """The applied faults and the `events` input; raises MalformedInput on a bad record.

    An absent file is `no-data` (nothing was recorded); a file that is there but cannot
    be read is an error of the run directory, never a run measured without its faults.
    """
    path = run / EVENTS
    if not path.exists():
        return [], {"path": EVENTS, "status": "no-data", "reason": "file absent", "faults": 0}
    try:
        log = read_event_log(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    faults = faults_from_records(list(log.records))
    head = {"path": EVENTS, "records": len(log.records), "warnings": list(log.warnings)}
    if not faults:
        reason = "no applied fault in the file"
        return [], {**head, "status": "no-data", "reason": reason, "faults": 0}
    return faults, {**head, "status": "ok", "reason": None, "faults": len(faults)}


def _platform(run: Path) -> Platform | None:
    """The run's platform file (`platform.yaml`, written by `gameday run`), or None.

    A present but invalid file raises ConfigError: a run is never measured as if its
    platform were another.
    """
    path = run / PLATFORM
    return load_platform(path) if path.exists() else None


def _topology(
    options: Options, world: dict[str, Any] | None, platform: Platform | None = None
) -> tuple[dict[str, str], dict[str, Any]]:
    """Region → jurisdiction: `--topology`, else the regions `world.json` recorded at the
    run (the run directory's own evidence), else the run's platform file, else the
    topology file `world.json` names."""
    source = options.topology_path
    if source is None and world:
        inline = _world_regions(world)
        if inline:
            note = {"status": "ok", "reason": None, "source": "world.json regions"}
            return inline, {**note, "regions": inline}
    if source is None and platform is not None:
        mapping = platform.region_jurisdictions()
        note = {"status": "ok", "reason": None, "source": PLATFORM}
        return mapping, {**note, "regions": mapping}
    if source is None and world and world.get("topology"):
        source = Path(str(world["topology"]))
    if source is None:
        reason = "no topology (give --topology, or a world.json naming one)"
        return {}, {"status": "no-data", "reason": reason, "source": None}
    try:
        mapping = region_jurisdictions(read_topology(source))
    except ValueError as exc:
        return {}, {"status": "error", "reason": str(exc), "source": str(source)}
    return mapping, {"status": "ok", "reason": None, "source": str(source), "regions": mapping}


def _world_regions(world: dict[str, Any]) -> dict[str, str]:
    """`world.json`'s `regions` list as region → jurisdiction; empty unless every entry
    names both (a partial map would misplace the faults of the regions it lacks)."""
    regions = world.get("regions")
    if not isinstance(regions, list) or not regions:
        return {}
    mapping: dict[str, str] = {}
    for entry in regions:
        name = entry.get("name") if isinstance(entry, dict) else None
        jurisdiction = entry.get("jurisdiction") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not isinstance(jurisdiction, str):
            return {}
        mapping[name] = jurisdiction
    return mapping


def _placeholder(reason_entry: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**fields, **reason_entry}


def measure_run(
    run_dir: Path,
    options: Options | None = None,
    write_stores: Mapping[str, WriteStore] | None = None,
) -> dict[str, Any]:
    """The measurements document of `run_dir` (not written; see `measure`).

    `write_stores` (jurisdiction → store) overrides the Sentinel-backed stores built
    from `world.json`. Raises ConfigError when the run directory or its timeline is
    missing or unreadable, or when `events.jsonl` or the timeline is malformed
    (MalformedInput, naming file, line or column, and field); every other missing input
    is a `no-data`/`error` entry.
    """
    options = options or Options()
    run = Path(run_dir)
    if not run.is_dir():
        raise ConfigError(f"{run}: run directory not found")
    started = time.monotonic()
    # The timeline is queried in place, never loaded whole (docs/measurement.md, "Memory
    # model"): a one-hour soak is tens of millions of rows.
    timeline = Timeline(run / TIMELINE)
    try:
        return _measure(run, options, write_stores, timeline, started)
    finally:
        timeline.close()


def _measure(
    run: Path,
    options: Options,
    write_stores: Mapping[str, WriteStore] | None,
    timeline: Timeline,
    started: float,
) -> dict[str, Any]:
    bounds = timeline.span
    faults, events_input = _faults(run)
    load, load_input = _optional_json(run / LOAD)
    world, world_input = _optional_json(run / WORLD)
    platform = _platform(run)
    region_jur, topology_input = _topology(options, world, platform)
    until = bounds[1] if bounds else 0.0
    residencies = timeline.residencies()

    no_fault = failed(
        "no-data",
        f"no fault to measure against ({events_input['path']}: {events_input['reason']})"
        if events_input["status"] != "ok"
        else "no fault",
    )
    # -- client-side RTO
    rto: list[dict[str, Any]] = []
    if faults and timeline.rows:
        rto = rto_table_scan(timeline, faults, options.rto, until, region_jur)
    else:
        reason = failed("no-data", "the timeline is empty") if not timeline.rows else no_fault
        rto = [
            _placeholder(reason, kind=ALL, residency=r, fault_at=None, **NULL_RTO)
            for r in residencies or [ALL]
        ]

    # -- Prometheus-side RTO and the lag estimate
    url = options.prometheus_url or (world or {}).get("urls", {}).get("prometheus_url")
    if not url and platform is not None and platform.prometheus is not None:
        url = platform.prometheus.url
    counters = platform.prometheus.router if platform and platform.prometheus else None
    prom: PromClient | None = PromClient(str(url), options.prometheus_timeout) if url else None
    rto_prom: list[dict[str, Any]] = []
    if prom is None:
        missing = failed("no-data", "no Prometheus URL (give --prometheus, or a world.json)")
        rto_prom = [
            _placeholder(missing, jurisdiction=j, residency=j, fault_at=None, **NULL_RTO)
            for j in residencies or [ALL]
        ]
    elif not faults:
        rto_prom = [
            _placeholder(no_fault, jurisdiction=j, residency=j, fault_at=None, **NULL_RTO)
            for j in residencies or [ALL]
        ]
    else:
        rto_prom = prometheus_rto_table(
            prom,
            faults,
            until,
            options.rto,
            options.scrape_interval,
            tuple(residencies),
            region_jurisdiction=region_jur,
            **(
                {
                    "metric": counters.metric,
                    "group_label": counters.group_label,
                    "group_prefix": counters.group_prefix,
                    "success_code": counters.success_code,
                }
                if counters is not None
                else {}
            ),
        )
        clients = {(e.get("fault_id"), e["residency"]): e for e in rto if e.get("kind") == ALL}
        for entry in rto_prom:
            client = clients.get((entry.get("fault_id"), entry["jurisdiction"]))
            entry.update(compare_rto(entry, client, options.scrape_interval))

    # -- RPO
    stores = write_stores
    store_note = "given"
    if stores is None and platform is not None:
        stores = stores_from_platform(
            platform, residencies, world, store_timeout=options.store_timeout
        )
        store_note = f"{PLATFORM} writes.readback"
    elif stores is None and world is not None and "addresses" in world:
        try:
            stores = stores_from_world(world, residencies, options.store_timeout)
            store_note = "sentinels of world.json"
        except ValueError as exc:
            store_note = f"world.json: {exc}"
    # The ledger is built a slice of clients at a time (docs/measurement.md, "Scale: the
    # memory model").
    rpo = rpo_table_scan(timeline, faults, stores, region_jur, prom, residencies)
    if not rpo:
        rpo = [
            _placeholder(
                failed("no-data", "no write in the timeline"),
                residency=r,
                acknowledged=0,
                fault_at=None,
                **NULL_RPO,
            )
            for r in residencies or [ALL]
        ]

    # -- integrity and residency
    digest, digest_source = expected_digest_of(options.expected_digest, world)
    integrity = integrity_table_scan(
        timeline, faults, until, digest, options.settle_seconds, digest_source, region_jur
    )
    if region_jur:
        residency = residency_table_scan(timeline, region_jur)
    else:
        residency = [
            _placeholder(
                failed("no-data", f"no region → jurisdiction map: {topology_input['reason']}"),
                residency=r,
                violations=None,
            )
            for r in residencies or [ALL]
        ]

    saturated = (load or {}).get("saturated")
    if prom is not None:
        _save_queries(run, prom)
        prom.close()
    doc = {
        "version": MEASUREMENTS_VERSION,
        "run_dir": str(run),
        "measured_at": seconds(time.time(), 3),
        "inputs": {
            "timeline": {
                "path": TIMELINE,
                "rows": timeline.rows,
                "first_start": seconds(bounds[0]) if bounds else None,
                "last_start": seconds(bounds[1]) if bounds else None,
                "sha256": _sha256(run / TIMELINE),
            },
            "events": events_input,
            "load": load_input,
            "world": world_input,
            "topology": topology_input,
            "platform": {"path": PLATFORM, "name": platform.name} if platform else None,
            "prometheus": {
                "url": url,
                "queries": len(prom.log) if prom else 0,
                "stored": f"{PROMETHEUS_DIR}/measure.json" if prom and prom.log else None,
            },
            "write_stores": store_note if stores is not None else None,
            "parameters": {
                **options.rto.as_dict(),
                "scrape_interval_seconds": options.scrape_interval,
                "settle_seconds": options.settle_seconds,
            },
        },
        "faults": [f.describe() for f in faults],
        "load": {
            "saturated": saturated if isinstance(saturated, bool) else None,
            "valid": (not saturated) if isinstance(saturated, bool) else None,
        },
        "rto": rto,
        "rto_prometheus": rto_prom,
        "rpo": rpo,
        "integrity": integrity,
        "residency": residency,
        "seconds_to_measure": seconds(time.monotonic() - started, 3),
    }
    return record(doc)


def _save_queries(run: Path, prom: PromClient) -> None:
    if not prom.log:
        return
    folder = run / PROMETHEUS_DIR
    folder.mkdir(exist_ok=True)
    body = {"url": prom.url, "queries": prom.log}
    (folder / "measure.json").write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")


def measure(
    run_dir: str,
    prometheus_url: str = "",
    topology_path: str = "",
    expected_digest: str = "",
) -> dict[str, Any]:
    """Measure a whole run and write `RUN_DIR/measurements.json`; returns the document.

    Reads `timeline.parquet`, `events.jsonl` and, when present, `load.json` and
    `world.json` from `run_dir`; asks Prometheus at `prometheus_url` (default: the
    world's) and reads acknowledged writes back through the world's Sentinels. The
    document has `version` and the lists `rto`, `rto_prometheus`, `rpo`, `integrity`,
    `residency`; every entry has a `status` ("ok", "no-data", "error") and its inputs.
    Raises ConfigError when the run directory or its timeline is missing.
    """
    options = Options(
        prometheus_url=prometheus_url or None,
        topology_path=Path(topology_path) if topology_path else None,
        expected_digest=expected_digest or None,
    )
    doc = measure_run(Path(run_dir), options)
    write_measurements(Path(run_dir), doc)
    return doc
