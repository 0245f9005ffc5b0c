"""The experiment catalog: names, files, and validation through chaoslib."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from infra.errors import ConfigError

CATALOG = Path(__file__).resolve().parent
NOT_EXPERIMENTS = {"gates.yaml"}
CONTROLS = "experiments.controls"


def names() -> list[str]:
    """The experiments that ship with gameday (file stems of `experiments/*.yaml`)."""
    return sorted(p.stem for p in CATALOG.glob("*.yaml") if p.name not in NOT_EXPERIMENTS)


def resolve(target: str) -> Path:
    """A catalog name (`region-kill`) or a path to an experiment file."""
    candidate = Path(target)
    if candidate.suffix in (".yaml", ".yml", ".json") or "/" in target:
        if not candidate.is_file():
            raise ConfigError(f"experiment file {target!r} not found")
        return candidate.resolve()
    path = CATALOG / f"{target}.yaml"
    if path.name in NOT_EXPERIMENTS or not path.is_file():
        raise ConfigError(f"unknown experiment {target!r} (catalog: {', '.join(names())})")
    return path


def load(path: Path) -> dict[str, Any]:
    """Load and validate an experiment as `chaos validate` would; ConfigError on any fault."""
    from chaoslib.exceptions import ChaosException
    from chaoslib.experiment import ensure_experiment_is_valid
    from chaoslib.loader import load_experiment

    # chaoslib logs every validation error before raising the first one; the CLI
    # reports that one clearly instead.
    logging.getLogger("chaostoolkit").setLevel(logging.CRITICAL)
    try:
        experiment: dict[str, Any] = load_experiment(str(path))
        ensure_experiment_is_valid(experiment)
    except ChaosException as exc:
        raise ConfigError(f"{path}: invalid experiment: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot load experiment: {exc}") from exc
    if not experiment.get("method"):
        raise ConfigError(f"{path}: method: at least one action is required")
    modules = [(c.get("provider") or {}).get("module") for c in experiment.get("controls") or []]
    if CONTROLS not in modules:
        raise ConfigError(
            f"{path}: controls: a drill needs the {CONTROLS!r} control (it drives the load "
            "and the measurement); see experiments/region-kill.yaml"
        )
    return experiment


def name_of(path: Path) -> str:
    """The name a run of this experiment is recorded under (the file's stem)."""
    return path.stem


TOPOLOGY_KEY = "gameday_topology"


def topology_of(experiment: dict[str, Any], path: Path) -> Path | None:
    """The topology file the experiment's world must run (`configuration.gameday_topology`).

    Relative paths are taken from the repository root (where `experiments/` lives);
    None when the experiment does not ask for one (the default topology, or whatever
    world is running). A missing or invalid file is a ConfigError naming the field.
    """
    from infra.local.topology import load_topology

    raw = (experiment.get("configuration") or {}).get(TOPOLOGY_KEY)
    if raw is None:
        return None
    where = f"{path}: configuration.{TOPOLOGY_KEY}"
    if not isinstance(raw, str) or not raw:
        raise ConfigError(f"{where}: expected a path to a topology file, got {raw!r}")
    candidate = Path(raw)
    if not candidate.is_absolute():
        candidate = CATALOG.parent / candidate
    if not candidate.is_file():
        raise ConfigError(f"{where}: topology file {raw!r} not found")
    try:
        load_topology(candidate)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return candidate.resolve()
