"""`gameday scorecard` and `gameday report`: click commands, registered by experiments.cli.

Register with `main.add_command(scorecard)` and `main.add_command(report)`. Exit codes:
0 pass (or intact / GO), 1 fail (or tampered / NO-GO), 2 usage or configuration error,
3 inconclusive. Library code raises; only this module maps verdicts to exit codes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from experiments.exits import errors_to_exit_codes
from scorecards.evaluate import Verdict

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
EXIT_FOR_VERDICT = {
    Verdict.PASS: EXIT_PASS,
    Verdict.FAIL: EXIT_FAIL,
    Verdict.INCONCLUSIVE: EXIT_INCONCLUSIVE,
}
DEFAULT_GATES = Path(__file__).resolve().parent / "gates.yaml"
DEFAULT_HISTORY = Path(".gameday/history.sqlite")
DEFAULT_REPORT_DIR = Path(".gameday/report")


# Clocks are injected: tests set `obj={"clock": ...}` on the click context.
Clock = Callable[[], float]


def _clock(ctx: click.Context) -> Clock:
    obj = ctx.obj if isinstance(ctx.obj, dict) else {}
    clock = obj.get("clock")
    return clock if callable(clock) else time.time


F = TypeVar("F", bound=Callable[..., Any])


def history_option(help: str) -> Callable[[F], F]:
    """`--history DB`, defaulting to the history `gameday scorecard` appends to."""
    return click.option(
        "--history",
        type=click.Path(path_type=Path),
        default=DEFAULT_HISTORY,
        show_default=True,
        help=help,
    )


def max_age_option(help: str) -> Callable[[F], F]:
    """`--max-age DAYS` (default 30) as `max_age_days`: how old a latest drill may be."""
    return click.option(
        "--max-age",
        "max_age_days",
        type=click.FloatRange(min=0),
        default=30.0,
        show_default=True,
        help=help,
    )


@click.command("scorecard")
@click.argument("run_dirs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--gates",
    "gates_file",
    type=click.Path(path_type=Path),
    default=None,
    help=f"Gates file (default: {DEFAULT_GATES.parent.name}/{DEFAULT_GATES.name}).",
)
@history_option("SQLite history every scored run is appended to.")
@click.option("--no-history", is_flag=True, help="Do not append to the history.")
@click.option(
    "--out",
    "drill_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where a repeated drill's combined scorecard goes (default: "
    "<common parent of the runs>/drill-<experiment>).",
)
@click.option("--no-charts", is_flag=True, help="Skip the PNG charts (faster).")
@click.option(
    "--verify",
    is_flag=True,
    help="Check RUN_DIR against its manifest.json instead: exit 0 intact, 1 with the differences.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@errors_to_exit_codes
def scorecard(
    ctx: click.Context,
    run_dirs: tuple[Path, ...],
    gates_file: Path | None,
    history: Path,
    no_history: bool,
    drill_dir: Path | None,
    no_charts: bool,
    verify: bool,
    as_json: bool,
) -> None:
    """Score RUN_DIR… against the gates, write the outputs, exit with the verdict.

    Several runs of the same experiment are a repeated drill. Exit codes: 0 PASS,
    1 FAIL, 2 usage or configuration error, 3 INCONCLUSIVE.
    """
    from infra.errors import ConfigError

    if not run_dirs:
        raise ConfigError("give at least one RUN_DIR")
    if verify:
        _verify(ctx, run_dirs, as_json)
        return

    from scorecards.gates import load_gates
    from scorecards.render import to_dict
    from scorecards.scoring import score

    gates = load_gates(gates_file or DEFAULT_GATES)

    def progress(message: str) -> None:
        if not as_json:
            click.echo(message, err=True)

    outcome = score(
        list(run_dirs),
        gates,
        clock=_clock(ctx),
        history=None if no_history else history,
        drill_dir=drill_dir,
        progress=progress,
        charts=not no_charts,
    )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "verdict": outcome.verdict.value,
                    "runs": [{"dir": str(s.out_dir), **to_dict(s.card)} for s in outcome.runs],
                    "drills": [{"dir": str(s.out_dir), **to_dict(s.card)} for s in outcome.drills],
                },
                indent=2,
            )
        )
    else:
        for item in (*outcome.runs, *outcome.drills):
            card = item.card
            counts = card.counts()
            click.echo(
                f"{card.verdict.value:<12} {card.experiment:<20} {item.out_dir}  "
                f"({counts['PASS']} pass, {counts['FAIL']} fail, "
                f"{counts['INCONCLUSIVE']} inconclusive)"
            )
            for gate in card.gates:
                if gate.verdict != Verdict.PASS:
                    click.echo(f"  {gate.verdict.value:<12} {gate.id}: {gate.reason}")
        click.echo(f"verdict: {outcome.verdict.value}")
    ctx.exit(EXIT_FOR_VERDICT[outcome.verdict])


def _verify(ctx: click.Context, run_dirs: tuple[Path, ...], as_json: bool) -> None:
    from scorecards.manifest import verify

    results = {str(path): [str(d) for d in verify(path)] for path in run_dirs}
    intact = all(not diffs for diffs in results.values())
    if as_json:
        click.echo(json.dumps({"intact": intact, "differences": results}, indent=2))
    else:
        for path, diffs in results.items():
            if diffs:
                click.echo(f"{path}: TAMPERED ({len(diffs)} difference(s))")
                for diff in diffs:
                    click.echo(f"  {diff}")
            else:
                click.echo(f"{path}: intact")
    ctx.exit(EXIT_PASS if intact else EXIT_FAIL)


@click.command("report")
@history_option("SQLite history written by `gameday scorecard`.")
@click.option(
    "--since",
    "since_days",
    type=click.FloatRange(min=0),
    default=90.0,
    show_default=True,
    help="Only drills of the last DAYS days.",
)
@max_age_option("A latest drill older than this many days is stale: NO-GO.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_REPORT_DIR,
    show_default=True,
    help="Folder for report.md, report.html, report.json and the trend charts.",
)
@click.option(
    "--html",
    "briefing",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Where the readiness briefing page goes (default: OUT/briefing.html).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@errors_to_exit_codes
def report(
    ctx: click.Context,
    history: Path,
    since_days: float,
    max_age_days: float,
    out_dir: Path,
    briefing: Path | None,
    as_json: bool,
) -> None:
    """Readiness over the history: latest verdict, freshness, trends, distributions.

    Exit 0 when GO, 1 when NO-GO (any failed, inconclusive or stale drill, or none).
    """
    from infra.errors import ConfigError
    from scorecards.report import report as build

    if not history.exists():
        raise ConfigError(f"{history}: no history yet (score a run with `gameday scorecard`)")
    page = briefing or out_dir / "briefing.html"
    result = build(history, since_days, max_age_days, out_dir, clock=_clock(ctx), briefing=page)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        click.echo((out_dir / "report.md").read_text())
        click.echo(f"wrote {out_dir / 'report.md'}, {out_dir / 'report.html'} and {page}", err=True)
    ctx.exit(EXIT_PASS if result.decision == "GO" else EXIT_FAIL)
