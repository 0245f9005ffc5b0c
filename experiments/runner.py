"""`gameday run`: a whole drill from the host: world, experiment, measurement, scorecard.

1. validate the experiment (as `chaos validate` does) and the gates, before anything
   starts;
2. bring the local world up (or reuse a running one with `reuse=True`);
3. for each repetition, run `experiments.drill` inside the world (Chaos Toolkit with the
   drill's controls: load, fault, observation, measurement, rollbacks) into its own run
   directory, with `world.json` describing the platform;
4. score the runs against the gates (scorecard files, history);
5. remove the world it brought up, on every exit path.

With `--platform FILE` (`run_platform_drill`) there is no world: the drill runs on this
machine against the platform file's URLs, faults come from the experiment's own
activities or the platform's driver, and every target is checked against the platform
file's allow-list before the first action. `plan_drill` prints the blast radius and
touches nothing.

Signals: SIGINT and SIGTERM are passed to the drill inside the world, which rolls back;
the runner waits for it (a second Ctrl-C does not skip that), then removes the world.
A signal that cannot be caught (SIGKILL: a CI job cancelled after its grace period, the
OOM killer) ends the runner without any of that; two lifelines, pipes whose write ends
only the runner holds, take over. The world the runner brought up reads EOF on its own
and removes itself (`world.up`); the drill reads EOF on its, applies no further fault,
reverts what is active (on a reused world, which stays up) and kills itself and its
load generator.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from infra.errors import ConfigError, GamedayError
from infra.local import world
from infra.local.model import deployed_model
from infra.local.topology import load_topology

if TYPE_CHECKING:
    from scorecards.gates import Gates

REPO = Path(__file__).resolve().parent.parent
Say = Callable[[str], None]


@dataclass(frozen=True)
class DrillResult:
    """What `gameday run` reports: the runs, the verdict and where the scorecard is."""

    experiment: str
    run_dirs: list[Path]
    verdict: str
    scorecard: Path
    phases: dict[str, float]
    interrupted: bool


def _git_sha() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO, check=False
    )
    return done.stdout.strip() or "unknown"


def _versions() -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
        except OSError:
            return "missing"
        return (
            (done.stdout or done.stderr).strip().splitlines()[0]
            if (done.stdout or done.stderr)
            else "unknown"
        )

    return {
        "python": platform.python_version(),
        "redis": first_line(["redis-server", "--version"]),
        "haproxy": first_line(["haproxy", "-v"]),
        "prometheus": first_line(["prometheus", "--version"]),
        "kernel": platform.release(),
    }


def _world_json(run_dir: Path, experiment: str, base: Path | None, reused: bool) -> None:
    info = world.require_world(base)
    raw = json.loads((info.directory / "world.json").read_text())
    topology = load_topology(Path(info.topology))
    doc = {
        "experiment": experiment,
        "platform": "local",
        "reused_testbed": reused,
        "topology": info.topology,
        "regions": [
            {
                "name": r.name,
                "provider": r.provider,
                "jurisdiction": r.jurisdiction,
                "role_at_start": r.role,
            }
            for r in topology.regions
        ],
        "data_groups": {g: settings.as_redis() for g, settings in topology.data_groups},
        "addresses": raw.get("addresses", {}),
        "urls": info.urls,
        "model": deployed_model(info.directory / "registry"),
        "git_sha": _git_sha(),
        "versions": _versions(),
        # The password is the world's own and dies with it; the run directory is
        # evidence to share, so it stays out.
    }
    (run_dir / "world.json").write_text(json.dumps(doc, indent=2) + "\n")
    # The reference platform described like any other: every layer reads this file.
    from infra.local.describe import platform_document, write_platform

    model = doc["model"]
    write_platform(
        run_dir / "platform.yaml",
        platform_document(
            topology,
            golden=info.directory / "registry" / "golden.json",
            digest=model.get("digest") if isinstance(model, dict) else None,
        ),
    )


@contextlib.contextmanager
def _forwarding(child: subprocess.Popen[bytes], say: Say) -> Iterator[list[int]]:
    """Pass SIGINT/SIGTERM to the drill inside the world; never die before it does."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        received.append(signum)
        if len(received) == 1:
            say(f"{signal.Signals(signum).name}: asking the drill to roll back")
        else:
            say("still rolling back; the world is removed after that")
        # To the whole group: nsenter ignores it (see `_shielded`), the drill handles it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while spawning: the child inherits the ignored dispositions.

    nsenter forks the drill into the world's PID namespace and waits; killed by a
    signal, it would leave us believing the drill ended while it still rolls back. The
    drill installs its own handlers, so ignoring at exec does not make it deaf.
    """
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _run_inside(
    experiment: Path,
    run_dir: Path,
    base: Path | None,
    say: Say,
    platform_file: Path | None = None,
) -> bool:
    """Run one drill in the world (or, with `platform_file`, on this machine); True when
    it was interrupted."""
    # The drill's lifeline: nsenter and env pass the read end on; the write end never
    # leaves this process (os.pipe is non-inheritable), so EOF means we are gone.
    reader, lifeline = os.pipe()
    drill = [
        sys.executable,
        "-m",
        "experiments.drill",
        "--experiment",
        str(experiment),
        "--run-dir",
        str(run_dir),
        "--lifeline",
        str(reader),
    ]
    if platform_file is not None:
        argv = [*drill, "--platform", str(platform_file)]
    else:
        argv = world.exec_argv(drill, base=base)
    try:
        # Its own process group: a terminal's Ctrl-C reaches only us, and we decide.
        with _shielded():
            child = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, start_new_session=True, pass_fds=[reader]
            )
    finally:
        os.close(reader)
    try:
        with _forwarding(child, say) as received:
            while True:
                try:
                    child.wait()
                    break
                except KeyboardInterrupt:  # pragma: no cover - handler replaces it
                    continue
    finally:
        os.close(lifeline)
    if child.returncode not in (0, None):
        say(f"the drill exited with code {child.returncode}")
    return bool(received)


def _measure_if_missing(run_dir: Path, base: Path | None, say: Say, in_world: bool = True) -> None:
    if (run_dir / "measurements.json").exists() or not (run_dir / "timeline.parquet").exists():
        return
    say("measuring (the drill did not)")
    argv = [sys.executable, "-m", "experiments.cli", "measure", str(run_dir)]
    if in_world:
        argv = world.exec_argv(argv, base=base)
    subprocess.run(argv, stdin=subprocess.DEVNULL, check=False)


def _check_store_settings(wanted_path: Path, base: Path | None) -> None:
    """Refuse to reuse a world whose stores run other settings than the experiment needs.

    A guarded drill on an unguarded world would measure the unguarded platform under
    the guarded drill's name.
    """
    info = world.require_world(base)
    running = load_topology(Path(info.topology))
    wanted = load_topology(wanted_path)
    if running.data_groups != wanted.data_groups:
        raise ConfigError(
            f"--reuse-testbed: the running world ({info.topology}) has other data group "
            f"settings than the experiment's topology {str(wanted_path)!r}: "
            f"`gameday testbed down`, then `gameday testbed up --topology {wanted_path}`"
        )


def run_drill(
    target: str,
    repeat: int = 1,
    out: Path | None = None,
    reuse: bool = False,
    gates_path: Path | None = None,
    history: Path | None = None,
    say: Say = lambda _m: None,
    clock: Callable[[], float] = time.time,
) -> DrillResult:
    """Run a drill end to end; raises ConfigError on bad input before anything starts."""
    from experiments import catalog
    from scorecards.gates import load_gates

    if repeat < 1:
        raise ConfigError(f"--repeat {repeat} must be at least 1")
    path = catalog.resolve(target)
    topology_path = catalog.topology_of(catalog.load(path), path)
    name = catalog.name_of(path)
    gates = load_gates(gates_path or catalog.CATALOG / "gates.yaml")
    base = world.home()
    running = world.read_info() is not None
    if running and not reuse:
        raise ConfigError(
            "a world is already running: pass --reuse-testbed to drill on it, "
            "or `gameday testbed down` first"
        )
    if reuse and not running:
        raise ConfigError("--reuse-testbed: no world is running (`gameday testbed up`)")
    if reuse and topology_path is not None:
        _check_store_settings(topology_path, base)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    out_dir = (out or base / "runs" / f"{stamp}-{name}").resolve()
    phases: dict[str, float] = {}
    run_dirs: list[Path] = []
    interrupted = False
    started = time.monotonic()
    info: world.WorldInfo | None = None
    try:
        if not reuse:
            say("bringing the local platform up")
            info = world.up(topology_path=topology_path, progress=lambda p: say(f"  {p}"))
        phases["world up"] = time.monotonic() - started
        for index in range(repeat):
            run_dir = out_dir if repeat == 1 else out_dir / f"run-{index + 1:02d}"
            run_dir.mkdir(parents=True, exist_ok=True)
            run_dirs.append(run_dir)
            _world_json(run_dir, name, None, reuse)
            say(f"drill {index + 1}/{repeat}: {name} -> {run_dir}")
            t0 = time.monotonic()
            interrupted = _run_inside(path, run_dir, None, say)
            _measure_if_missing(run_dir, None, say)
            phases[f"drill {index + 1}"] = time.monotonic() - t0
            if interrupted:
                break
    finally:
        if info is not None:
            t0 = time.monotonic()
            world.down(info=info)
            phases["world down"] = time.monotonic() - t0
            say("local platform removed")
    return _score_drill(
        name,
        run_dirs,
        out_dir,
        gates,
        history or base / "history.sqlite",
        phases,
        interrupted,
        say,
        clock,
    )


def _platform_world_json(
    run_dir: Path, experiment: str, described: Any, platform_file: Path
) -> None:
    """`world.json` of a drill on an existing platform: what the platform file says."""
    import shutil

    doc = {
        "experiment": experiment,
        "platform": described.name,
        "driver": described.driver,
        "platform_file": str(platform_file),
        "regions": [
            {"name": name, "provider": spec.provider, "jurisdiction": spec.jurisdiction}
            for name, spec in described.regions.items()
        ],
        "urls": {
            "router_url": described.traffic.base_url,
            "prometheus_url": described.prometheus.url if described.prometheus else None,
        },
        # The expected digest only from what the platform declares deploying (issue 9).
        "model": {
            "digest": described.model.digest if described.model else None,
            "source": f"{platform_file} model.digest",
        },
        "git_sha": _git_sha(),
        "versions": {"python": platform.python_version()},
    }
    (run_dir / "world.json").write_text(json.dumps(doc, indent=2) + "\n")
    shutil.copyfile(platform_file, run_dir / "platform.yaml")


def plan_drill(target: str, platform_file: Path) -> list[str]:
    """The blast radius of drilling `platform_file` with `target`; touches nothing.

    Raises ConfigError for a bad experiment, a bad platform file or a target the
    allow-list refuses.
    """
    from experiments import catalog
    from experiments.plan import blast_radius
    from infra.platform import load_platform

    path = catalog.resolve(target)
    experiment = catalog.load(path)
    platform = load_platform(platform_file)
    return [
        f"experiment {catalog.name_of(path)} ({path})",
        *blast_radius(experiment, platform, platform_file.resolve()),
    ]


def run_platform_drill(
    target: str,
    platform_file: Path,
    repeat: int = 1,
    out: Path | None = None,
    gates_path: Path | None = None,
    history: Path | None = None,
    say: Say = lambda _m: None,
    clock: Callable[[], float] = time.time,
) -> DrillResult:
    """Drill an existing platform: no world; every target checked before the first action."""
    from experiments import catalog
    from experiments.plan import check_allowed
    from infra.platform import load_platform
    from scorecards.gates import load_gates

    if repeat < 1:
        raise ConfigError(f"--repeat {repeat} must be at least 1")
    platform_file = platform_file.resolve()
    platform = load_platform(platform_file)
    path = catalog.resolve(target)
    experiment = catalog.load(path)
    check_allowed(experiment, platform, platform_file)
    name = catalog.name_of(path)
    gates = load_gates(gates_path or catalog.CATALOG / "gates.yaml")
    base = world.home()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    out_dir = (out or base / "runs" / f"{stamp}-{name}").resolve()
    phases: dict[str, float] = {}
    run_dirs: list[Path] = []
    interrupted = False
    for index in range(repeat):
        run_dir = out_dir if repeat == 1 else out_dir / f"run-{index + 1:02d}"
        run_dir.mkdir(parents=True, exist_ok=True)
        run_dirs.append(run_dir)
        _platform_world_json(run_dir, name, platform, platform_file)
        say(f"drill {index + 1}/{repeat}: {name} on {platform.name} -> {run_dir}")
        t0 = time.monotonic()
        interrupted = _run_inside(path, run_dir, None, say, platform_file=run_dir / "platform.yaml")
        _measure_if_missing(run_dir, None, say, in_world=False)
        phases[f"drill {index + 1}"] = time.monotonic() - t0
        if interrupted:
            break
    return _score_drill(
        name,
        run_dirs,
        out_dir,
        gates,
        history or base / "history.sqlite",
        phases,
        interrupted,
        say,
        clock,
    )


def _score_drill(
    name: str,
    run_dirs: list[Path],
    out_dir: Path,
    gates: Gates,
    history: Path,
    phases: dict[str, float],
    interrupted: bool,
    say: Say,
    clock: Callable[[], float],
) -> DrillResult:
    """Score the runs that produced a timeline; the repeated drill's card decides, if any."""
    from scorecards.scoring import score

    t0 = time.monotonic()
    ready = [d for d in run_dirs if (d / "timeline.parquet").exists()]
    if not ready:
        raise GamedayError(f"no run produced a timeline; see {out_dir}")
    outcome = score(ready, gates, clock=clock, history=history, progress=say)
    phases["scoring"] = time.monotonic() - t0
    deciding = outcome.drills[0] if outcome.drills else outcome.runs[-1]
    return DrillResult(
        name,
        run_dirs,
        outcome.verdict.value,
        deciding.out_dir / "scorecard.md",
        phases,
        interrupted,
    )


def verdict_exit_code(verdict: str) -> int:
    return {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}.get(verdict, 1)


def describe(result: DrillResult) -> dict[str, Any]:
    guardrails = []
    for run_dir in result.run_dirs:
        with contextlib.suppress(OSError, ValueError):
            guardrails.append(json.loads((run_dir / "guardrail.json").read_text()))
    return {
        "guardrails": guardrails,
        "experiment": result.experiment,
        "verdict": result.verdict,
        "scorecard": str(result.scorecard),
        "run_dirs": [str(d) for d in result.run_dirs],
        "phases_seconds": {k: round(v, 2) for k, v in result.phases.items()},
        "interrupted": result.interrupted,
    }
