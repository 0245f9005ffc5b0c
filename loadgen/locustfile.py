"""gameday's locustfile: the users, the timeline recorder and the load metrics.

Works on its own with the web UI: `locust -f loadgen/locustfile.py --host URL`
(default host: the local platform's router, http://127.0.0.1:18080). Options it adds:

  --load-profile FILE       YAML load profile (env GAMEDAY_LOAD_PROFILE)
  --platform FILE           platform file: jurisdictions, API shape, entity ids, canaries
                            (env GAMEDAY_PLATFORM_FILE; default: the reference platform)
  --golden FILE             golden scores for canaries (env GAMEDAY_GOLDEN)
  --timeline PATH           record every request to this Parquet file (env GAMEDAY_TIMELINE);
                            without it nothing is recorded
  --timeline-parts DIR      where batches and worker parts go (default PATH.parts)
  --timeline-batch-rows N / --timeline-batch-seconds S   batch size (default 5000 / 1 s)
  --metrics-port P          serve Prometheus counters on P (master or single process; 0: off)
  --metrics-host ADDR       address for them (default 127.0.0.1)
  --progress-file PATH      JSON progress written every second (used by the runner)
  --timeline-via-master     (worker) send the rows to the master instead of writing parts:
                            for workers on other machines
  --timeline-from-workers   (master) record the rows the workers send into --timeline

Add `loadgen/shapefile.py` (`-f loadgen/locustfile.py,loadgen/shapefile.py`) to follow the
profile's shape (step, soak) instead of Locust's user count and spawn rate.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import gevent
from locust import events
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from infra.errors import ConfigError
from infra.platform import Platform, golden_scores, load_platform, parse_platform
from loadgen.errors import LoadConfigError
from loadgen.metrics import RequestCounts
from loadgen.profile import Profile, load_golden, load_profile, parse_profile
from loadgen.timeline import BATCH_ROWS, BATCH_SECONDS, Recorder, row_from_request
from loadgen.users import CanaryUser, PredictUser, WriterUser, configure

__all__ = ["CanaryUser", "PredictUser", "WriterUser"]

log = logging.getLogger("gameday.loadgen")

# Key under which the master passes the effective profile (golden scores inline) to its
# workers: Locust copies the master's custom options to every worker when it spawns.
PUSHED_PROFILE = "gameday_profile_json"
PUSHED_PLATFORM = "gameday_platform_json"

_counts = RequestCounts()
_counting = False  # only when a metrics port (here or at the master) may serve them
_recorder: Recorder | None = None
# A worker on another machine ships its rows to the master (`--timeline-via-master`).
ROWS_MESSAGE = "gameday_rows"
_shipping: list[Any] = []
_runner_for_shipping: Any = None
_target: Path | None = None


def _listen(hook: Any, handler: Any) -> None:
    """Add a listener to a Locust event hook (Locust's hooks are not typed)."""
    hook.add_listener(handler)


def _add_arguments(parser: LocustArgumentParser) -> None:
    parser.add_argument(
        "--load-profile", default="", env_var="GAMEDAY_LOAD_PROFILE", help="YAML load profile"
    )
    parser.add_argument(
        "--golden", default="", env_var="GAMEDAY_GOLDEN", help="golden scores (JSON) for canaries"
    )
    parser.add_argument(
        "--platform",
        default="",
        env_var="GAMEDAY_PLATFORM_FILE",
        help="platform file (default: the reference platform)",
    )
    parser.add_argument(
        "--timeline",
        default="",
        env_var="GAMEDAY_TIMELINE",
        include_in_web_ui=False,
        help="record every request to this Parquet file",
    )
    parser.add_argument("--timeline-parts", default="", include_in_web_ui=False)
    parser.add_argument(
        "--timeline-batch-rows", type=int, default=BATCH_ROWS, include_in_web_ui=False
    )
    parser.add_argument(
        "--timeline-batch-seconds", type=float, default=BATCH_SECONDS, include_in_web_ui=False
    )
    parser.add_argument("--metrics-port", type=int, default=0, include_in_web_ui=False)
    parser.add_argument("--metrics-host", default="127.0.0.1", include_in_web_ui=False)
    parser.add_argument("--progress-file", default="", include_in_web_ui=False)
    parser.add_argument("--timeline-via-master", action="store_true", include_in_web_ui=False)
    parser.add_argument("--timeline-from-workers", action="store_true", include_in_web_ui=False)


def _platform_from_options(options: Any) -> tuple[Platform | None, dict[str, Any] | None]:
    """The platform named by `--platform` and its document (for the workers), or None."""
    path = getattr(options, "platform", "") or ""
    if not path:
        return None, None
    import yaml

    try:
        platform = load_platform(Path(path))
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except ConfigError as exc:
        raise LoadConfigError(str(exc)) from exc
    return platform, doc


def _profile_from_options(options: Any, platform: Platform | None = None) -> Profile:
    from dataclasses import replace

    path = getattr(options, "load_profile", "") or ""
    profile = load_profile(Path(path)) if path else parse_profile({}, source="defaults")
    golden = getattr(options, "golden", "") or ""
    if golden:
        profile = replace(profile, golden=golden, golden_scores=load_golden(Path(golden)))
    elif platform is not None and not profile.golden_scores:
        # The platform file's canaries, when neither the profile nor --golden has any.
        try:
            scores = golden_scores(platform, Path(options.platform))
        except ConfigError as exc:
            raise LoadConfigError(str(exc)) from exc
        if scores:
            profile = replace(profile, golden=options.platform, golden_scores=scores)
    return profile


def _record(
    response_time: float,
    response: Any = None,
    context: dict[str, Any] | None = None,
    exception: BaseException | None = None,
    start_time: float | None = None,
    **_: Any,
) -> None:
    """The `request` listener: one timeline row and one count per gameday request."""
    if not context or "kind" not in context:
        return
    if response is not None:
        status = response.status_code or 0
        headers = response.headers
        content = response.content if headers is not None else None
    else:
        status, headers, content = 0, None, None
    if start_time is None:
        start_time = time.time() - response_time / 1000.0
    row = row_from_request(start_time, response_time, status, exception, headers, content, context)
    if _counting:
        _counts.count(row[2], row[3], row[6] or "none", row[7], row[13] is False)
    if _recorder is not None:
        _recorder.add(row)
    elif _runner_for_shipping is not None:
        _shipping.append(row)


def _ship(**_: Any) -> None:
    """Send the rows gathered so far to the master (one message per batch)."""
    global _shipping
    if _runner_for_shipping is None or not _shipping:
        return
    rows, _shipping = _shipping, []
    _runner_for_shipping.send_message(ROWS_MESSAGE, rows)


def _ship_loop(seconds: float) -> None:
    while True:
        gevent.sleep(seconds)
        try:
            _ship()
        except Exception as exc:  # the master gone: the run ends with it
            log.warning("timeline: could not send rows to the master: %s", exc)


def _rows_from_worker(environment: Environment, msg: Any, **_: Any) -> None:
    del environment
    if _recorder is not None:
        for row in msg.data:
            _recorder.add(tuple(row))


def _flush(**_: Any) -> None:
    if _recorder is not None:
        _recorder.flush()


def _close(**_: Any) -> None:
    global _recorder
    recorder, _recorder = _recorder, None
    if recorder is None or _target is None:
        return
    result = recorder.close(_target)
    for problem in result.skipped:
        log.error("timeline: skipped unreadable batch %s", problem)
    log.info("timeline: %d rows in %s", result.rows, result.path)
    with contextlib.suppress(OSError):
        recorder.segments_dir.parent.rmdir()  # the parts folder, when nothing else is left


def _start_recorder(environment: Environment, options: Any) -> None:
    global _recorder, _target
    timeline = Path(options.timeline)
    parts = Path(options.timeline_parts) if options.timeline_parts else Path(f"{timeline}.parts")
    node = f"{socket.gethostname()}-{os.getpid()}"
    # A worker leaves its part for the merge; a single process writes the timeline itself.
    is_worker = isinstance(environment.runner, WorkerRunner)
    _target = parts / f"{node}.parquet" if is_worker else timeline
    _recorder = Recorder(
        parts / node,
        batch_rows=options.timeline_batch_rows,
        batch_seconds=options.timeline_batch_seconds,
    )
    _listen(environment.events.test_stop, _flush)
    _listen(environment.events.quitting, _flush)
    _listen(environment.events.quit, _close)
    atexit.register(_close)


def _write_progress(environment: Environment, path: Path, started: float) -> None:
    runner = environment.runner
    if runner is None:
        return
    total = runner.stats.total
    data = {
        "at": time.time(),
        "elapsed_s": round(time.monotonic() - started, 3),
        "state": runner.state,
        "users": runner.user_count,
        "requests": total.num_requests,
        "failures": total.num_failures,
        "rps": round(total.current_rps, 2),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _progress_loop(environment: Environment, path: Path) -> None:
    started = time.monotonic()
    while True:
        try:
            _write_progress(environment, path, started)
        except OSError as exc:
            log.warning("progress file %s: %s", path, exc)
        gevent.sleep(1.0)


def _on_init(environment: Environment, **_: Any) -> None:
    global _counting, _runner_for_shipping
    options = environment.parsed_options
    if options is None:  # used as a library: defaults, nothing recorded
        return
    try:
        platform, platform_doc = _platform_from_options(options)
        profile = _profile_from_options(options, platform)
        configure(profile, platform)
    except LoadConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        setattr(options, PUSHED_PROFILE, json.dumps(profile.to_dict(with_golden_scores=True)))
        if platform_doc is not None:
            setattr(options, PUSHED_PLATFORM, json.dumps(platform_doc))
        if options.timeline and options.timeline_from_workers:
            _start_recorder(environment, options)
            runner.register_message(ROWS_MESSAGE, _rows_from_worker)
    else:
        # No listener at all when nothing needs the rows: plain Locust (a worker always
        # counts, as its master may serve metrics).
        _counting = bool(options.metrics_port) or isinstance(runner, WorkerRunner)
        via_master = isinstance(runner, WorkerRunner) and options.timeline_via_master
        if options.timeline or _counting or via_master:
            _listen(environment.events.request, _record)
        if via_master:
            _runner_for_shipping = runner
            gevent.spawn(_ship_loop, options.timeline_batch_seconds)
            _listen(environment.events.test_stop, _ship)
            _listen(environment.events.quitting, _ship)
        elif options.timeline:
            _start_recorder(environment, options)
    if isinstance(runner, WorkerRunner):
        _listen(environment.events.report_to_master, _report_to_master)
    else:
        if isinstance(runner, MasterRunner):
            _listen(environment.events.worker_report, _worker_report)
        if options.metrics_port:
            from prometheus_client import start_http_server

            start_http_server(
                options.metrics_port, addr=options.metrics_host, registry=_counts.registry()
            )
            log.info("metrics on http://%s:%d/metrics", options.metrics_host, options.metrics_port)
        if options.progress_file:
            gevent.spawn(_progress_loop, environment, Path(options.progress_file))
    _listen(environment.events.test_start, _on_test_start)
    # Locust installs its SIGTERM handler only after a headless shape run has ended, so a
    # SIGTERM during one would kill the process with its last batch; until then, quit
    # gracefully here (Locust's own handler replaces this one later).
    gevent.signal_handler(signal.SIGTERM, _quit_on_sigterm, environment)


def _quit_on_sigterm(environment: Environment) -> None:
    log.info("Got SIGTERM: stopping the users, then writing the timeline")
    if environment.runner is not None:
        environment.runner.quit()


def _on_test_start(environment: Environment, **_: Any) -> None:
    """Apply the profile again: a worker takes the master's, the web UI may have changed
    the profile option."""
    options = environment.parsed_options
    if options is None:
        return
    try:
        if isinstance(environment.runner, WorkerRunner):
            # A worker on another machine has no platform file: the master sends its own.
            pushed_platform = getattr(options, PUSHED_PLATFORM, None)
            platform = (
                parse_platform(json.loads(pushed_platform), Path("platform from the master"))
                if pushed_platform
                else None
            )
            pushed = getattr(options, PUSHED_PROFILE, None)
            if pushed:
                configure(
                    parse_profile(json.loads(pushed), source="profile from the master"), platform
                )
            return
        platform, platform_doc = _platform_from_options(options)
        profile = _profile_from_options(options, platform)
        configure(profile, platform)
    except (LoadConfigError, ConfigError) as exc:
        log.error("%s (keeping the previous profile)", exc)
        return
    if isinstance(environment.runner, MasterRunner):
        setattr(options, PUSHED_PROFILE, json.dumps(profile.to_dict(with_golden_scores=True)))
        if platform_doc is not None:
            setattr(options, PUSHED_PLATFORM, json.dumps(platform_doc))


def _report_to_master(data: dict[str, Any], **_: Any) -> None:
    data["gameday_counts"] = _counts.drain()


def _worker_report(data: dict[str, Any], **_: Any) -> None:
    counts = data.get("gameday_counts")
    if counts:
        _counts.add(counts)


_listen(events.init_command_line_parser, _add_arguments)
_listen(events.init, _on_init)
