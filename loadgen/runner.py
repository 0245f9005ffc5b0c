"""Run Locust as subprocess(es) and leave a load directory behind.

`run(settings, out_dir)` checks the input and that the host answers a TCP connect, starts
`python -m locust` headless (one process, or one master and N workers on this machine),
samples their CPU from /proc every 0.5 s, and when they are done writes:

- `OUT/timeline.parquet`: every request, sorted by `t_start` (see `loadgen.timeline`);
- `OUT/load.json`: settings, counts, latency percentiles, generator CPU, `saturated`;
- `OUT/loadgen/`: Locust's logs, its own stats (`stats.json`), the effective profile.

Importing this module does not import locust or gevent. Every subprocess is reaped: on a
normal end, on timeout, on an exception, on SIGINT and on SIGTERM (which stop the load
gracefully, so the timeline still gets its last batch, and then return a result marked
`interrupted`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from loadgen.cpu import SATURATION_PERCENT, CpuSampler, CpuSummary
from loadgen.errors import LoadConfigError, LoadRunError
from loadgen.metrics import remove_sd_file, write_sd_file
from loadgen.profile import KINDS, Profile
from loadgen.timeline import (
    BATCH_ROWS,
    BATCH_SECONDS,
    MergeResult,
    merge,
    percentiles,
    read_timeline,
)

__all__ = ["LOAD_JSON_VERSION", "LoadResult", "LoadSettings", "Progress", "check_settings", "run"]

LOAD_JSON_VERSION = 1
HERE = Path(__file__).resolve().parent
LOCUSTFILES = f"{HERE / 'locustfile.py'},{HERE / 'shapefile.py'}"
SAMPLE_EVERY_S = 0.5
_ACTIVE_STATES = ("spawning", "running")


@dataclass(frozen=True)
class LoadSettings:
    """What to run. `profile` must have `users` and `duration_s` (see `check_settings`);
    `workers` 0 runs one Locust process, N > 0 one master and N workers."""

    host: str
    profile: Profile
    workers: int = 0
    platform: Path | None = None
    #: Master of workers on other machines: expect `workers` of them at
    #: `master_bind_host:master_port` instead of starting them; they send their rows.
    remote_workers: bool = False
    master_bind_host: str = "127.0.0.1"
    master_port: int = 5557
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    prometheus_sd_file: Path | None = None
    batch_rows: int = BATCH_ROWS
    batch_seconds: float = BATCH_SECONDS
    keep_parts: bool = False
    connect_timeout_s: float = 2.0
    startup_timeout_s: float = 30.0
    stop_timeout_s: float = 15.0


@dataclass(frozen=True)
class Progress:
    """A progress report during the run (from the Locust master's own stats)."""

    elapsed_s: float
    users: int
    requests: int
    failures: int
    rps: float
    state: str


@dataclass(frozen=True)
class LoadResult:
    """Where the run's files are and what `load.json` says (`summary` is its content)."""

    out_dir: Path
    timeline: Path
    load_json: Path
    requests: int
    failures: int
    wrong_answers: int
    by_kind: dict[str, int]
    locust_requests: int | None
    cpu_max_percent: float
    cpu_mean_percent: float
    saturated: bool
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rps: float
    interrupted: str | None
    summary: dict[str, Any] = field(repr=False)


# ------------------------------------------------------------------------- checks
def _host_port(host: str) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadConfigError(
            f"--host: expected an http(s) URL like http://127.0.0.1:18080, got {host!r}"
        )
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise LoadConfigError(f"--host: bad port in {host!r}") from exc
    return parts.hostname, port


def check_settings(settings: LoadSettings) -> None:
    """Raise `LoadConfigError` for input that cannot run (nothing is contacted)."""
    _host_port(settings.host)
    settings.profile.check_runnable()
    if settings.workers < 0:
        raise LoadConfigError(f"--workers: must be 0 or more, got {settings.workers}")
    if not 0 <= settings.metrics_port <= 65535:
        raise LoadConfigError(f"--metrics-port: must be 0..65535, got {settings.metrics_port}")
    if settings.prometheus_sd_file is not None and not settings.metrics_port:
        raise LoadConfigError("--prometheus-sd-file: needs --metrics-port (the target to list)")
    if settings.batch_rows <= 0 or settings.batch_seconds <= 0:
        raise LoadConfigError(
            f"timeline batch: must be positive, got {settings.batch_rows} rows, "
            f"{settings.batch_seconds} s"
        )


def check_reachable(host: str, timeout_s: float) -> None:
    """A TCP connect to the host's address and port; `LoadConfigError` when it fails."""
    address, port = _host_port(host)
    try:
        with socket.create_connection((address, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise LoadConfigError(
            f"--host: {host!r} is not reachable ({address}:{port}: {exc.strerror or exc}); "
            "no load was sent"
        ) from exc


# ------------------------------------------------------------------------- processes
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: IO[bytes]
    log_path: Path


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAMEDAY_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn(name: str, argv: list[str], log_path: Path) -> _Proc:
    log = log_path.open("wb")
    try:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            start_new_session=True,  # a terminal's Ctrl-C reaches us; we stop them in order
        )
    except OSError:
        log.close()
        raise
    return _Proc(name, popen, log, log_path)


def _stop_all(procs: list[_Proc], grace_s: float) -> None:
    """SIGTERM what still runs, wait up to `grace_s`, SIGKILL the rest; reap all."""
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.terminate()
    deadline = time.monotonic() + grace_s
    for proc in procs:
        try:
            proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait()
        proc.log.close()


def _log_tail(proc: _Proc, lines: int = 15) -> str:
    try:
        text = proc.log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@contextmanager
def _stop_signals() -> Iterator[list[str]]:
    """Turn SIGINT/SIGTERM into a request to stop (a list that gets the signal's name),
    so the loop can stop Locust in order; only in the main thread."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        received.append(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, previous in old.items():
            signal.signal(sig, previous)


# ------------------------------------------------------------------------- the run
def _commands(settings: LoadSettings, work: Path, timeline: Path) -> list[tuple[str, list[str]]]:
    base = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        LOCUSTFILES,
        "--headless",
        "--host",
        settings.host,
        "--load-profile",
        str(work / "profile.json"),
        *(["--platform", str(settings.platform)] if settings.platform else []),
        "--exit-code-on-error",
        "0",
        "--stop-timeout",
        "0",
        "--only-summary",
    ]
    # The shape file ends the run after duration_s (Locust ignores -t with a shape).
    head = ["--json-file", str(work / "stats"), "--progress-file", str(work / "progress.json")]
    if settings.metrics_port:
        head += ["--metrics-port", str(settings.metrics_port)]
        head += ["--metrics-host", settings.metrics_host]
    recording = [
        "--timeline",
        str(timeline),
        "--timeline-parts",
        str(work / "parts"),
        "--timeline-batch-rows",
        str(settings.batch_rows),
        "--timeline-batch-seconds",
        str(settings.batch_seconds),
    ]
    if settings.workers == 0:
        return [("locust", base + head + recording)]
    if settings.remote_workers:
        return [
            (
                "master",
                base
                + head
                + recording
                + [
                    "--timeline-from-workers",
                    "--master",
                    "--master-bind-host",
                    settings.master_bind_host,
                    "--master-bind-port",
                    str(settings.master_port),
                    "--expect-workers",
                    str(settings.workers),
                    "--expect-workers-max-wait",
                    str(int(settings.startup_timeout_s)),
                ],
            )
        ]
    port = _free_port()
    master = (
        base
        + head
        + [
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(settings.workers),
            "--expect-workers-max-wait",
            str(int(settings.startup_timeout_s)),
        ]
    )
    worker = (
        base + recording + ["--worker", "--master-host", "127.0.0.1", "--master-port", str(port)]
    )
    return [("master", master)] + [(f"worker-{i + 1}", worker) for i in range(settings.workers)]


def _read_progress(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def run(
    settings: LoadSettings,
    out_dir: Path,
    progress: Callable[[Progress], None] | None = None,
    progress_every_s: float = 2.0,
) -> LoadResult:
    """Run the load and write the load directory; see the module docstring.

    Raises `LoadConfigError` before anything starts for bad input or an unreachable host,
    and `LoadRunError` when Locust fails or does not finish in time (its processes are
    stopped and reaped first). `progress` is called about every `progress_every_s`.
    """
    check_settings(settings)
    check_reachable(settings.host, settings.connect_timeout_s)
    profile = with_platform_canaries(settings.profile, settings.platform)
    settings = dataclasses.replace(settings, profile=profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    timeline = out_dir / "timeline.parquet"
    load_json = out_dir / "load.json"
    work = out_dir / "loadgen"
    for stale in (timeline, load_json):
        stale.unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    (work / "profile.json").write_text(json.dumps(profile.to_dict(with_golden_scores=True)))

    procs: list[_Proc] = []
    sampler = CpuSampler()
    started_at = time.time()
    started = time.monotonic()
    deadline = started + settings.startup_timeout_s + (profile.duration_s or 0) + 30.0
    interrupted: str | None = None
    try:
        with _stop_signals() as received:
            for name, argv in _commands(settings, work, timeline):
                procs.append(_spawn(name, argv, work / f"{name}.log"))
            if settings.prometheus_sd_file is not None:
                write_sd_file(
                    settings.prometheus_sd_file,
                    f"{settings.metrics_host}:{settings.metrics_port}",
                    {"job": "gameday-loadgen", "gameday_load_dir": str(out_dir)},
                )
            interrupted = _watch(
                procs, work, sampler, deadline, received, progress, progress_every_s
            )
            if interrupted:
                _stop_in_order(procs, settings.stop_timeout_s)
            if interrupted or procs[0].popen.returncode == 0:
                _wait_workers(procs, settings.stop_timeout_s)
    finally:
        _stop_all(procs, settings.stop_timeout_s)
        if settings.prometheus_sd_file is not None:
            remove_sd_file(settings.prometheus_sd_file)
    ended_at = time.time()
    main = procs[0]
    if not interrupted and main.popen.returncode != 0:
        raise LoadRunError(
            f"locust ({main.name}) exited with code {main.popen.returncode}; "
            f"log {main.log_path}:\n{_log_tail(main)}"
        )

    # Remote workers sent their rows to the master, which wrote the timeline itself.
    local_workers = 0 if settings.remote_workers else settings.workers
    merged = _collect_timeline(timeline, work / "parts", local_workers)
    if not settings.keep_parts:
        shutil.rmtree(work / "parts", ignore_errors=True)
    table = read_timeline(timeline)
    summary = _summary(
        settings, table, sampler.summary(), work, started_at, ended_at, interrupted, merged.skipped
    )
    tmp = load_json.with_name("load.json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, load_json)
    return LoadResult(
        out_dir=out_dir,
        timeline=timeline,
        load_json=load_json,
        requests=summary["requests"],
        failures=summary["failures"],
        wrong_answers=summary["wrong_answers"],
        by_kind=summary["by_kind"],
        locust_requests=summary["locust_requests"],
        cpu_max_percent=summary["cpu_max_percent"],
        cpu_mean_percent=summary["cpu_mean_percent"],
        saturated=summary["saturated"],
        p50_ms=summary["p50_ms"],
        p95_ms=summary["p95_ms"],
        p99_ms=summary["p99_ms"],
        rps=summary["rps"],
        interrupted=interrupted,
        summary=summary,
    )


def with_platform_canaries(profile: Profile, platform: Path | None) -> Profile:
    """`profile` with the platform file's golden canaries when it has none of its own
    (before the profile is written: a profile without golden scores has canaries off)."""
    if platform is None or profile.golden_scores:
        return profile
    from infra.errors import ConfigError
    from infra.platform import golden_scores, load_platform

    try:
        scores = golden_scores(load_platform(platform), platform)
    except ConfigError as exc:
        raise LoadConfigError(str(exc)) from exc
    if not scores:
        return profile
    return dataclasses.replace(profile, golden=str(platform), golden_scores=scores)


def run_worker(
    settings: LoadSettings, master_host: str, master_port: int, work: Path, timeout_s: float
) -> int:
    """Run one Locust worker for a master on another machine until the master ends the
    run (at most `timeout_s`); its rows go to the master. Returns Locust's exit code.

    Raises LoadConfigError for an unreachable host or master, LoadRunError on timeout.
    """
    check_settings(settings)
    check_reachable(settings.host, settings.connect_timeout_s)
    check_reachable(f"http://{master_host}:{master_port}", settings.connect_timeout_s)
    work.mkdir(parents=True, exist_ok=True)
    (work / "profile.json").write_text(
        json.dumps(settings.profile.to_dict(with_golden_scores=True))
    )
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        LOCUSTFILES,
        "--host",
        settings.host,
        "--load-profile",
        str(work / "profile.json"),
        *(["--platform", str(settings.platform)] if settings.platform else []),
        "--worker",
        "--master-host",
        master_host,
        "--master-port",
        str(master_port),
        "--timeline-via-master",
        "--timeline-batch-seconds",
        str(settings.batch_seconds),
    ]
    proc = _spawn("worker", argv, work / "worker.log")
    try:
        return proc.popen.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise LoadRunError(f"the worker did not end within {timeout_s:.0f} s") from exc
    finally:
        _stop_all([proc], settings.stop_timeout_s)


def _collect_timeline(timeline: Path, parts: Path, workers: int) -> MergeResult:
    """One sorted timeline from the workers' parts, or the single process's own file;
    batches a killed process left behind are merged in."""
    leftovers = parts.is_dir() and any(parts.rglob("*.parquet"))
    if workers == 0 and timeline.is_file() and not leftovers:
        return MergeResult(timeline, -1, 1, [])
    return merge(timeline, [timeline, parts] if workers == 0 else [parts])


def _watch(
    procs: list[_Proc],
    work: Path,
    sampler: CpuSampler,
    deadline: float,
    received: list[str],
    progress: Callable[[Progress], None] | None,
    progress_every_s: float,
) -> str | None:
    """Sample and report until the main process ends; the signal's name if one came."""
    main = procs[0]
    started = time.monotonic()
    last_report = started
    last_requests = 0
    active = False
    while main.popen.poll() is None:
        if received:
            return received[0]
        now = time.monotonic()
        if now > deadline:
            raise LoadRunError(
                f"locust did not finish in time (gave it {deadline - started:.0f} s); "
                f"log {main.log_path}:\n{_log_tail(main)}"
            )
        for proc in procs[1:]:
            code = proc.popen.poll()
            if code is not None and code != 0 and not active:
                raise LoadRunError(
                    f"locust {proc.name} exited with code {code} before the load started; "
                    f"log {proc.log_path}:\n{_log_tail(proc)}"
                )
        state = _read_progress(work / "progress.json")
        active = state is not None and state.get("state") in _ACTIVE_STATES
        sampler.sample({p.name: p.popen.pid for p in procs}, active)
        if progress is not None and state is not None and now - last_report >= progress_every_s:
            requests = int(state.get("requests", 0))
            rps = (requests - last_requests) / (now - last_report)
            last_report, last_requests = now, requests
            progress(
                Progress(
                    elapsed_s=round(now - started, 1),
                    users=int(state.get("users", 0)),
                    requests=requests,
                    failures=int(state.get("failures", 0)),
                    rps=round(rps, 1),
                    state=str(state.get("state", "?")),
                )
            )
        time.sleep(SAMPLE_EVERY_S)
    return received[0] if received else None


def _stop_in_order(procs: list[_Proc], grace_s: float) -> None:
    """Graceful stop: SIGTERM to the master (or the single process), which tells its
    workers to quit; every process writes its last batch on the way out."""
    main = procs[0]
    if main.popen.poll() is None:
        main.popen.terminate()
    with suppress(subprocess.TimeoutExpired):
        main.popen.wait(timeout=grace_s)


def _wait_workers(procs: list[_Proc], grace_s: float) -> None:
    """Workers quit when their master does; give them time to write their parts."""
    deadline = time.monotonic() + grace_s
    for proc in procs[1:]:
        try:
            proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.popen.terminate()


# ------------------------------------------------------------------------- summary
def _locust_stats(work: Path) -> tuple[int | None, int | None]:
    try:
        entries = json.loads((work / "stats.json").read_text())
    except (OSError, ValueError):
        return None, None
    return (
        sum(int(e.get("num_requests", 0)) for e in entries),
        sum(int(e.get("num_failures", 0)) for e in entries),
    )


def _latency(table: pa.Table) -> dict[str, float | None]:
    p50, p95, p99 = percentiles(table.column("latency_ms"), (50, 95, 99))
    return {"p50_ms": _round(p50), "p95_ms": _round(p95), "p99_ms": _round(p99)}


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _span_s(table: pa.Table) -> float:
    if table.num_rows == 0:
        return 0.0
    t_start = table.column("t_start")
    ends = pc.add(t_start, pc.divide(table.column("latency_ms"), 1000.0))
    return float(pc.max(ends).as_py() - pc.min(t_start).as_py())


def _count(column: pa.ChunkedArray, value: bool) -> int:
    return int(pc.sum(pc.equal(column, value)).as_py() or 0)


def _summary(
    settings: LoadSettings,
    table: pa.Table,
    cpu: CpuSummary,
    work: Path,
    started_at: float,
    ended_at: float,
    interrupted: str | None,
    skipped: list[str],
) -> dict[str, Any]:
    span = _span_s(table)
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        rows = table.filter(pc.equal(table.column("kind"), kind))
        kind_span = _span_s(rows)
        per_kind[kind] = {
            "requests": rows.num_rows,
            "failures": _count(rows.column("ok"), False),
            "wrong_answers": _count(rows.column("correct"), False),
            "rps": round(rows.num_rows / kind_span, 2) if kind_span > 0 else 0.0,
            **_latency(rows),
        }
    locust_requests, locust_failures = _locust_stats(work)
    t_start = table.column("t_start")
    return {
        "version": LOAD_JSON_VERSION,
        "host": settings.host,
        "profile": settings.profile.to_dict(),
        "users": settings.profile.users,
        "duration_s": settings.profile.duration_s,
        "workers": settings.workers,
        "started_at": round(started_at, 6),
        "ended_at": round(ended_at, 6),
        "first_request_at": pc.min(t_start).as_py(),
        "last_request_at": pc.max(t_start).as_py(),
        "interrupted": interrupted,
        "timeline": "timeline.parquet",
        "timeline_batch": {"rows": settings.batch_rows, "seconds": settings.batch_seconds},
        "requests": table.num_rows,
        "failures": _count(table.column("ok"), False),
        "wrong_answers": _count(table.column("correct"), False),
        "by_kind": {kind: per_kind[kind]["requests"] for kind in KINDS},
        "per_kind": per_kind,
        "locust_requests": locust_requests,
        "locust_failures": locust_failures,
        "unreadable_batches": skipped,
        "rps": round(table.num_rows / span, 2) if span > 0 else 0.0,
        **_latency(table),
        "cpu_max_percent": cpu.max_percent,
        "cpu_mean_percent": cpu.mean_percent,
        "cpu_per_process": cpu.per_process,
        "cpu_samples": cpu.samples,
        "cpu_how": (
            f"user+system CPU of each Locust process from /proc every {SAMPLE_EVERY_S} s while "
            "the load ran, % of one core; max: highest 1 s average of any process; mean: the "
            "busiest process over the run"
        ),
        "saturated": cpu.saturated,
        "saturation_threshold_percent": SATURATION_PERCENT,
    }
