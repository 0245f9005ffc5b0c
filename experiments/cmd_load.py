"""`gameday load`: a load run that writes the timeline (register with
`main.add_command(load)` in `experiments/cli.py`).

Imports neither locust nor gevent: Locust runs as subprocesses (`loadgen.runner`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from experiments.exits import errors_to_exit_codes
from infra.errors import ConfigError, GamedayError
from infra.local.describe import REFERENCE_PLATFORM
from infra.platform import load_platform
from loadgen.errors import LoadConfigError, LoadRunError
from loadgen.profile import KINDS, SHAPES, Profile, load_golden, load_profile, parse_assignment
from loadgen.runner import LoadResult, LoadSettings, Progress, run, run_worker

__all__ = ["load"]

F = TypeVar("F", bound=Callable[..., Any])


def _exit_codes(func: F) -> F:
    """Load errors become gameday errors, then the CLI's mapping to exit codes."""

    @wraps(func)
    @errors_to_exit_codes
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LoadConfigError as exc:
            raise ConfigError(str(exc)) from exc
        except LoadRunError as exc:
            raise GamedayError(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def _profile(
    profile_file: Path | None,
    users: int | None,
    duration: float | None,
    spawn_rate: float | None,
    shape: str | None,
    weights: tuple[str, ...],
    rates: tuple[str, ...],
    golden: Path | None,
) -> Profile:
    """The file's profile (or the defaults) with the command line's overrides."""
    profile = load_profile(profile_file) if profile_file else Profile(source="command line")
    overrides: dict[str, Any] = {}
    if users is not None:
        if users <= 0:
            raise LoadConfigError(f"--users: must be a positive integer, got {users}")
        overrides["users"] = users
    if duration is not None:
        if duration <= 0:
            raise LoadConfigError(f"--duration: must be a number of seconds > 0, got {duration}")
        overrides["duration_s"] = duration
    if spawn_rate is not None:
        if spawn_rate <= 0:
            raise LoadConfigError(f"--spawn-rate: must be > 0, got {spawn_rate}")
        overrides["spawn_rate"] = spawn_rate
    if shape is not None:
        overrides["shape"] = shape
    if golden is not None:
        overrides["golden"] = str(golden)
        overrides["golden_scores"] = load_golden(golden)
    profile = replace(profile, **overrides)
    for text in weights:
        kind, value = parse_assignment(text, "--weight")
        profile = profile.with_mix(kind, weight=value)
    for text in rates:
        kind, value = parse_assignment(text, "--rate")
        profile = profile.with_mix(kind, rate=value)
    profile.check_runnable()
    return profile


def _print_summary(result: LoadResult) -> None:
    data = result.summary
    click.echo(
        f"{data['requests']} requests, {data['failures']} failed, "
        f"{data['wrong_answers']} wrong answers, {data['rps']:.1f} req/s "
        f"over {data['duration_s']:g} s with {data['users']} users"
        + (f" ({data['workers']} workers)" if data["workers"] else "")
    )
    click.echo(
        f"{'kind':<8} {'requests':>9} {'failed':>7} {'wrong':>6} {'req/s':>8} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    rows = [(kind, data["per_kind"][kind]) for kind in KINDS if data["per_kind"][kind]["requests"]]
    rows.append(("all", {**data, "rps": data["rps"]}))
    for kind, row in rows:
        click.echo(
            f"{kind:<8} {row['requests']:>9} {row['failures']:>7} {row['wrong_answers']:>6} "
            f"{row['rps']:>8.1f} {ms(row['p50_ms']):>8} {ms(row['p95_ms']):>8} "
            f"{ms(row['p99_ms']):>8}"
        )
    click.echo(
        f"generator CPU: max {data['cpu_max_percent']:.0f} %, "
        f"mean {data['cpu_mean_percent']:.0f} % of one core per process"
        + ("  SATURATED: latencies are not trustworthy" if data["saturated"] else "")
    )
    click.echo(f"timeline: {result.timeline}")
    click.echo(f"summary:  {result.load_json}")


@click.command("load")
@click.option(
    "--host",
    default=None,
    help="Base URL of the platform (e.g. the router_url; default: the platform file's).",
)
@click.option(
    "--platform",
    "platform_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="GAMEDAY_PLATFORM_FILE",
    default=None,
    help="Platform file: jurisdictions, API shape, entity ids, canaries "
    "(default: the reference platform) [env GAMEDAY_PLATFORM_FILE].",
)
@click.option(
    "--users", type=int, default=None, help="Simulated users (or `users:` in the profile)."
)
@click.option(
    "--duration",
    type=float,
    default=None,
    help="Seconds of load (or `duration_s:` in the profile).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Load directory: timeline.parquet and load.json go here (required but with --worker).",
)
@click.option(
    "--workers",
    type=int,
    default=0,
    show_default=True,
    help="0: one Locust process; N: one master and N worker processes.",
)
@click.option(
    "--profile",
    "profile_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="YAML load profile (see docs/loadgen.md); options given here win.",
)
@click.option("--spawn-rate", type=float, default=None, help="Users started per second.")
@click.option("--shape", type=click.Choice(SHAPES), default=None, help="Load shape.")
@click.option(
    "--weight",
    "weights",
    multiple=True,
    metavar="KIND=N",
    help="Share of users for predict, write or canary (repeatable).",
)
@click.option(
    "--rate",
    "rates",
    multiple=True,
    metavar="KIND=R",
    help="Requests per second per user of that kind, 0: flat out (repeatable).",
)
@click.option(
    "--golden",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="GAMEDAY_GOLDEN",
    default=None,
    help="Golden scores (JSON: entity id -> score) for canaries [env GAMEDAY_GOLDEN].",
)
@click.option(
    "--metrics-port",
    type=int,
    default=0,
    show_default=True,
    help="Serve the generator's Prometheus counters on 127.0.0.1:PORT (0: off).",
)
@click.option(
    "--prometheus-sd-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a Prometheus file_sd target for the metrics port here during the run.",
)
@click.option(
    "--master",
    "as_master",
    is_flag=True,
    help="Locust master for --workers N workers on other machines (`gameday load --worker`); "
    "they send their rows here and the timeline is written here.",
)
@click.option(
    "--master-bind-host",
    default="127.0.0.1",
    show_default=True,
    help="With --master: the address workers connect to (e.g. 0.0.0.0 for other machines).",
)
@click.option("--master-port", type=int, default=5557, show_default=True, help="The master's port.")
@click.option(
    "--worker",
    "as_worker",
    is_flag=True,
    help="A Locust worker of the master at --master-host: sends the load and its rows there.",
)
@click.option("--master-host", default=None, help="With --worker: the master's address.")
@click.option("--json", "as_json", is_flag=True, help="Print load.json instead of the summary.")
@_exit_codes
def load(
    host: str | None,
    platform_file: Path | None,
    users: int | None,
    duration: float | None,
    out: Path,
    workers: int,
    profile_file: Path | None,
    spawn_rate: float | None,
    shape: str | None,
    weights: tuple[str, ...],
    rates: tuple[str, ...],
    golden: Path | None,
    metrics_port: int,
    prometheus_sd_file: Path | None,
    as_master: bool,
    master_bind_host: str,
    master_port: int,
    as_worker: bool,
    master_host: str | None,
    as_json: bool,
) -> None:
    """Send inference load to HOST and record every request (timeline.parquet, load.json).

    Across machines: `--master --workers N` here, `--worker --master-host H` on each of
    the N other machines (same --host/--platform); the timeline is written by the master.
    """
    if as_worker and as_master:
        raise ConfigError("--master and --worker exclude each other")
    if as_worker and not master_host:
        raise ConfigError("--worker needs --master-host (the machine running --master)")
    if as_master and workers < 1:
        raise ConfigError("--master needs --workers N (the workers to wait for)")
    if out is None and not as_worker:
        raise ConfigError("--out is required (the load directory)")
    if as_worker:
        # The master decides users and duration; a worker only needs a runnable profile.
        users = users or 1
        duration = duration or 3600.0
    profile = _profile(profile_file, users, duration, spawn_rate, shape, weights, rates, golden)
    platform = load_platform(platform_file) if platform_file else load_platform(REFERENCE_PLATFORM)
    try:
        profile.shares(list(platform.jurisdictions))
    except LoadConfigError as exc:
        raise ConfigError(str(exc)) from exc
    if host is None:
        if platform_file is None:
            raise ConfigError("--host is required without --platform")
        host = platform.traffic.base_url
    settings = LoadSettings(
        host=host.rstrip("/"),
        profile=profile,
        workers=workers,
        platform=platform_file.resolve() if platform_file else None,
        remote_workers=as_master,
        master_bind_host=master_bind_host,
        master_port=master_port,
        metrics_port=metrics_port,
        prometheus_sd_file=prometheus_sd_file,
    )

    if as_worker:
        assert master_host is not None
        click.echo(f"load: worker of {master_host}:{master_port} against {settings.host}", err=True)
        code = run_worker(
            settings,
            master_host,
            master_port,
            (out or Path(".gameday") / "worker").resolve(),
            timeout_s=(profile.duration_s or 3600.0) + 120.0,
        )
        sys.exit(code)
    assert out is not None

    def progress(p: Progress) -> None:
        click.echo(
            f"[{p.elapsed_s:6.1f}s] {p.state:<8} users {p.users:>4}  requests {p.requests:>8}  "
            f"failures {p.failures:>6}  {p.rps:8.1f} req/s",
            err=True,
        )

    if not as_json:
        processes = "1 Locust process" if not workers else f"1 master + {workers} workers"
        click.echo(
            f"load: {profile.users} users for {profile.duration_s:g} s against {settings.host} "
            f"({processes}, shape {profile.shape})",
            err=True,
        )
        if profile.mix["canary"].weight and not (
            profile.golden_scores or platform.canaries.entities or platform.canaries.file
        ):
            click.echo("load: no golden scores (--golden): canaries are off", err=True)
    result = run(settings, out, progress=None if as_json else progress)
    if as_json:
        click.echo(json.dumps(result.summary, indent=2, sort_keys=True))
    else:
        _print_summary(result)
    if result.locust_requests is not None and result.locust_requests != result.requests:
        click.echo(
            f"load: warning: Locust counted {result.locust_requests} requests, the timeline "
            f"holds {result.requests}",
            err=True,
        )
    if result.saturated:
        click.echo(
            f"load: warning: the generator passed 90 % of a core ({result.cpu_max_percent:.0f} %): "
            "use fewer users or more --workers",
            err=True,
        )
    if result.interrupted:
        click.echo(
            f"load: interrupted by {result.interrupted}; the timeline holds what ran", err=True
        )
        sys.exit(130 if result.interrupted == "SIGINT" else 143)
