"""`gameday measure RUN_DIR`: compute `measurements.json` from a run directory.

Registered by the CLI with `main.add_command(measure)`. Imports `experiments.cli`
lazily (inside the call) so that either module can be imported first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from experiments.exits import errors_to_exit_codes
from infra.errors import ConfigError

__all__ = ["measure", "render_summary"]


def _num(value: Any, unit: str = "", digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def render_summary(doc: dict[str, Any]) -> list[str]:
    """The readable summary `gameday measure` prints (one string per line)."""
    inputs = doc.get("inputs", {})
    rows = inputs.get("timeline", {}).get("rows", 0)
    took = _num(doc.get("seconds_to_measure"), " s")
    lines = [
        f"run {doc.get('run_dir')}: {rows} requests, "
        f"{len(doc.get('faults', []))} fault(s), measured in {took}",
    ]
    for warning in inputs.get("events", {}).get("warnings", []):
        lines.append(f"warning: {warning}")
    load = doc.get("load", {})
    if load.get("saturated"):
        lines.append("load generator SATURATED: this run is invalid (inconclusive)")
    for fault in doc.get("faults", []):
        lines.append(
            f"fault {fault['fault']} {fault['target']} at {fault['fault_at']:.3f} "
            f"(id {fault['fault_id']})"
        )
    lines += ["", "RTO, client side (W, S, stability, min_requests in measurements.json)"]
    lines.append(
        f"  {'kind':<8} {'res':<4} {'status':<8} {'impact':<6} {'RTO':>10} {'±':>7} "
        f"{'failed':>7} {'brownout':>9}  reason"
    )
    for e in doc.get("rto", []):
        rto = _num(e.get("rto_seconds"), " s") if e.get("recovered") is not False else "NOT RECOV"
        lines.append(
            f"  {e.get('kind', '-'):<8} {e.get('residency', '-'):<4} {e['status']:<8} "
            f"{_num(e.get('impact')):<6} {rto:>10} "
            f"{_num(e.get('uncertainty_seconds'), ' s'):>7} {_num(e.get('failed')):>7} "
            f"{_num(e.get('brownout_seconds'), ' s', 1):>9}  {e.get('reason') or ''}"
        )
    lines += ["", "RTO, Prometheus side (router counters, raw scrape increments)"]
    for e in doc.get("rto_prometheus", []):
        flag = "  INSTRUMENTATION MISMATCH" if e.get("instrumentation_mismatch") else ""
        lines.append(
            f"  {e.get('jurisdiction', '-'):<4} {e['status']:<8} "
            f"RTO {_num(e.get('rto_seconds'), ' s')} "
            f"(client {_num(e.get('client_rto_seconds'), ' s')}){flag}  {e.get('reason') or ''}"
        )
    lines += ["", "RPO (ledger read back from the current primary)"]
    for e in doc.get("rpo", []):
        lag = (e.get("replication_lag_estimate") or {}).get("lag_seconds")
        why = "; ".join(r for r in (e.get("reason"), e.get("lost_after_fault_reason")) if r)
        lines.append(
            f"  {e.get('residency', '-'):<4} {e['status']:<8} "
            f"acked {_num(e.get('acknowledged'))} "
            f"(after fault {_num(e.get('acknowledged_after_fault'))}) "
            f"lost {_num(e.get('lost'))} after-fault {_num(e.get('lost_after_fault'))} "
            f"ambiguous {_num(e.get('ambiguous'))} unaccounted {_num(e.get('unaccounted'))} "
            f"RPO {_num(e.get('rpo_seconds'), ' s')} "
            f"(lag at fault {_num(lag, ' s')})  {why}"
        )
    lines += ["", "Integrity"]
    for e in doc.get("integrity", []):
        if e.get("check") == "wrong-answers":
            figure = (
                f"{e.get('residency')}: wrong answers {_num(e.get('wrong_answers'))} "
                f"(expected digest: {e.get('digest_source')})"
            )
        else:
            detect = _num(e.get("time_to_detect_seconds"), " s")
            figure = (
                f"{e.get('region')}: time to detect {detect} (detected {_num(e.get('detected'))})"
            )
        reason = e.get("reason") or ""
        lines.append(f"  {e.get('check', '-'):<15} {e['status']:<8} {figure}  {reason}")
    lines += ["", "Residency (requests served outside their jurisdiction; must be 0)"]
    for e in doc.get("residency", []):
        lines.append(
            f"  {e.get('residency', '-'):<4} {e['status']:<8} "
            f"violations {_num(e.get('violations'))} of {_num(e.get('answered'))}  "
            f"{e.get('reason') or ''}"
        )
    return [line.rstrip() for line in lines]


@click.command("measure")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--prometheus",
    "prometheus_url",
    default=None,
    help="Global Prometheus URL (default: the one in RUN_DIR/world.json, if any).",
)
@click.option(
    "--topology",
    type=click.Path(path_type=Path),
    default=None,
    help="Topology file mapping regions to jurisdictions (default: the one world.json names).",
)
@click.option(
    "--expected-digest",
    default=None,
    help="The model digest every answer should carry (default: world.json's deployed model).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print measurements.json instead of a summary."
)
@errors_to_exit_codes
def measure(
    run_dir: Path,
    prometheus_url: str | None,
    topology: Path | None,
    expected_digest: str | None,
    as_json: bool,
) -> None:
    """Compute RUN_DIR/measurements.json (RTO, RPO, integrity, residency) from a run directory."""
    from probes.measure import Options, measure_run
    from probes.models import write_measurements

    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: run directory not found")
    if topology is not None and not topology.is_file():
        raise ConfigError(f"{topology}: topology file not found")
    options = Options(
        prometheus_url=prometheus_url, topology_path=topology, expected_digest=expected_digest
    )
    doc = measure_run(run_dir, options)
    path = write_measurements(run_dir, doc)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    for line in render_summary(doc):
        click.echo(line)
    click.echo("")
    click.echo(f"wrote {path}")
