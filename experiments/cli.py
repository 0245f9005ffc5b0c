"""The `gameday` command line: the composition root.

Library code raises; the commands turn exceptions into exit codes through
`experiments.exits` (0 pass, 1 fail, 2 usage or configuration error, 3 inconclusive).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from experiments.exits import (
    errors_to_exit_codes,
)
from infra.errors import ConfigError


def _emit(data: Any, as_json: bool, human: Callable[[Any], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human(data)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gameday")
def main() -> None:
    """gameday: chaos drills with measured RTO and RPO for multi-region ML inference."""


# ------------------------------------------------------------------------- testbed
@main.group()
def testbed() -> None:
    """The local multi-region reference platform (a private network world)."""


def _print_world(data: dict[str, Any]) -> None:
    urls = data.get("urls", {})
    for key in ("router_url", "prometheus_url", "haproxy_stats_url"):
        if key in urls:
            click.echo(f"{key:<18} {urls[key]}")
    click.echo(f"{'phase':<18} {data.get('phase', '?')}")
    if "ownership" in data:
        click.echo(f"{'owner':<18} {data['ownership']}")
    click.echo("")
    click.echo(
        f"{'region':<12} {'provider':<8} {'jurisdiction':<12} {'address':<12} "
        f"{'store role':<10} {'router':<8} processes"
    )
    for region in data.get("regions", []):
        procs = region.get("processes", {})
        down = [name for name, state in procs.items() if state != "running"]
        summary = "all running" if not down else "not running: " + ", ".join(down)
        click.echo(
            f"{region['name']:<12} {region['provider']:<8} {region['jurisdiction']:<12} "
            f"{region['address']:<12} {region['role']:<10} {region['router']:<8} "
            f"{summary}"
        )
    primaries = data.get("primaries", {})
    if primaries:
        click.echo("")
        click.echo("primaries: " + ", ".join(f"{j}={r}" for j, r in primaries.items()))
    _print_store_settings(data)
    for fault in data.get("faults", []):
        click.echo(f"active fault: {fault['fault']} {fault['target']} (id {fault['id']})")


def _print_store_settings(data: dict[str, Any]) -> None:
    """The data groups' write guard: declared in the topology, and as each store reports it."""
    declared = data.get("data_groups") or {}
    regions = data.get("regions", [])
    for group in sorted({r["jurisdiction"] for r in regions}):
        wanted = declared.get(group)
        said = "; ".join(
            f"{r['name']} " + (" ".join(f"{k} {v}" for k, v in r["store_settings"].items()) or "?")
            for r in regions
            if r["jurisdiction"] == group and "store_settings" in r
        )
        if wanted:
            spec = ", ".join(f"{k} {v}" for k, v in wanted.items())
            click.echo(f"store settings {group}: {spec} (stores report: {said})")
        else:
            click.echo(
                f"store settings {group}: Redis defaults, no write guard (stores report: {said})"
            )


@testbed.command("up")
@click.option(
    "--topology",
    type=click.Path(path_type=Path),
    default=None,
    help="Topology file (default: infra/local/topology.yaml).",
)
@click.option(
    "--router-port",
    type=int,
    default=18080,
    show_default=True,
    help="Host port on 127.0.0.1 for the router (0: any free port).",
)
@click.option("--prometheus-port", type=int, default=19090, show_default=True)
@click.option(
    "--stats-port",
    type=int,
    default=18404,
    show_default=True,
    help="Host port for HAProxy's stats page and metrics.",
)
@click.option(
    "--entities",
    type=int,
    default=10_000,
    show_default=True,
    help="Entities per jurisdiction loaded into the feature stores.",
)
@click.option(
    "--no-verify-model-digest",
    is_flag=True,
    help="Services load their model copy without checking its digest "
    "(to prove the probes catch a corrupt replica).",
)
@click.option(
    "--no-verify-features",
    is_flag=True,
    help="Services serve feature records without checking their checksums.",
)
@click.option(
    "--foreground",
    is_flag=True,
    help="Own the world: it lives as long as this command, and goes with it on Ctrl-C, "
    "SIGTERM or any kill. Default: detached, left running until `testbed down`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@errors_to_exit_codes
def testbed_up(
    topology: Path | None,
    router_port: int,
    prometheus_port: int,
    stats_port: int,
    entities: int,
    no_verify_model_digest: bool,
    no_verify_features: bool,
    foreground: bool,
    as_json: bool,
) -> None:
    """Bring the local platform up; returns when every region is ready.

    Detached by default (a game day: the world stays until `testbed down`); with
    `--foreground` the command owns the world and stays until a signal, and the world
    goes when it does.
    """
    from infra.local import world

    started = time.monotonic()

    def progress(phase: str) -> None:
        if not as_json:
            click.echo(f"[{time.monotonic() - started:5.1f}s] {phase}", err=True)

    world.up(
        topology,
        ports={"router": router_port, "prometheus": prometheus_port, "haproxy_stats": stats_port},
        entities=entities,
        verify_model_digest=not no_verify_model_digest,
        verify_features=not no_verify_features,
        progress=progress,
        detach=not foreground,
    )
    data = world.status()
    data["seconds_to_ready"] = round(time.monotonic() - started, 2)
    data.update(data["urls"])
    _emit(data, as_json, _print_world)
    if foreground:
        _hold_then_down()


def _hold_then_down() -> None:
    """Wait for SIGINT, SIGTERM or SIGHUP, then remove the world this command owns.

    Any other end of this process (SIGKILL) removes it too: the world's lifeline.
    """
    import signal

    from infra.local import world

    stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    sys.stdout.flush()
    click.echo("the world lives as long as this command; Ctrl-C removes it", err=True)
    received = signal.sigwait(stops)
    click.echo(f"{signal.Signals(received).name}: removing the world", err=True)
    world.down()
    click.echo("world removed", err=True)


@testbed.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@errors_to_exit_codes
def testbed_status(as_json: bool) -> None:
    """State of the running world: regions, roles, router view, active faults."""
    from infra.local import world

    data = world.status()
    data.update(data["urls"])
    _emit(data, as_json, _print_world)


@testbed.command("down")
@errors_to_exit_codes
def testbed_down() -> None:
    """Remove the running world (every process, namespace and rule goes with it)."""
    from infra.local import world

    click.echo("world removed" if world.down() else "no world was running")


@testbed.command("exec", context_settings={"ignore_unknown_options": True})
@click.option(
    "--node",
    default=None,
    help="Run in this region's (or 'edge') network namespace instead of the "
    "world's backbone namespace.",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@errors_to_exit_codes
def testbed_exec(node: str | None, command: tuple[str, ...]) -> None:
    """Run COMMAND inside the world, e.g. `gameday testbed exec -- chaos run FILE`."""
    from infra.local import world

    argv = world.exec_argv(list(command), node=node)
    os.execvp(argv[0], argv)


# ------------------------------------------------------------------------- faults
@main.group()
def fault() -> None:
    """Inject and revert faults on the running local platform."""


_events_option = click.option(
    "--events",
    type=click.Path(path_type=Path),
    default=None,
    help="events.jsonl to append the record to (default: the world's own).",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")


def _run_fault(op: str, args: dict[str, Any], events: Path | None, as_json: bool) -> None:
    from infra.local import world

    record = world.fault(op, args, events=events)

    def human(rec: dict[str, Any]) -> None:
        if "records" in rec:
            for sub in rec["records"]:
                human(sub)
            for error in rec.get("errors", []):
                click.echo(f"could not revert: {error}", err=True)
            if not rec["records"] and not rec.get("errors"):
                click.echo("no active fault")
            return
        when = rec.get("applied_at") or rec.get("reverted_at")
        stamp = time.strftime("%H:%M:%S", time.gmtime(when)) if when else "?"
        click.echo(
            f"{rec['type']}: {rec['fault']} {rec['target']} at {stamp}Z ({when:.3f}) id {rec['id']}"
        )

    _emit(record, as_json, human)


@fault.command("kill-region")
@click.argument("region")
@_events_option
@_json_option
@errors_to_exit_codes
def fault_kill_region(region: str, events: Path | None, as_json: bool) -> None:
    """Cut REGION's network, then SIGKILL every process of it."""
    _run_fault("kill-region", {"region": region}, events, as_json)


@fault.command("restore-region")
@click.argument("region")
@_events_option
@_json_option
@errors_to_exit_codes
def fault_restore_region(region: str, events: Path | None, as_json: bool) -> None:
    """Bring a killed REGION back (its store rejoins as a replica)."""
    _run_fault("restore-region", {"region": region}, events, as_json)


@fault.command("partition")
@click.option("--isolate", "isolate", required=True, help="Region to cut off.")
@click.option(
    "--from",
    "from_",
    default=None,
    help="Comma-separated regions (or 'edge') to cut it from; default: every "
    "other region (clients at the edge still reach it).",
)
@click.option(
    "--direction",
    type=click.Choice(["both", "a-to-b", "b-to-a"]),
    default="both",
    show_default=True,
    help="a-to-b: the isolated region cannot send.",
)
@_events_option
@_json_option
@errors_to_exit_codes
def fault_partition(
    isolate: str, from_: str | None, direction: str, events: Path | None, as_json: bool
) -> None:
    """Drop traffic between a region and others (firewall rules in its namespace)."""
    from infra.local import world

    if from_:
        others = [name.strip() for name in from_.split(",") if name.strip()]
    else:
        status = world.status()
        others = [r["name"] for r in status["regions"] if r["name"] != isolate]
    _run_fault(
        "partition",
        {"side_a": [isolate], "side_b": others, "direction": direction},
        events,
        as_json,
    )


@fault.command("heal")
@_events_option
@_json_option
@errors_to_exit_codes
def fault_heal(events: Path | None, as_json: bool) -> None:
    """Remove every partition."""
    _run_fault("heal", {}, events, as_json)


@fault.command("corrupt-replica")
@click.argument("region")
@click.option("--what", type=click.Choice(["model", "features"]), required=True)
@click.option(
    "--count", type=int, default=100, show_default=True, help="Entities to corrupt (features)."
)
@_events_option
@_json_option
@errors_to_exit_codes
def fault_corrupt_replica(
    region: str, what: str, count: int, events: Path | None, as_json: bool
) -> None:
    """Corrupt REGION's model copy or some of its replicated features."""
    _run_fault("corrupt-replica", {"region": region, "what": what, "count": count}, events, as_json)


@fault.command("repair-replica")
@click.argument("region")
@click.option(
    "--what", type=click.Choice(["model", "features", "all"]), default="all", show_default=True
)
@_events_option
@_json_option
@errors_to_exit_codes
def fault_repair_replica(region: str, what: str, events: Path | None, as_json: bool) -> None:
    """Re-replicate the model from the registry and/or resync the store from the primary."""
    _run_fault("repair-replica", {"region": region, "what": what}, events, as_json)


@fault.command("degrade-link")
@click.argument("region")
@click.option("--delay-ms", type=float, default=100.0, show_default=True)
@click.option("--loss-percent", type=float, default=0.0, show_default=True)
@_events_option
@_json_option
@errors_to_exit_codes
def fault_degrade_link(
    region: str, delay_ms: float, loss_percent: float, events: Path | None, as_json: bool
) -> None:
    """Add latency/loss to REGION's link (needs the kernel's sch_netem)."""
    _run_fault(
        "degrade-link",
        {"region": region, "delay_ms": delay_ms, "loss_percent": loss_percent},
        events,
        as_json,
    )


@fault.command("restore-link")
@click.argument("region")
@_events_option
@_json_option
@errors_to_exit_codes
def fault_restore_link(region: str, events: Path | None, as_json: bool) -> None:
    """Remove REGION's link degradation."""
    _run_fault("restore-link", {"region": region}, events, as_json)


@fault.command("revert-all")
@_events_option
@_json_option
@errors_to_exit_codes
def fault_revert_all(events: Path | None, as_json: bool) -> None:
    """Revert every active fault."""
    _run_fault("revert-all", {}, events, as_json)


# ------------------------------------------------------------------------- discovery
@main.command("discover")
@click.option("--json", "as_json", is_flag=True, help="The Chaos Toolkit discovery document.")
@errors_to_exit_codes
def discover(as_json: bool) -> None:
    """Every Chaos Toolkit action (infra.actions) and probe (probes.*) experiments can use.

    The same shape `chaos discover` writes, generated by walking the packages.
    """
    from chaoslib.discovery.discover import discover_activities

    from probes.discovery import discover as discover_probes

    document = discover_probes()
    document["activities"] = [
        *discover_activities("infra.actions", "action"),
        *document["activities"],
    ]

    def human(doc: dict[str, Any]) -> None:
        for activity in doc["activities"]:
            args = ", ".join(a["name"] for a in activity.get("arguments", []))
            summary = (activity.get("doc") or "").strip().splitlines()[0]
            click.echo(f"{activity['type']:<6} {activity['mod']}.{activity['name']}({args})")
            click.echo(f"       {summary}")

    _emit(document, as_json, human)


# ------------------------------------------------------------------------- drills
@main.command("run")
@click.argument("experiment")
@click.option(
    "--repeat",
    type=int,
    default=1,
    show_default=True,
    help="Run the drill N times; the scorecard gates the repeated drill.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Run directory (default: .gameday/runs/<time>-<experiment>).",
)
@click.option(
    "--reuse-testbed",
    is_flag=True,
    help="Drill on the running world instead of a fresh one (it is left running).",
)
@click.option(
    "--gates",
    type=click.Path(path_type=Path),
    default=None,
    help="Gates file (default: experiments/gates.yaml).",
)
@click.option(
    "--history",
    type=click.Path(path_type=Path),
    default=None,
    help="SQLite history (default: .gameday/history.sqlite).",
)
@click.option(
    "--platform",
    "platform_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Drill this platform (a platform file, docs/platforms.md): no world is brought up; "
    "the load runs from this machine against its URLs.",
)
@click.option(
    "--plan",
    "plan_only",
    is_flag=True,
    help="Print the blast radius (on --platform, else the reference platform), the "
    "guardrails and the expected steady state, and exit without touching anything.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@errors_to_exit_codes
def run(
    experiment: str,
    repeat: int,
    out: Path | None,
    reuse_testbed: bool,
    gates: Path | None,
    history: Path | None,
    platform_file: Path | None,
    plan_only: bool,
    as_json: bool,
) -> None:
    """Run a drill: world up, load, EXPERIMENT (name or file), measurement, scorecard.

    With --platform, drill that platform instead (no world). Exit codes: 0 PASS,
    1 FAIL, 2 bad input (a target outside the allow-list included), 3 INCONCLUSIVE.
    """
    from experiments.runner import (
        describe,
        plan_drill,
        run_drill,
        run_platform_drill,
        verdict_exit_code,
    )

    started = time.monotonic()

    def say(message: str) -> None:
        click.echo(f"[{time.monotonic() - started:6.1f}s] {message}", err=True)

    if plan_only:
        from infra.local.describe import REFERENCE_PLATFORM

        lines = plan_drill(experiment, platform_file or REFERENCE_PLATFORM)
        _emit({"plan": lines}, as_json, lambda d: click.echo("\n".join(d["plan"])))
        return
    if platform_file is not None:
        if reuse_testbed:
            raise ConfigError("--reuse-testbed and --platform exclude each other")
        result = run_platform_drill(
            experiment,
            platform_file,
            repeat=repeat,
            out=out,
            gates_path=gates,
            history=history,
            say=say,
        )
    else:
        result = run_drill(
            experiment,
            repeat=repeat,
            out=out,
            reuse=reuse_testbed,
            gates_path=gates,
            history=history,
            say=say,
        )
    data = describe(result)

    def human(d: dict[str, Any]) -> None:
        click.echo("")
        click.echo(f"{d['experiment']}: {d['verdict']}")
        click.echo(f"scorecard: {d['scorecard']}")
        for breach in d["guardrails"]:
            click.echo(f"guardrail breached: {breach['message']}")
        if d["interrupted"] or d["guardrails"]:
            click.echo("the drill was interrupted; every fault was rolled back")

    _emit(data, as_json, human)
    sys.exit(verdict_exit_code(result.verdict))


def _register() -> None:
    # Each part's commands live beside it; they import their heavy libraries lazily.
    from experiments.cmd_compare import compare
    from experiments.cmd_evidence import evidence
    from experiments.cmd_load import load
    from experiments.cmd_measure import measure
    from experiments.cmd_scorecard import report, scorecard

    main.add_command(load)
    main.add_command(measure)
    main.add_command(scorecard)
    main.add_command(report)
    main.add_command(evidence)
    main.add_command(compare)


_register()


if __name__ == "__main__":
    main()
