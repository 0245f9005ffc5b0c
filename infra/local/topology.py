"""Reading and validating the topology file (`infra/local/topology.yaml`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from infra.errors import ConfigError
from infra.files import read_yaml
from infra.types import Region, StoreSettings, Topology

DEFAULT_TOPOLOGY = Path(__file__).with_name("topology.yaml")
MIN_REGIONS = 2
MAX_REGIONS = 8
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,14}[a-z0-9]$")
_JURISDICTION = re.compile(r"^[a-z]{2,8}$")
_FIELDS = ("name", "provider", "jurisdiction", "role")
_TOP_LEVEL = ("regions", "data_groups")
_STORE_FIELDS = ("min-replicas-to-write", "min-replicas-max-lag")


def load_topology(path: Path | None = None) -> Topology:
    """Parse and validate a topology file; errors name the file and the field."""
    path = path or DEFAULT_TOPOLOGY
    return parse_topology(read_yaml(path, "topology"), source=str(path))


def parse_topology(raw: Any, source: str = "<topology>") -> Topology:
    """Validate an already-parsed topology document."""
    if not isinstance(raw, dict) or "regions" not in raw:
        raise ConfigError(f"{source}: expected a mapping with a 'regions' list")
    unknown = sorted(str(k) for k in set(raw) - set(_TOP_LEVEL))
    if unknown:
        raise ConfigError(
            f"{source}: unknown field {unknown[0]!r} (known: {', '.join(_TOP_LEVEL)})"
        )
    entries = raw["regions"]
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: 'regions' must be a list")
    if not MIN_REGIONS <= len(entries) <= MAX_REGIONS:
        raise ConfigError(
            f"{source}: 'regions' has {len(entries)} entries; "
            f"between {MIN_REGIONS} and {MAX_REGIONS} are supported"
        )
    regions: list[Region] = []
    for index, entry in enumerate(entries):
        where = f"{source}: regions[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
        for key in _FIELDS:
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(f"{where}.{key}: required, a non-empty string")
        name, jurisdiction, role = entry["name"], entry["jurisdiction"], entry["role"]
        if not _NAME.match(name) or name == "edge":
            raise ConfigError(
                f"{where}.name: {name!r} is not a valid region name "
                "(2-16 characters, lowercase letters, digits and '-', not 'edge')"
            )
        if not _JURISDICTION.match(jurisdiction):
            raise ConfigError(
                f"{where}.jurisdiction: {jurisdiction!r} must be 2-8 lowercase letters"
            )
        if role not in ("primary", "replica"):
            raise ConfigError(f"{where}.role: {role!r} must be 'primary' or 'replica'")
        if any(r.name == name for r in regions):
            raise ConfigError(f"{where}.name: region {name!r} is declared twice")
        regions.append(Region(name, entry["provider"], jurisdiction, role))
    topology = Topology(tuple(regions))
    for jurisdiction in topology.jurisdictions:
        primaries = [r.name for r in topology.in_jurisdiction(jurisdiction) if r.role == "primary"]
        if len(primaries) != 1:
            raise ConfigError(
                f"{source}: jurisdiction {jurisdiction!r} has {len(primaries)} primaries "
                f"({', '.join(primaries) or 'none'}); exactly one is required"
            )
    groups = _parse_data_groups(raw.get("data_groups"), topology, source)
    return Topology(topology.regions, groups)


def _parse_data_groups(
    raw: Any, topology: Topology, source: str
) -> tuple[tuple[str, StoreSettings], ...]:
    """`data_groups`: per jurisdiction, Redis's write guard for every store of the group."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: data_groups: expected a mapping of jurisdiction to settings")
    groups: list[tuple[str, StoreSettings]] = []
    for group, entry in raw.items():
        where = f"{source}: data_groups.{group}"
        if group not in topology.jurisdictions:
            raise ConfigError(
                f"{where}: no region has jurisdiction {group!r} "
                f"(jurisdictions: {', '.join(topology.jurisdictions)})"
            )
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping of store settings")
        unknown = sorted(str(k) for k in set(entry) - set(_STORE_FIELDS))
        if unknown:
            raise ConfigError(
                f"{where}: unknown field {unknown[0]!r} (known: {', '.join(_STORE_FIELDS)})"
            )
        values: dict[str, int] = {}
        for key in _STORE_FIELDS:
            value = entry.get(key)
            # bool is an int in Python; `true` is not a count.
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{where}.{key}: required, an integer (got {value!r})")
            values[key] = value
        replicas = len(topology.in_jurisdiction(group)) - 1
        to_write = values["min-replicas-to-write"]
        if not 0 <= to_write <= replicas:
            raise ConfigError(
                f"{where}.min-replicas-to-write: {to_write!r} must be between 0 and the "
                f"group's {replicas} replica(s); more would refuse every write"
            )
        max_lag = values["min-replicas-max-lag"]
        if max_lag < 1:
            # Replicas acknowledge once a second: a bound under 1 s refuses healthy writes.
            raise ConfigError(f"{where}.min-replicas-max-lag: {max_lag!r} must be at least 1 s")
        groups.append((group, StoreSettings(to_write, max_lag)))
    return tuple(groups)
