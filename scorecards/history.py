"""History: every scored run appended to SQLite (`.gameday/history.sqlite` by default).

The schema is versioned (`schema_version` table) and upgraded in place by `MIGRATIONS`,
one transaction each. Scoring the same run directory again replaces its row (the run
key is the directory's resolved path), so re-scoring never double-counts a drill.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import ConfigError
from scorecards.evaluate import Scorecard
from scorecards.render import to_dict

DEFAULT_HISTORY = Path(".gameday/history.sqlite")

# (version, what it does, statements). Append only: never edit a released migration.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "runs and their gate results",
        (
            """CREATE TABLE runs (
                id INTEGER PRIMARY KEY,
                run_key TEXT NOT NULL UNIQUE,
                experiment TEXT NOT NULL,
                run_dir TEXT NOT NULL,
                started_at REAL,
                scored_at REAL NOT NULL,
                verdict TEXT NOT NULL,
                scorecard TEXT NOT NULL
            )""",
            """CREATE TABLE gate_results (
                run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
                gate_id TEXT NOT NULL,
                gate TEXT NOT NULL,
                jurisdiction TEXT,
                kind TEXT,
                verdict TEXT NOT NULL,
                value REAL,
                comparison TEXT,
                threshold REAL,
                unit TEXT NOT NULL
            )""",
        ),
    ),
    (
        2,
        "gates file digest per run, and an index for the readiness report",
        (
            "ALTER TABLE runs ADD COLUMN gates_sha256 TEXT",
            "CREATE INDEX runs_by_experiment ON runs (experiment, started_at)",
            "CREATE INDEX gate_results_by_run ON gate_results (run_id)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


def schema_version(conn: sqlite3.Connection) -> int:
    """The database's schema version; 0 for a new, empty database."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations above the database's version up to `target`; returns it."""
    current = schema_version(conn)
    if current > SCHEMA_VERSION:
        raise ConfigError(
            f"history database schema version {current} is newer than this gameday "
            f"understands ({SCHEMA_VERSION})"
        )
    for version, what, statements in MIGRATIONS:
        if current < version <= target:
            conn.execute("BEGIN")
            try:
                if version == 1:
                    conn.execute(
                        "CREATE TABLE schema_version (version INTEGER NOT NULL, "
                        "description TEXT NOT NULL)"
                    )
                for statement in statements:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, what))
                conn.execute("COMMIT")
            except sqlite3.Error:
                conn.execute("ROLLBACK")
                raise
            current = version
    return current


def connect(path: Path, target: int = SCHEMA_VERSION) -> sqlite3.Connection:
    """Open (creating the folder and file if needed) and migrate the history database."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, target)
    except sqlite3.DatabaseError as exc:
        raise ConfigError(f"{path}: not a usable history database: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the history database: {exc}") from exc
    return conn


def record(conn: sqlite3.Connection, card: Scorecard) -> int:
    """Append (or replace) one single-run scorecard; returns the run's row id."""
    if len(card.runs) != 1:
        raise ValueError("history records single-run scorecards; score each run on its own")
    run = card.runs[0]
    key = str(run.path.resolve())
    conn.execute("BEGIN")
    try:
        conn.execute("DELETE FROM runs WHERE run_key = ?", (key,))
        cursor = conn.execute(
            "INSERT INTO runs (run_key, experiment, run_dir, started_at, scored_at, verdict, "
            "scorecard, gates_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                card.experiment,
                str(run.path),
                run.started_at,
                card.scored_at,
                card.verdict.value,
                json.dumps(to_dict(card), sort_keys=True),
                card.gates_sha256,
            ),
        )
        run_id = int(cursor.lastrowid or 0)
        conn.executemany(
            "INSERT INTO gate_results (run_id, gate_id, gate, jurisdiction, kind, verdict, "
            "value, comparison, threshold, unit) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    run_id,
                    g.id,
                    g.gate,
                    g.jurisdiction,
                    g.kind,
                    g.verdict.value,
                    g.value,
                    g.comparison,
                    g.threshold,
                    g.unit,
                )
                for g in card.gates
            ],
        )
        conn.execute("COMMIT")
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        raise
    return run_id


@dataclass(frozen=True)
class GateRow:
    """One stored gate result."""

    gate_id: str
    gate: str
    jurisdiction: str | None
    kind: str | None
    verdict: str
    value: float | None
    threshold: float | None


@dataclass(frozen=True)
class HistoryRun:
    """One stored run; `when` is its start (or, unknown, the time it was scored)."""

    id: int
    experiment: str
    run_dir: str
    when: float
    verdict: str
    gates: tuple[GateRow, ...]


def runs_since(conn: sqlite3.Connection, since: float | None) -> list[HistoryRun]:
    """Stored runs whose start is at or after `since` (epoch s; None: all), oldest first."""
    rows = conn.execute(
        "SELECT id, experiment, run_dir, COALESCE(started_at, scored_at) AS t, verdict "
        "FROM runs WHERE ? IS NULL OR COALESCE(started_at, scored_at) >= ? ORDER BY t, id",
        (since, since),
    ).fetchall()
    gates: dict[int, list[GateRow]] = {}
    ids = [int(r[0]) for r in rows]
    for start in range(0, len(ids), 500):
        chunk: Sequence[int] = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for g in conn.execute(
            "SELECT run_id, gate_id, gate, jurisdiction, kind, verdict, value, threshold "
            f"FROM gate_results WHERE run_id IN ({marks}) ORDER BY rowid",
            tuple(chunk),
        ):
            gates.setdefault(int(g[0]), []).append(GateRow(*g[1:]))
    return [
        HistoryRun(
            int(r[0]), str(r[1]), str(r[2]), float(r[3]), str(r[4]), tuple(gates.get(int(r[0]), []))
        )
        for r in rows
    ]


@dataclass(frozen=True)
class StoredRun:
    """One stored run as the evidence binder exports it; `when` as in `HistoryRun`."""

    id: int
    run_key: str
    experiment: str
    run_dir: str
    when: float
    started_at: float | None
    scored_at: float
    verdict: str
    gates_sha256: str | None


def stored_runs(conn: sqlite3.Connection, start: float, end: float) -> list[StoredRun]:
    """Stored runs whose start is in [start, end] (epoch s), oldest first."""
    rows = conn.execute(
        "SELECT id, run_key, experiment, run_dir, COALESCE(started_at, scored_at) AS t, "
        "started_at, scored_at, verdict, gates_sha256 FROM runs "
        "WHERE COALESCE(started_at, scored_at) BETWEEN ? AND ? ORDER BY t, id",
        (start, end),
    ).fetchall()
    return [
        StoredRun(
            int(r[0]),
            str(r[1]),
            str(r[2]),
            str(r[3]),
            float(r[4]),
            None if r[5] is None else float(r[5]),
            float(r[6]),
            str(r[7]),
            None if r[8] is None else str(r[8]),
        )
        for r in rows
    ]


def stored_scorecards(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, Any]:
    """Run id → its stored scorecard.json document (as parsed JSON) for the given runs."""
    out: dict[int, Any] = {}
    for start in range(0, len(ids), 500):
        chunk = tuple(ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        for run_id, text in conn.execute(
            f"SELECT id, scorecard FROM runs WHERE id IN ({marks})", chunk
        ):
            try:
                out[int(run_id)] = json.loads(text)
            except ValueError as exc:
                raise ConfigError(f"history run {run_id}: scorecard: not valid JSON") from exc
    return out
