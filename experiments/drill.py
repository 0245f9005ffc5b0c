"""One drill run inside the world: Chaos Toolkit runs the experiment, the controls do the rest.

Started by `gameday run` through `gameday testbed exec`: `python -m experiments.drill
--experiment FILE --run-dir DIR`. It writes `journal.json` into the run directory and,
whatever happens, makes sure no fault is left active and the load is stopped.

Signals: the first SIGINT or SIGTERM interrupts the experiment and Chaos Toolkit runs
the rollbacks; later ones are ignored until the rollbacks are done (a second Ctrl-C
never skips them).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiment", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args(argv)
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
