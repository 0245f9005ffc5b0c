"""Chaos Toolkit controls of a drill: load, observation window, guardrails, measurement.

Declared in every catalog experiment::

    controls:
      - name: gameday-drill
        provider:
          type: python
          module: experiments.controls
          arguments: {users: 24, baseline_seconds: 15, observe_seconds: 45, ...}

- before the method: start the load generator in the world's edge namespace (step up
  to the base load) and hold a baseline; start the guardrails and the live progress;
- after the method: keep observing until `observe_seconds` after the last fault, stop
  the load (the timeline is flushed), and measure the run into `measurements.json`, so
  the steady-state hypothesis after the method checks measured figures;
- after the experiment (every exit path): stop whatever still runs.

Guardrails (stop conditions): when the error ratio of a jurisdiction the drill must not
touch passes `guard_error_ratio`, or the drill runs past `time_limit_seconds`, the
control writes `guardrail.json` and interrupts the experiment; Chaos Toolkit then runs
the rollbacks.

Everything about the platform comes from its platform file (configuration
`gameday_platform_file`, else `$GAMEDAY_PLATFORM_FILE`, else the run directory's
`platform.yaml`, else the reference platform's): the URLs, the jurisdictions, the
router counters the live view reads. With a `local` driver the controls run inside the
local world (`gameday run` does that, or `gameday testbed exec -- chaos run FILE`) and
the load runs in its edge namespace; with any other driver the load runs from this
machine against the platform's URLs.

Any Chaos Toolkit action of the method that is not one of gameday's own is recorded as
a fault, and every action of the rollbacks as a revert (`experiments.activities`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.activities import record_for
from infra.local.describe import REFERENCE_PLATFORM
from infra.platform import Platform, load_platform
from infra.types import FaultRecord, append_event, read_event_log
from probes.prometheus import PromClient, PrometheusUnavailable

__all__ = [
    "after_activity_control",
    "after_experiment_control",
    "after_method_control",
    "before_method_control",
    "before_rollback_control",
    "configure_control",
]

LOAD_METRICS_PORT = 9646
POLL_SECONDS = 1.0


@dataclass
class _Drill:
    run_dir: Path
    settings: dict[str, Any]
    started: float = field(default_factory=time.time)
    load: subprocess.Popen[bytes] | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    phase: str = "baseline"
    breach: dict[str, Any] | None = None
    measured: bool = False
    platform_file: Path = REFERENCE_PLATFORM
    platform: Platform | None = None
    recorded: list[FaultRecord] = field(default_factory=list)


_STATE: dict[str, _Drill] = {}


def _say(message: str) -> None:
    print(f"gameday: {message}", file=sys.stderr, flush=True)


def _interrupt(message: str) -> Exception:
    from chaoslib.exceptions import InterruptExecution

    error: Exception = InterruptExecution(message)
    return error


def _run_dir(configuration: dict[str, Any] | None) -> Path:
    value = (configuration or {}).get("gameday_run_dir")
    if not value:
        raise _interrupt("configuration gameday_run_dir is required")
    path = Path(str(value)).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _platform_file(configuration: dict[str, Any] | None, run_dir: Path) -> Path:
    """The platform file the drill follows (see the module docstring)."""
    named = (configuration or {}).get("gameday_platform_file") or os.environ.get(
        "GAMEDAY_PLATFORM_FILE"
    )
    if named:
        return Path(str(named)).resolve()
    own = run_dir / "platform.yaml"
    return own if own.exists() else REFERENCE_PLATFORM


def _platform(drill: _Drill) -> Platform:
    if drill.platform is None:
        drill.platform = load_platform(drill.platform_file)
    return drill.platform


def _prometheus(drill: _Drill, configuration: dict[str, Any] | None) -> str | None:
    named = (configuration or {}).get("gameday_prometheus_url")
    if named:
        return str(named)
    platform = _platform(drill)
    return platform.prometheus.url if platform.prometheus else None


def _router(drill: _Drill, configuration: dict[str, Any] | None) -> str:
    return str((configuration or {}).get("gameday_router_url") or _platform(drill).traffic.base_url)


def configure_control(
    configuration: dict[str, Any] | None = None,
    users: int = 24,
    baseline_seconds: float = 15.0,
    observe_seconds: float = 45.0,
    guard_jurisdictions: str = "",
    guard_error_ratio: float = 0.05,
    time_limit_seconds: float = 300.0,
    **_: Any,
) -> None:
    """Remember the drill's settings for the other controls.

    `GAMEDAY_BASELINE_SECONDS` and `GAMEDAY_OBSERVE_SECONDS` in the environment override
    the experiment's baseline and observation window (quick runs, e.g. in tests).
    """
    baseline_seconds = float(os.environ.get("GAMEDAY_BASELINE_SECONDS", baseline_seconds))
    observe_seconds = float(os.environ.get("GAMEDAY_OBSERVE_SECONDS", observe_seconds))
    _STATE.clear()
    run_dir = _run_dir(configuration)
    _STATE["drill"] = _Drill(
        run_dir=run_dir,
        platform_file=_platform_file(configuration, run_dir),
        settings={
            "users": int(users),
            "baseline_seconds": float(baseline_seconds),
            "observe_seconds": float(observe_seconds),
            "guard_jurisdictions": [
                j.strip() for j in str(guard_jurisdictions or "").split(",") if j.strip()
            ],
            "guard_error_ratio": float(guard_error_ratio),
            "time_limit_seconds": float(time_limit_seconds),
        },
    )


def _drill(configuration: dict[str, Any] | None) -> _Drill:
    if "drill" not in _STATE:
        configure_control(configuration)
    return _STATE["drill"]


# ------------------------------------------------------------------------ Prometheus
def _router_view(prometheus: PromClient, platform: Platform) -> dict[str, dict[str, Any]]:
    """Per jurisdiction: success ratio and serving regions over the last 3 s (from the
    router counters the platform file names; serving regions only for HAProxy's)."""
    view: dict[str, dict[str, Any]] = {}
    now = time.time()
    assert platform.prometheus is not None
    counters = platform.prometheus.router
    label, prefix = counters.group_label, counters.group_prefix
    responses = prometheus.query(
        f'sum by ({label}, code) (increase({counters.metric}{{{label}=~"{prefix}.+"}}[3s]))',
        now,
    )
    for row in responses:
        jurisdiction = row["metric"].get(label, "").removeprefix(prefix)
        entry = view.setdefault(jurisdiction, {"ok": 0.0, "all": 0.0, "serving": []})
        count = float(row["value"][1])
        entry["all"] += count
        if row["metric"].get("code") == counters.success_code:
            entry["ok"] += count
    servers = counters.metric.replace("_backend_", "_server_")
    serving = (
        prometheus.query(
            f"sum by ({label}, server) (increase("
            f'{servers}{{{label}=~"{prefix}.+", code="{counters.success_code}"}}[3s])) > 0',
            now,
        )
        if servers != counters.metric
        else []
    )
    for row in serving:
        jurisdiction = row["metric"].get(label, "").removeprefix(prefix)
        view.setdefault(jurisdiction, {"ok": 0.0, "all": 0.0, "serving": []})
        view[jurisdiction]["serving"].append(row["metric"]["server"])
    for entry in view.values():
        entry["ratio"] = entry["ok"] / entry["all"] if entry["all"] else None
        entry["serving"].sort()
    return view


def _last_fault_at(run_dir: Path) -> float | None:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return None
    times = [
        r.applied_at
        for r in read_event_log(path).records
        if r.type == "fault" and r.applied_at is not None
    ]
    return max(times) if times else None


def _watch(drill: _Drill, prometheus: str | None) -> None:
    """Live progress and guardrails, once a second until told to stop."""
    limit = drill.settings["time_limit_seconds"]
    guarded = drill.settings["guard_jurisdictions"]
    ratio_floor = 1.0 - drill.settings["guard_error_ratio"]
    last_print = 0.0
    # The probe module's client: one try, a timeout, nothing recorded (polled each second).
    # Without a Prometheus only the time limit is watched.
    client = PromClient(prometheus, timeout=2.0, record=False) if prometheus else None
    platform = _platform(drill)
    with contextlib.closing(client) if client else contextlib.nullcontext():
        while not drill.stop.wait(POLL_SECONDS):
            now = time.time()
            if now - drill.started > limit and drill.breach is None:
                _breach(drill, "time-limit", f"the drill passed its time limit of {limit:.0f} s")
                return
            if client is None:
                continue
            try:
                view = _router_view(client, platform)
            except PrometheusUnavailable:
                continue
            fault_at = _last_fault_at(drill.run_dir)
            if now - last_print >= 2.0:
                since = f"t+{now - fault_at:5.1f}s" if fault_at else "no fault yet"
                parts = []
                for jurisdiction, entry in sorted(view.items()):
                    ratio = "  n/a" if entry["ratio"] is None else f"{entry['ratio']:5.1%}"
                    parts.append(f"{jurisdiction} {ratio} via {','.join(entry['serving']) or '-'}")
                _say(f"[{drill.phase}] {since}  " + "  ".join(parts))
                last_print = now
            if fault_at is None:
                continue
            for jurisdiction in guarded:
                guard = view.get(jurisdiction)
                if guard and guard["ratio"] is not None and guard["ratio"] < ratio_floor:
                    _breach(
                        drill,
                        "blast-radius",
                        f"jurisdiction {jurisdiction!r} success ratio {guard['ratio']:.1%} "
                        f"fell below {ratio_floor:.1%}: the fault reached beyond its plan",
                    )
                    return


def _breach(drill: _Drill, kind: str, message: str) -> None:
    drill.breach = {"guardrail": kind, "message": message, "at": time.time()}
    (drill.run_dir / "guardrail.json").write_text(json.dumps(drill.breach, indent=2) + "\n")
    _say(f"GUARDRAIL: {message}; aborting and rolling back")
    # chaoslib turns SIGUSR1 into an interruption that still runs the rollbacks.
    os.kill(os.getpid(), signal.SIGUSR1)


# ------------------------------------------------------------------------ load
def _start_load(drill: _Drill, configuration: dict[str, Any] | None) -> None:
    settings = drill.settings
    platform = _platform(drill)
    ramp = max(1, settings["users"] // 4)
    profile_doc: dict[str, Any] = {
        "version": 1,
        "shape": "step",
        "users": settings["users"],
        "step": {"users": ramp, "seconds": 1},
        "mix": {
            # Enough of each kind per jurisdiction that every 1 s window holds
            # the probes' min_requests (predict ~40/s, write ~20/s, canary
            # ~15/s per jurisdiction at 24 users).
            "predict": {"weight": 8, "rate": 10},
            "write": {"weight": 4, "rate": 10},
            "canary": {"weight": 3, "rate": 10},
        },
        "timeout_s": 2,
    }
    prefix: list[str] = []
    sd_dir: Path | None = None
    if platform.driver == "local":
        from infra.local import world

        base = (configuration or {}).get("gameday_home")
        home = Path(str(base)) if base else world.home()
        golden = home / "world" / "registry" / "golden.json"
        if not (platform.canaries.file or platform.canaries.entities):
            profile_doc["golden"] = str(golden)
        sd_dir = home / "world" / "nodes" / "edge" / "loadgen-targets"
        prefix = world.node_prefix("edge", Path(str(base)) if base else None)
    profile = drill.run_dir / "load-profile.yaml"
    profile.write_text(json.dumps(profile_doc))
    duration = settings["time_limit_seconds"]
    argv = [
        *prefix,
        sys.executable,
        "-m",
        "experiments.cli",
        "load",
        "--host",
        _router(drill, configuration),
        "--platform",
        str(drill.platform_file),
        "--duration",
        str(int(duration)),
        "--out",
        str(drill.run_dir),
        "--profile",
        str(profile),
        "--metrics-port",
        str(LOAD_METRICS_PORT),
    ]
    if sd_dir is not None and sd_dir.is_dir():
        argv += ["--prometheus-sd-file", str(sd_dir / "drill.json")]
    log = (drill.run_dir / "loadgen.log").open("ab")
    drill.load = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    log.close()


def _stop_load(drill: _Drill, timeout: float = 60.0) -> None:
    if drill.load is None or drill.load.poll() is not None:
        return
    drill.load.send_signal(signal.SIGTERM)  # the runner flushes the last batch on SIGTERM
    try:
        drill.load.wait(timeout)
    except subprocess.TimeoutExpired:
        drill.load.kill()
        drill.load.wait(5)


def stop_load(timeout: float = 10.0) -> None:
    """Stop this drill's load generator now, in order (its owner is gone); idempotent."""
    drill = _STATE.get("drill")
    if drill is not None:
        drill.stop.set()
        _stop_load(drill, timeout)


# ------------------------------------------------------------------------ controls
def before_method_control(
    context: dict[str, Any], configuration: dict[str, Any] | None = None, **_: Any
) -> None:
    """Start the load and the watchers, then hold the baseline before the fault."""
    del context
    drill = _drill(configuration)
    drill.started = time.time()
    _say(f"run directory {drill.run_dir}")
    world_json = drill.run_dir / "world.json"
    name = (configuration or {}).get("gameday_experiment")
    if name and not world_json.exists():
        # `gameday run` writes a full one; a plain `chaos run` gets at least the name the
        # scorecard's per-experiment gates are keyed by, and the model the platform
        # deployed (without it the digest check has nothing to compare with).
        from infra.local import world
        from infra.local.model import deployed_model

        base = (configuration or {}).get("gameday_home")
        registry = world.world_dir(Path(str(base)) if base else None) / "registry"
        doc = {"experiment": name, "platform": "local", "model": deployed_model(registry)}
        world_json.write_text(json.dumps(doc) + "\n")
    _start_load(drill, configuration)
    watcher = threading.Thread(
        target=_watch, args=(drill, _prometheus(drill, configuration)), daemon=True
    )
    watcher.start()
    drill.threads.append(watcher)
    baseline = drill.settings["baseline_seconds"]
    _say(f"load started ({drill.settings['users']} users); holding a {baseline:.0f} s baseline")
    deadline = time.monotonic() + baseline
    while time.monotonic() < deadline:
        assert drill.load is not None
        if drill.load.poll() is not None:
            tail = (drill.run_dir / "loadgen.log").read_text(errors="replace")[-800:]
            raise _interrupt(f"the load generator exited early:\n{tail}")
        time.sleep(0.2)
    drill.phase = "fault"


def _measure(drill: _Drill, configuration: dict[str, Any] | None) -> None:
    from probes.measure import Options, measure_run
    from probes.models import write_measurements

    if _platform(drill).driver != "local":
        # No world: the run directory's world.json and platform.yaml say everything.
        doc = measure_run(drill.run_dir, Options(prometheus_url=_prometheus(drill, configuration)))
        write_measurements(drill.run_dir, doc)
        drill.measured = True
        return
    from infra.local import world
    from probes.rpo import stores_from_world

    base = (configuration or {}).get("gameday_home")
    info = json.loads(
        ((Path(str(base)) if base else world.home()) / "world" / "world.json").read_text()
    )
    jurisdictions = sorted(
        {r.get("jurisdiction") for r in world.status(Path(str(base)) if base else None)["regions"]}
    )
    stores = stores_from_world(info, jurisdictions)
    doc = measure_run(
        drill.run_dir,
        Options(
            prometheus_url=_prometheus(drill, configuration),
            topology_path=Path(info["topology"]),
        ),
        write_stores=stores,
    )
    write_measurements(drill.run_dir, doc)
    drill.measured = True


def after_method_control(
    context: dict[str, Any], configuration: dict[str, Any] | None = None, **_: Any
) -> None:
    """Observe until `observe_seconds` after the last fault, stop the load, measure."""
    del context
    drill = _drill(configuration)
    drill.phase = "observe"
    fault_at = _last_fault_at(drill.run_dir) or time.time()
    until = fault_at + drill.settings["observe_seconds"]
    _say(f"observing until t+{drill.settings['observe_seconds']:.0f}s after the last fault")
    while time.time() < until:
        time.sleep(min(0.5, max(0.0, until - time.time())))
    drill.phase = "measure"
    drill.stop.set()
    _stop_load(drill)
    _say("load stopped; measuring")
    try:
        _measure(drill, configuration)
    except Exception as exc:  # measured again by the runner; say why here
        _say(f"measurement failed: {exc}")


def before_rollback_control(
    context: dict[str, Any], configuration: dict[str, Any] | None = None, **_: Any
) -> None:
    """From here on, an action that is not gameday's own is recorded as a revert."""
    del context
    _drill(configuration).phase = "rollback"


def after_activity_control(
    context: dict[str, Any],
    state: dict[str, Any] | None = None,
    configuration: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """Record an action of the method as a fault and one of the rollbacks as a revert
    (`experiments.activities`), unless it is one of gameday's own (they record
    themselves)."""
    drill = _drill(configuration)
    phase = {"fault": "method", "rollback": "rollback"}.get(drill.phase, "")
    record = record_for(
        context, state, phase, time.time(), _platform(drill).regions, drill.recorded
    )
    if record is None:
        return
    append_event(drill.run_dir / "events.jsonl", record)
    drill.recorded.append(record)
    what = "fault" if record.type == "fault" else "revert"
    _say(f"recorded the activity {record.fault!r} as a {what} on {record.target or '(no target)'}")


def after_experiment_control(
    context: dict[str, Any], configuration: dict[str, Any] | None = None, **_: Any
) -> None:
    """Every exit path: stop the watchers and the load (its timeline is kept)."""
    del context
    drill = _STATE.get("drill")
    if drill is None:
        return
    drill.stop.set()
    _stop_load(drill)
    for thread in drill.threads:
        thread.join(timeout=5)
    if not drill.measured:
        with contextlib.suppress(Exception):
            _measure(drill, configuration)
