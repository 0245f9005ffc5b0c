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


def run(experiment_path: Path, run_dir: Path) -> dict[str, Any]:
    """Run the experiment; returns the journal (also written to `run_dir/journal.json`)."""
    from chaoslib.experiment import run_experiment
    from chaoslib.loader import load_experiment

    endpoints = world.endpoints()
    os.environ.update(
        {
            "GAMEDAY_RUN_DIR": str(run_dir),
            "GAMEDAY_EVENTS": str(run_dir / "events.jsonl"),
            "GAMEDAY_ROUTER_URL": endpoints["router_url"],
            "GAMEDAY_PROMETHEUS_URL": endpoints["prometheus_url"],
        }
    )
    experiment = load_experiment(str(experiment_path))
    settings = {"runtime": {"rollbacks": {"strategy": "always"}}}
    journal: dict[str, Any] = run_experiment(experiment, settings=settings)
    (run_dir / "journal.json").write_text(json.dumps(journal, indent=2, default=str) + "\n")
    return journal


def _leave_nothing_active(run_dir: Path) -> None:
    # The experiment's rollbacks should have reverted everything; this is the net under
    # them (a rollback that failed, an interruption between fault and rollback).
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


def _watch_runner(fd: int, run_dir: Path) -> None:
    """Block on the lifeline; at its EOF stop injecting, revert, and end the drill."""
    with contextlib.suppress(OSError):
        while os.read(fd, 4096):
            pass
    world.close_faults()
    _say("the runner is gone: no fault is applied any more; reverting and stopping")
    try:
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
    args = parser.parse_args(argv)
    if args.lifeline is not None:
        threading.Thread(
            target=_watch_runner, args=(args.lifeline, args.run_dir), daemon=True, name="lifeline"
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
            journal = run(args.experiment, args.run_dir)
            status = str(journal.get("status"))
    except KeyboardInterrupt:
        status = "interrupted"
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _leave_nothing_active(args.run_dir)
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
