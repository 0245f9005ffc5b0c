"""Reading a run directory, tolerantly: what is missing becomes a problem, not a crash.

A run directory holds `measurements.json` (from `gameday measure`), `load.json` (the
load generator's summary), `events.jsonl` (fault records), `timeline.parquet` (for the
charts), and optionally `journal.json` (Chaos Toolkit) and `world.json`. A file that is
missing or malformed is recorded in `problems`; the evaluation turns problems into
INCONCLUSIVE, never into PASS.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from infra.errors import ConfigError
from infra.types import FaultRecord, read_event_log
from probes.models import (
    MEASUREMENTS,
    IntegrityEntry,
    Measurements,
    RpoEntry,
    read_measurements,
)

# Files the scorecard writes; `manifest.json` covers them too, but they are outputs.
OUTPUT_NAMES = ("scorecard.json", "scorecard.md", "scorecard.html", "junit.xml")
OUTPUT_DIRS = ("charts",)


@dataclass(frozen=True)
class Problem:
    """Why a part of a run cannot be scored: `file` and a lowercase `message`."""

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass(frozen=True)
class RunData:
    """Everything the scorecard reads from one run directory.

    `measurements` is None when `measurements.json` is missing, malformed or of an
    unknown version (the reason is in `problems`). `load` likewise for `load.json`.
    """

    path: Path
    name: str
    experiment: str
    started_at: float | None
    measurements: Measurements | None
    load: dict[str, Any] | None
    faults: tuple[FaultRecord, ...]
    world: dict[str, Any] | None
    journal: dict[str, Any] | None
    problems: tuple[Problem, ...] = field(default=())

    def entries(self, section: str) -> list[dict[str, Any]]:
        """The entries of one measurements list (`rto`, `rpo`, …) as the probes wrote
        them (typed fields checked on reading); [] when absent."""
        found = self.section(section)
        return [e.model_dump(mode="json", exclude_unset=True) for e in found or ()]

    def section(self, section: str) -> tuple[BaseModel, ...] | None:
        """The typed entries of one measurements list; None when the list is absent."""
        if self.measurements is None:
            return None
        value = getattr(self.measurements, section, None)
        return value if isinstance(value, tuple) else None

    @property
    def rpo(self) -> tuple[RpoEntry, ...]:
        """The typed RPO entries; () when absent (`has_section` tells which)."""
        found = self.measurements.rpo if self.measurements is not None else None
        return found or ()

    @property
    def integrity(self) -> tuple[IntegrityEntry, ...]:
        """The typed integrity entries; () when absent (`has_section` tells which)."""
        found = self.measurements.integrity if self.measurements is not None else None
        return found or ()

    def has_section(self, section: str) -> bool:
        """Whether measurements.json has this list at all (even empty)."""
        return self.section(section) is not None

    @property
    def saturated(self) -> bool | None:
        """The load generator's saturation flag; None when unknown."""
        if self.load is None:
            return None
        value = self.load.get("saturated")
        return value if isinstance(value, bool) else None

    @property
    def cpu_max_percent(self) -> float | None:
        """The load generator's peak CPU (percent), if recorded."""
        value = None if self.load is None else self.load.get("cpu_max_percent")
        return float(value) if isinstance(value, int | float) else None

    def jurisdiction_of(self, region: str | None) -> str | None:
        """A region's jurisdiction from `world.json`'s topology; None when unknown."""
        if region is None or self.world is None:
            return None
        regions = self.world.get("regions") or self.world.get("topology", {}).get("regions")
        if isinstance(regions, list):
            for item in regions:
                if isinstance(item, dict) and item.get("name") == region:
                    value = item.get("jurisdiction")
                    return value if isinstance(value, str) else None
        return None


def _read_json(path: Path, problems: list[Problem]) -> Any:
    if not path.exists():
        problems.append(Problem(path.name, "missing"))
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(Problem(path.name, f"not readable JSON: {exc}"))
        return None


def _within(path: Path, exc: Exception) -> str:
    """A reader's message without its file path (the Problem names the file):
    `RUN/events.jsonl:2: field …` becomes `line 2: field …`."""
    text = str(exc).removeprefix(str(path))
    found = re.match(r":(\d+): ", text)
    return f"line {found.group(1)}: {text[found.end() :]}" if found else text.lstrip(": ")


def _read_measurements(path: Path, problems: list[Problem]) -> Measurements | None:
    if not path.exists():
        problems.append(Problem(path.name, "missing"))
        return None
    try:
        return read_measurements(path)
    except (OSError, ValueError) as exc:
        problems.append(Problem(path.name, _within(path, exc)))
        return None


def _read_events(path: Path, problems: list[Problem]) -> tuple[FaultRecord, ...]:
    if not path.exists():
        problems.append(Problem(path.name, "missing: no record that a fault was applied"))
        return ()
    try:
        log = read_event_log(path)
    except (OSError, ValueError) as exc:
        problems.append(Problem(path.name, _within(path, exc)))
        return ()
    faults = tuple(r for r in log.records if r.type == "fault")
    if not faults:
        problems.append(Problem(path.name, "holds no fault record"))
    return faults


def _parse_time(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def load_run(path: Path) -> RunData:
    """Read a run directory; raises ConfigError only when `path` is not a directory."""
    if not path.is_dir():
        raise ConfigError(f"{path}: not a run directory (no such directory)")
    problems: list[Problem] = []

    measurements = _read_measurements(path / MEASUREMENTS, problems)

    load = _read_json(path / "load.json", problems)
    if load is not None and not isinstance(load, dict):
        problems.append(Problem("load.json", "expected a JSON object"))
        load = None
    if isinstance(load, dict) and not isinstance(load.get("saturated"), bool):
        problems.append(Problem("load.json", "has no boolean `saturated` flag"))

    faults = _read_events(path / "events.jsonl", problems)

    world: dict[str, Any] | None = None
    if (path / "world.json").exists():
        raw = _read_json(path / "world.json", problems)
        world = raw if isinstance(raw, dict) else None
    journal: dict[str, Any] | None = None
    if (path / "journal.json").exists():
        raw = _read_json(path / "journal.json", problems)
        journal = raw if isinstance(raw, dict) else None

    run_info = measurements.run if measurements is not None else None
    experiment = next(
        (
            v
            for v in (
                run_info.experiment if run_info is not None else None,
                (world or {}).get("experiment"),
                ((journal or {}).get("experiment") or {}).get("title"),
            )
            if isinstance(v, str) and v
        ),
        "unnamed",
    )
    started_at = _parse_time(run_info.started_at if run_info is not None else None)
    if started_at is None and journal is not None:
        started_at = _parse_time(journal.get("start"))
    if started_at is None and faults:
        times = [f.applied_at for f in faults if f.applied_at is not None]
        started_at = min(times) if times else None

    return RunData(
        path=path,
        name=path.resolve().name,
        experiment=experiment,
        started_at=started_at,
        measurements=measurements,
        load=load,
        faults=faults,
        world=world,
        journal=journal,
        problems=tuple(problems),
    )
