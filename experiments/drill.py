"""One drill run inside the world: Chaos Toolkit runs the experiment, the controls do the rest.

Started by `gameday run` through `gameday testbed exec`: `python -m experiments.drill
--experiment FILE --run-dir DIR`. It writes `journal.json` into the run directory and,
whatever happens, makes sure no fault is left active and the load is stopped.

Signals: the first SIGINT or SIGTERM interrupts the experiment and Chaos Toolkit runs
the rollbacks; later ones are ignored until the rollbacks are done (a second Ctrl-C
never skips them).

`--lifeline FD`: the read end of a pipe whose write end only `gameday run` holds. Its
EOF means the runner is gone (SIGKILL included): from then on this process applies no
fault (`world.close_faults`), reverts whatever is active, and kills itself with its
whole process group (nsenter, the load generator).

`--platform FILE`: drill an existing platform (`gameday run --platform`): no world; the
URLs come from the platform file, and the net under the rollbacks (and the lifeline's
revert) goes through the platform's driver (`infra.actions.revert_all`). With driver
`none` nothing can be reverted here but by the experiment's own rollbacks: it says so.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from infra.local import world
from infra.platform import Platform, load_platform


class _Signals:
    """First SIGINT/SIGTERM: KeyboardInterrupt (Chaos Toolkit rolls back); then ignored."""

    def __init__(self) -> None:
        self.received = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        del frame
        self.received += 1
        if self.received == 1:
            print(
                f"gameday: {signal.Signals(signum).name}: interrupting the drill; rolling "
                "back every fault",
                file=sys.stderr,
                flush=True,
            )
            raise KeyboardInterrupt
        print(
            "gameday: still rolling back; the world is left whole before exiting",
            file=sys.stderr,
            flush=True,
        )


def run(experiment_path: Path, run_dir: Path, platform_file: Path | None = None) -> dict[str, Any]:
    """Run the experiment; returns the journal (also written to `run_dir/journal.json`).

    Without `platform_file`, on the local world (its endpoints as seen from here).
    """
    from chaoslib.experiment import run_experiment
    from chaoslib.loader import load_experiment

    env = {"GAMEDAY_RUN_DIR": str(run_dir), "GAMEDAY_EVENTS": str(run_dir / "events.jsonl")}
    if platform_file is None:
        endpoints = world.endpoints()
        env["GAMEDAY_ROUTER_URL"] = endpoints["router_url"]
        env["GAMEDAY_PROMETHEUS_URL"] = endpoints["prometheus_url"]
        own = run_dir / "platform.yaml"
        if own.exists():
            env["GAMEDAY_PLATFORM_FILE"] = str(own)
    else:
        platform = load_platform(platform_file)
        env["GAMEDAY_PLATFORM_FILE"] = str(platform_file)
        env["GAMEDAY_ROUTER_URL"] = platform.traffic.base_url
        env["GAMEDAY_PROMETHEUS_URL"] = platform.prometheus.url if platform.prometheus else ""
        env["GAMEDAY_PLATFORM"] = platform.driver
    os.environ.update(env)
    experiment = load_experiment(str(experiment_path))
    settings = {"runtime": {"rollbacks": {"strategy": "always"}}}
    journal: dict[str, Any] = run_experiment(experiment, settings=settings)
    (run_dir / "journal.json").write_text(json.dumps(journal, indent=2, default=str) + "\n")
    return journal


def _revert_on_platform(run_dir: Path, platform_file: Path) -> None:
    """revert-all through the platform's driver; driver `none` can only say so."""
    platform: Platform = load_platform(platform_file)
    if platform.driver == "none":
        _say(
            "driver none: gameday cannot revert the experiment's own activities; only its "
            "rollbacks do"
        )
        return
    from infra import actions

    actions.revert_all(
        configuration={
            "gameday_platform": platform.driver,
            "gameday_platform_file": str(platform_file),
            "gameday_events": str(run_dir / "events.jsonl"),
        }
    )


def _leave_nothing_active(run_dir: Path, platform_file: Path | None = None) -> None:
    # The experiment's rollbacks should have reverted everything; this is the net under
    # them (a rollback that failed, an interruption between fault and rollback).
    if platform_file is not None:
        try:
            _revert_on_platform(run_dir, platform_file)
        except Exception as exc:
            _say(f"could not revert through the platform's driver: {exc}")
        return
    try:
        active = world.status().get("faults", [])
        if active:
            print(
                f"gameday: {len(active)} fault(s) still active after the rollbacks; reverting",
                file=sys.stderr,
                flush=True,
            )
            world.fault("revert-all", {}, events=run_dir / "events.jsonl")
    except Exception as exc:
        print(f"gameday: could not check for active faults: {exc}", file=sys.stderr)


def _say(message: str) -> None:
    # The runner may be gone and its end of stderr with it.
    with contextlib.suppress(OSError):
        print(f"gameday: {message}", file=sys.stderr, flush=True)


def _watch_runner(fd: int, run_dir: Path, platform_file: Path | None = None) -> None:
    """Block on the lifeline; at its EOF stop injecting, revert, and end the drill."""
    with contextlib.suppress(OSError):
        while os.read(fd, 4096):
            pass
    world.close_faults()
    from infra import actions

    actions.close()
    _say("the runner is gone: no fault is applied any more; reverting and stopping")
    try:
        if platform_file is not None:
            _revert_on_platform(run_dir, platform_file)
        else:
            # On a world the runner owned this fails at once: that world removes itself.
            world.fault("revert-all", {}, events=run_dir / "events.jsonl")
    except Exception as exc:
        _say(f"nothing reverted here: {exc}")
    from experiments import controls

    # Locust runs in sessions of its own, out of reach of the kill below: stop it first.
    with contextlib.suppress(Exception):
        controls.stop_load()
    # The whole group: nsenter above us and the load generator below.
    os.kill(0, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument(
        "--lifeline", type=int, default=None, help="FD whose EOF means the runner is gone"
    )
    parser.add_argument(
        "--platform", type=Path, default=None, help="platform file: drill it, no world"
    )
    args = parser.parse_args(argv)
    if args.lifeline is not None:
        threading.Thread(
            target=_watch_runner,
            args=(args.lifeline, args.run_dir, args.platform),
            daemon=True,
            name="lifeline",
        ).start()
    handler = _Signals()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    from chaoslib.exit import exit_signals

    args.run_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    status = "error"
    try:
        with exit_signals():  # SIGUSR1 from a guardrail: interrupt and roll back
            # chaoslib's exit_signals replaces our SIGTERM handler with its own
            # (InterruptExecution, which also rolls back); keep ours for consistency.
            signal.signal(signal.SIGTERM, handler)
            journal = run(args.experiment, args.run_dir, args.platform)
            status = str(journal.get("status"))
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _leave_nothing_active(args.run_dir, args.platform)
        from experiments import controls

        controls.after_experiment_control({})
    print(
        f"gameday: experiment {status} after {time.monotonic() - started:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return 0 if status in ("completed", "failed", "interrupted", "aborted") else 1


if __name__ == "__main__":
    sys.exit(main())
