"""`gameday evidence`: export the drills of a period as one bundle, or verify a bundle.

Registered by experiments.cli. Exit codes: export 0 written, 1 a run directory no
longer matches its manifest, 2 bad input; `--verify` 0 verified, 1 verification failed
(every problem named), 2 not a bundle or bad input.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import click

from experiments.cmd_scorecard import DEFAULT_GATES, _clock, history_option, max_age_option
from experiments.exits import EXIT_FAIL, EXIT_PASS, errors_to_exit_codes
from infra.errors import ConfigError

DEFAULT_SINCE_DAYS = 90.0
DEFAULT_DIR = Path(".gameday/evidence")
REPO = Path(__file__).resolve().parent.parent
DAY = 86_400.0


def parse_when(value: str, option: str, end_of_day: bool) -> float:
    """A date (`2026-11-01`) or ISO time as epoch seconds; naive times are UTC.

    A bare date given to `--to` means the end of that day, so `--to 2026-11-30` keeps
    the drills of the 30th.
    """
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
            return day.timestamp() + (DAY - 1e-6 if end_of_day else 0.0)
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(
            f"{option}: expected a date (2026-11-01) or an ISO time (2026-11-01T12:00:00Z), "
            f"got {value!r}"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def git_revision() -> str:
    """The checkout's commit, with `-dirty` when it has local changes; `unknown` without git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=10,
            check=False,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if sha.returncode != 0 or not sha.stdout.strip():
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def _period(
    since_days: float | None, start: str | None, end: str | None, now: float
) -> tuple[float, float]:
    if since_days is not None and (start or end):
        raise ConfigError("give --since or --from/--to, not both")
    if start or end:
        first = parse_when(start, "--from", False) if start else 0.0
        last = parse_when(end, "--to", True) if end else now
        return first, last
    days = DEFAULT_SINCE_DAYS if since_days is None else since_days
    return max(0.0, now - days * DAY), now


def _day(when: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(when))


@click.command("evidence")
@history_option("SQLite history written by `gameday scorecard` (as `gameday report` reads it).")
@click.option(
    "--since",
    "since_days",
    type=click.FloatRange(min=0),
    default=None,
    metavar="DAYS",
    help=f"Drills of the last DAYS days (default {DEFAULT_SINCE_DAYS:g}).",
)
@click.option(
    "--from", "start", default=None, metavar="DATE", help="First day (2026-11-01) or ISO time, UTC."
)
@click.option(
    "--to", "end", default=None, metavar="DATE", help="Last day (inclusive) or ISO time, UTC."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help=f"Bundle file (default: {DEFAULT_DIR}/evidence-<from>-<to>.tar.gz).",
)
@click.option(
    "--gates",
    "gates_files",
    type=click.Path(path_type=Path, dir_okay=False),
    multiple=True,
    help="A gates file runs were scored against, if it moved or changed since (repeatable).",
)
@max_age_option("For the readiness report in the bundle: older than this is stale.")
@click.option(
    "--verify",
    "bundle",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    metavar="BUNDLE",
    help="Check BUNDLE offline instead: exit 0 verified, 1 with every problem named.",
)
@click.option(
    "--head",
    "expected_head",
    default=None,
    metavar="HEX",
    help="With --verify: the chain head recorded when the bundle was made (catches a "
    "bundle rebuilt from scratch).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@errors_to_exit_codes
def evidence(
    ctx: click.Context,
    history: Path,
    since_days: float | None,
    start: str | None,
    end: str | None,
    out: Path | None,
    gates_files: tuple[Path, ...],
    max_age_days: float,
    bundle: Path | None,
    expected_head: str | None,
    as_json: bool,
) -> None:
    """Export the drills of a period as one verifiable tar.gz, or check one (--verify).

    The bundle holds every run directory with its manifest, the gates files by SHA-256,
    the history as CSV, the readiness report, the tool version and git revision, and a
    hash chain over the runs (docs/evidence.md).
    """
    if bundle is not None:
        _verify(ctx, bundle, expected_head, as_json)
        return
    if expected_head is not None:
        raise ConfigError("--head goes with --verify BUNDLE")
    from scorecards.evidence import export

    clock = _clock(ctx)
    now = clock()
    first, last = _period(since_days, start, end, now)
    target = out or DEFAULT_DIR / f"evidence-{_day(max(first, 0.0))}-{_day(last)}.tar.gz"
    done = export(
        history,
        first,
        last,
        target,
        tool_version=metadata.version("gameday"),
        git_revision=git_revision(),
        gates_files=[*gates_files, DEFAULT_GATES],
        max_age_days=max_age_days,
        clock=clock,
    )
    data = {
        "bundle": str(done.path),
        "runs": done.runs,
        "chain_head": done.head,
        "readiness": done.decision,
    }
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(f"wrote {done.path}: {done.runs} run(s), readiness {done.decision}")
        click.echo(f"chain head {done.head} (keep it apart to check the bundle later)")
    ctx.exit(EXIT_PASS)


def _verify(ctx: click.Context, bundle: Path, expected_head: str | None, as_json: bool) -> None:
    from scorecards.evidence import verify

    result = verify(bundle, expected_head)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "bundle": str(bundle),
                    "verified": result.ok,
                    "runs": result.runs,
                    "chain_head": result.head,
                    "period": list(result.period),
                    "tool": result.tool,
                    "problems": list(result.problems),
                },
                indent=2,
            )
        )
    elif result.ok:
        click.echo(
            f"{bundle}: verified: {result.runs} run(s) from {result.period[0]} to "
            f"{result.period[1]}, chain head {result.head}"
        )
    else:
        click.echo(f"{bundle}: VERIFICATION FAILED ({len(result.problems)} problem(s))")
        for problem in result.problems:
            click.echo(f"  {problem}")
    ctx.exit(EXIT_PASS if result.ok else EXIT_FAIL)
