"""`gameday compare`: two drills side by side, gate by gate. Registered by experiments.cli.

Exit codes: 0 compared (whatever the verdicts), 2 bad input (a missing or unmeasured
run directory, a bad gates file, sides given twice). Library code raises; only this
module maps exceptions to exit codes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from experiments.exits import errors_to_exit_codes

DEFAULT_GATES = Path(__file__).resolve().parent / "gates.yaml"
DEFAULT_HISTORY = Path(".gameday/history.sqlite")


def _default_out(a: list[Path], b: list[Path]) -> Path:
    from infra.local import world

    def name(paths: list[Path]) -> str:
        return paths[0].resolve().name + (f"+{len(paths) - 1}" if len(paths) > 1 else "")

    return world.home() / "compare" / f"{name(a)}--vs--{name(b)}"


@click.command("compare")
@click.argument("runs", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--a",
    "a_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A run of side A (repeat the option for repeated runs).",
)
@click.option(
    "--b",
    "b_dirs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A run of side B (repeat the option for repeated runs).",
)
@click.option(
    "--last",
    "last",
    default=None,
    metavar="EXPERIMENT",
    help="Compare the previous and the latest run of EXPERIMENT in the history.",
)
@click.option(
    "--history",
    type=click.Path(path_type=Path),
    default=DEFAULT_HISTORY,
    show_default=True,
    help="SQLite history that --last reads.",
)
@click.option(
    "--gates",
    "gates_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Gates file (default: experiments/gates.yaml).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where comparison.{json,md,html} go (default: .gameday/compare/<A>--vs--<B>).",
)
@click.option("--json", "as_json", is_flag=True, help="Print comparison.json instead.")
@errors_to_exit_codes
def compare(
    runs: tuple[Path, ...],
    a_dirs: tuple[Path, ...],
    b_dirs: tuple[Path, ...],
    last: str | None,
    history: Path,
    gates_file: Path | None,
    out: Path | None,
    as_json: bool,
) -> None:
    """Compare RUN_A with RUN_B, the runs given with --a … and --b …, or (--last) the two
    latest runs of an experiment in the history: what changed since the last drill.

    Each run is a run directory or a repeated drill's folder (its run-NN/ runs). Both
    sides are scored as `gameday scorecard` scores them, each against its own
    experiment's gates. Prints Markdown (or --json) and writes comparison.json, .md and
    .html. Exit codes: 0 compared, 2 bad input.
    """
    from infra.errors import ConfigError
    from scorecards import compare_render
    from scorecards.compare import compare as compare_runs
    from scorecards.compare import last_two
    from scorecards.gates import load_gates

    if sum(map(bool, (runs, a_dirs or b_dirs, last))) > 1:
        raise ConfigError("give one of: RUN_A RUN_B, --a/--b, or --last EXPERIMENT")
    if last:
        previous, latest = last_two(history, last)
        a, b = [previous], [latest]
    elif runs:
        if len(runs) != 2:
            raise ConfigError(f"give exactly two runs, RUN_A RUN_B (got {len(runs)})")
        a, b = [runs[0]], [runs[1]]
    else:
        a, b = list(a_dirs), list(b_dirs)
        if not a or not b:
            raise ConfigError(
                "give RUN_A RUN_B, at least one --a and one --b, or --last EXPERIMENT"
            )
    gates = load_gates(gates_file or DEFAULT_GATES)
    result = compare_runs(a, b, gates, scored_at=time.time())
    out_dir = out or _default_out(a, b)
    written = compare_render.write(result, out_dir)
    if as_json:
        click.echo(json.dumps(compare_render.to_dict(result), indent=2))
    else:
        click.echo(compare_render.to_markdown(result))
    click.echo("written: " + ", ".join(str(p) for p in written), err=True)
