"""Evidence: `manifest.json` holds the SHA-256 of every file of a run directory.

The manifest covers every regular file under the directory (recursively, by POSIX
relative path) except itself. `verify` reports every changed, added and removed file.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.errors import ConfigError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def sha256_stream(handle: io.BufferedIOBase) -> str:
    """Hex SHA-256 of an open binary file object (e.g. a member of a tar archive)."""
    return hashlib.file_digest(handle, "sha256").hexdigest()


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    with path.open("rb") as handle:
        return sha256_stream(handle)


def digests(run_dir: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file under `run_dir` except the manifest."""
    out: dict[str, str] = {}
    for path in sorted(run_dir.rglob("*")):
        if path.is_file() and not path.is_symlink():
            rel = path.relative_to(run_dir).as_posix()
            if rel != MANIFEST:
                out[rel] = sha256_file(path)
    return out


def write_manifest(run_dir: Path) -> Path:
    """Write `manifest.json` for the directory as it is now; returns its path."""
    files = digests(run_dir)
    target = run_dir / MANIFEST
    document = {"version": MANIFEST_VERSION, "algorithm": "sha256", "files": files}
    target.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    return target


def parse_manifest(text: str, where: str) -> dict[str, str]:
    """The digests recorded in a manifest's text; `where` names it in errors (ConfigError)."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: not readable JSON: {exc}") from exc
    files = document.get("files") if isinstance(document, dict) else None
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ConfigError(f"{where}: files: expected a mapping of path to sha256")
    return {str(k): str(v) for k, v in files.items()}


def read_manifest(run_dir: Path) -> dict[str, str]:
    """The recorded digests; raises ConfigError when the manifest is missing or malformed."""
    path = run_dir / MANIFEST
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: not a run directory (no such directory)")
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: missing (score the run first)") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON: {exc}") from exc
    return parse_manifest(text, str(path))


@dataclass(frozen=True)
class Difference:
    """One way the directory differs from its manifest."""

    path: str
    change: str  # changed | added | removed

    def __str__(self) -> str:
        return f"{self.change}: {self.path}"


def verify(run_dir: Path) -> list[Difference]:
    """Every difference between the directory and its manifest; [] when intact."""
    return compare(read_manifest(run_dir), digests(run_dir))


def compare(recorded: Mapping[str, str], actual: Mapping[str, str]) -> list[Difference]:
    """Every difference between recorded and actual digests (path → sha256), by path."""
    diffs = [Difference(p, "removed") for p in sorted(set(recorded) - set(actual))]
    diffs += [Difference(p, "added") for p in sorted(set(actual) - set(recorded))]
    diffs += [
        Difference(p, "changed")
        for p in sorted(set(recorded) & set(actual))
        if recorded[p] != actual[p]
    ]
    return sorted(diffs, key=lambda d: d.path)
