"""Load profiles: what traffic to send, read from YAML and command-line overrides.

A profile file is YAML (JSON works too: it is YAML). Every field is optional; the CLI's
`--users`/`--duration`/... override the file. Example (the defaults)::

    version: 1
    shape: constant          # constant | step | soak
    users: 20                # simulated users (CLI --users wins)
    duration_s: 60           # seconds of load (CLI --duration wins)
    spawn_rate: 20           # users started per second (default: all within 1 s)
    step: {users: 5, seconds: 10}   # step shape: add 5 users every 10 s up to `users`
    ramp_s: 60               # soak shape: reach `users` linearly over 60 s, then hold
    mix:                     # weight: share of users; rate: requests/s per user (0: flat out)
      predict: {weight: 8, rate: 10}
      write:   {weight: 2, rate: 5}
      canary:  {weight: 1, rate: 1}  # needs golden scores, else canaries are off
    residency: {us: 1, eu: 1}        # relative shares of the platform's jurisdictions
                                     # (default: equal shares of every jurisdiction)
    entities: 10000          # entity numbers 0 .. 9999 (ids from the platform file)
    golden: golden.json      # {"us-42": 0.8123, ...}; relative to this file; or GAMEDAY_GOLDEN
    timeout_s: 5             # network timeout of one request (status 0 past it)
    connect_timeout_s: 2

Errors are `LoadConfigError`s that name the file and the field and quote the value.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from loadgen.errors import LoadConfigError

__all__ = [
    "KINDS",
    "SHAPES",
    "KindMix",
    "Profile",
    "load_golden",
    "load_profile",
    "parse_assignment",
    "parse_profile",
    "target_at",
]

KINDS = ("predict", "write", "canary")
SHAPES = ("constant", "step", "soak")
GOLDEN_ENV = "GAMEDAY_GOLDEN"

_TOP_KEYS = {
    "version",
    "shape",
    "users",
    "duration_s",
    "spawn_rate",
    "step",
    "ramp_s",
    "mix",
    "residency",
    "entities",
    "golden",
    "golden_scores",
    "timeout_s",
    "connect_timeout_s",
}


@dataclass(frozen=True)
class KindMix:
    """One traffic kind: `weight` is its share of users (0: none), `rate` the requests per
    second each such user sends (0: as fast as the server answers)."""

    weight: int
    rate: float


def _default_mix() -> dict[str, KindMix]:
    return {
        "predict": KindMix(8, 10.0),
        "write": KindMix(2, 5.0),
        "canary": KindMix(1, 1.0),
    }


@dataclass(frozen=True)
class Profile:
    """The effective load settings. `users`/`duration_s` may be unset in a file; a run needs
    them (see `check_runnable`). Canaries run only when `golden_scores` is not empty."""

    shape: str = "constant"
    users: int | None = None
    duration_s: float | None = None
    spawn_rate: float | None = None
    step_users: int | None = None
    step_seconds: float = 10.0
    ramp_s: float = 60.0
    mix: dict[str, KindMix] = field(default_factory=_default_mix)
    residency: dict[str, float] = field(default_factory=dict)
    entities: int = 10_000
    golden: str | None = None
    golden_scores: dict[str, float] = field(default_factory=dict)
    timeout_s: float = 5.0
    connect_timeout_s: float = 2.0
    source: str | None = None

    @property
    def effective_spawn_rate(self) -> float:
        """Users started per second: as given, else all users within one second."""
        if self.spawn_rate is not None:
            return self.spawn_rate
        return float(max(1, self.users or 1))

    @property
    def effective_step_users(self) -> int:
        """Users added per step: as given, else a fifth of `users` (at least 1)."""
        if self.step_users is not None:
            return self.step_users
        return max(1, (self.users or 1) // 5)

    def weight(self, kind: str) -> int:
        """The weight Locust uses for `kind` (canaries: 0 without golden scores)."""
        if kind == "canary" and not self.golden_scores:
            return 0
        return self.mix[kind].weight

    def shares(self, jurisdictions: list[str]) -> dict[str, float]:
        """Each jurisdiction's share (summing to 1) of users: the profile's `residency`
        over the platform's `jurisdictions`, equal shares when the profile names none.

        Raises LoadConfigError for a residency the platform does not have.
        """
        unknown = sorted(set(self.residency) - set(jurisdictions))
        if unknown:
            raise LoadConfigError(
                f"{self.source or 'profile'}: residency.{unknown[0]}: not a jurisdiction of "
                f"the platform ({', '.join(jurisdictions)})"
            )
        weights = {j: self.residency.get(j, 0.0) if self.residency else 1.0 for j in jurisdictions}
        total = sum(weights.values())
        if total <= 0:
            raise LoadConfigError(f"{self.source or 'profile'}: residency: the shares add up to 0")
        return {j: w / total for j, w in weights.items()}

    def check_runnable(self) -> None:
        """Raise `LoadConfigError` unless a headless run can start with these settings."""
        where = self.source or "load settings"
        if self.users is None:
            raise LoadConfigError(f"{where}: users: not set (give --users or `users:`)")
        if self.duration_s is None:
            raise LoadConfigError(
                f"{where}: duration_s: not set (give --duration or `duration_s:`)"
            )
        _positive_int(self.users, where, "users")
        _positive_number(self.duration_s, where, "duration_s")
        if self.spawn_rate is not None:
            _positive_number(self.spawn_rate, where, "spawn_rate")
        if not any(self.weight(kind) > 0 for kind in KINDS):
            raise LoadConfigError(
                f"{where}: mix: every weight is 0 (canaries count only with golden scores)"
            )

    def to_dict(self, with_golden_scores: bool = False) -> dict[str, Any]:
        """JSON-ready settings (what `load.json` calls `profile`, with `golden_entities` and
        `source`); with the golden scores inline instead, the result is itself a valid
        profile (how the runner and the master hand it on)."""
        data: dict[str, Any] = {
            "version": 1,
            "shape": self.shape,
            "users": self.users,
            "duration_s": self.duration_s,
            "spawn_rate": self.effective_spawn_rate,
            "step": {"users": self.effective_step_users, "seconds": self.step_seconds},
            "ramp_s": self.ramp_s,
            "mix": {
                kind: {"weight": self.weight(kind), "rate": self.mix[kind].rate} for kind in KINDS
            },
            "residency": dict(self.residency),
            "entities": self.entities,
            "golden": self.golden,
            "timeout_s": self.timeout_s,
            "connect_timeout_s": self.connect_timeout_s,
        }
        if with_golden_scores:
            if self.golden_scores:
                data["golden_scores"] = dict(self.golden_scores)
        else:
            data["golden_entities"] = len(self.golden_scores)
            data["source"] = self.source
        return data

    def with_mix(
        self, kind: str, weight: float | None = None, rate: float | None = None
    ) -> Profile:
        """A copy with `kind`'s weight (a whole number) and/or rate replaced (validated)."""
        if kind not in KINDS:
            raise LoadConfigError(f"unknown traffic kind {kind!r} (expected one of {KINDS})")
        old = self.mix[kind]
        new = KindMix(
            old.weight if weight is None else _non_negative_int(weight, "--weight", kind),
            old.rate if rate is None else _non_negative_number(rate, "--rate", kind),
        )
        return replace(self, mix={**self.mix, kind: new})


# ------------------------------------------------------------------------- parsing
def load_profile(path: Path) -> Profile:
    """Read and validate a YAML (or JSON) profile file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LoadConfigError(f"{path}: cannot read the profile: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LoadConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    return parse_profile(data, source=str(path), base_dir=path.parent)


def parse_profile(
    data: Any,
    source: str = "profile",
    base_dir: Path | None = None,
    env: dict[str, str] | None = None,
) -> Profile:
    """Validate a profile's parsed YAML. `golden` paths are relative to `base_dir`; without
    `golden`/`golden_scores`, `env` (default `os.environ`) may name one in GAMEDAY_GOLDEN."""
    data = _mapping(data, source, "", _TOP_KEYS)
    version = data.get("version", 1)
    if version != 1:
        raise LoadConfigError(f"{source}: version: unsupported, got {version!r} (expected 1)")
    shape = data.get("shape", "constant")
    if shape not in SHAPES:
        raise LoadConfigError(f"{source}: shape: must be one of {', '.join(SHAPES)}, got {shape!r}")
    kwargs: dict[str, Any] = {"shape": shape, "source": source}
    if data.get("users") is not None:
        kwargs["users"] = _positive_int(data["users"], source, "users")
    if data.get("duration_s") is not None:
        kwargs["duration_s"] = _positive_number(data["duration_s"], source, "duration_s")
    if data.get("spawn_rate") is not None:
        kwargs["spawn_rate"] = _positive_number(data["spawn_rate"], source, "spawn_rate")
    if "step" in data:
        step = _mapping(data["step"], source, "step", {"users", "seconds"})
        if "users" in step:
            kwargs["step_users"] = _positive_int(step["users"], source, "step.users")
        if "seconds" in step:
            kwargs["step_seconds"] = _positive_number(step["seconds"], source, "step.seconds")
    if "ramp_s" in data:
        kwargs["ramp_s"] = _positive_number(data["ramp_s"], source, "ramp_s")
    for key in ("entities",):
        if key in data:
            kwargs[key] = _positive_int(data[key], source, key)
    for key in ("timeout_s", "connect_timeout_s"):
        if key in data:
            kwargs[key] = _positive_number(data[key], source, key)
    if "mix" in data:
        mix = _default_mix()
        given = _mapping(data["mix"], source, "mix", set(KINDS))
        for kind, entry in given.items():
            spec = _mapping(entry, source, f"mix.{kind}", {"weight", "rate"})
            weight = mix[kind].weight
            rate = mix[kind].rate
            if "weight" in spec:
                weight = _non_negative_int(spec["weight"], source, f"mix.{kind}.weight")
            if "rate" in spec:
                rate = _non_negative_number(spec["rate"], source, f"mix.{kind}.rate")
            mix[kind] = KindMix(weight, rate)
        kwargs["mix"] = mix
    if "residency" in data:
        shares = _mapping(data["residency"], source, "residency", None)
        residency: dict[str, float] = {}
        for name, value in shares.items():
            residency[name] = _non_negative_number(value, source, f"residency.{name}")
        if residency and sum(residency.values()) <= 0:  # empty: equal shares
            raise LoadConfigError(f"{source}: residency: the shares add up to 0")
        kwargs["residency"] = residency
    if data.get("golden_scores") is not None:
        kwargs["golden_scores"] = _golden_mapping(data["golden_scores"], f"{source}: golden_scores")
    if data.get("golden") is not None:
        if not isinstance(data["golden"], str):
            raise LoadConfigError(f"{source}: golden: must be a path, got {data['golden']!r}")
        golden = Path(data["golden"]).expanduser()
        if not golden.is_absolute() and base_dir is not None:
            golden = base_dir / golden
        kwargs["golden"] = str(golden)
        if "golden_scores" not in kwargs:
            try:
                kwargs["golden_scores"] = load_golden(golden)
            except LoadConfigError as exc:
                raise LoadConfigError(f"{source}: golden: {exc}") from exc
    elif "golden_scores" not in kwargs:
        from_env = (os.environ if env is None else env).get(GOLDEN_ENV)
        if from_env:
            kwargs["golden"] = from_env
            kwargs["golden_scores"] = load_golden(Path(from_env))
    return Profile(**kwargs)


def load_golden(path: Path) -> dict[str, float]:
    """Read a golden file: a JSON object mapping entity id to its correct score (the
    platform file says which jurisdiction an id belongs to)."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise LoadConfigError(
            f"{path}: cannot read the golden file: {exc.strerror or exc}"
        ) from exc
    except ValueError as exc:
        raise LoadConfigError(f"{path}: golden file is not valid JSON: {exc}") from exc
    return _golden_mapping(data, str(path))


def _golden_mapping(data: Any, where: str) -> dict[str, float]:
    if not isinstance(data, dict) or not data:
        raise LoadConfigError(f"{where}: expected a non-empty mapping of entity id to score")
    scores: dict[str, float] = {}
    for entity, score in data.items():
        if not isinstance(entity, str) or not entity:
            raise LoadConfigError(f"{where}: {entity!r}: an entity id is a non-empty string")
        if not _is_number(score):
            raise LoadConfigError(f"{where}: {entity}: score must be a number, got {score!r}")
        scores[entity] = float(score)
    return scores


def parse_assignment(text: str, option: str) -> tuple[str, float]:
    """`KIND=VALUE` from the command line (e.g. `--weight write=3`)."""
    kind, sep, value = text.partition("=")
    kind = kind.strip()
    if not sep or kind not in KINDS:
        raise LoadConfigError(f"{option}: expected KIND=VALUE with KIND in {KINDS}, got {text!r}")
    try:
        number = float(value)
    except ValueError as exc:
        raise LoadConfigError(f"{option}: {kind}: not a number, got {value!r}") from exc
    return kind, number


# ------------------------------------------------------------------------- shapes
def target_at(profile: Profile, elapsed_s: float) -> tuple[int, float] | None:
    """The (users, spawn rate) a shape asks for `elapsed_s` seconds into the run, or None
    once `duration_s` has passed (no duration: never ends).

    constant: every user at `spawn_rate`; step: `step.users` more every `step.seconds`
    until `users`, then hold (the base load before a fault); soak: reach `users` linearly
    over `ramp_s`, then hold.
    """
    if profile.duration_s is not None and elapsed_s >= profile.duration_s:
        return None
    users = profile.users or 1
    if profile.shape == "step":
        level = profile.effective_step_users * (int(elapsed_s // profile.step_seconds) + 1)
        return min(users, level), profile.effective_spawn_rate
    if profile.shape == "soak":
        return users, users / profile.ramp_s
    return users, profile.effective_spawn_rate


# ------------------------------------------------------------------------- checks
def _mapping(value: Any, source: str, name: str, keys: set[str] | None) -> dict[str, Any]:
    """`value` as a mapping of known `keys` (None: any); `name` "" is the top level."""
    if not isinstance(value, dict):
        if not name:
            raise LoadConfigError(
                f"{source}: expected a mapping at the top, got {type(value).__name__}"
            )
        raise LoadConfigError(f"{source}: {name}: expected a mapping, got {value!r}")
    unknown = sorted(set(value) - keys) if keys is not None else []
    if unknown:
        field_name = f"{name}.{unknown[0]}" if name else unknown[0]
        raise LoadConfigError(
            f"{source}: {field_name}: unknown field (known: {', '.join(sorted(keys or ()))})"
        )
    return value


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _positive_int(value: Any, source: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise LoadConfigError(f"{source}: {name}: must be a positive integer, got {value!r}")
    return value


def _non_negative_int(value: Any, source: str, name: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LoadConfigError(f"{source}: {name}: must be an integer >= 0, got {value!r}")
    return value


def _positive_number(value: Any, source: str, name: str) -> float:
    if not _is_number(value) or value <= 0:
        raise LoadConfigError(f"{source}: {name}: must be a number > 0, got {value!r}")
    return float(value)


def _non_negative_number(value: Any, source: str, name: str) -> float:
    if not _is_number(value) or value < 0:
        raise LoadConfigError(f"{source}: {name}: must be a number >= 0, got {value!r}")
    return float(value)
