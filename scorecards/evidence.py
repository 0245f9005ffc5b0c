"""The evidence binder: the drills of a period in one tar.gz that can be checked offline.

A bundle holds `index.json`, every run directory of the period under `runs/<id>/` (its
files exactly as its `manifest.json` lists them, and the manifest), the gates files the
runs were scored against under `gates/<sha256>.yaml`, the history rows as `history.csv`,
the readiness report (`report/report.md`, `report/briefing.html`), the tool version and
the git revision. A hash chain runs over the runs in time order:

    link_0 = "0" repeated 64 times
    link_i = sha256(link_{i-1} \\n run id \\n started_at \\n sha256(manifest.json))

(`started_at` as epoch seconds with 6 decimals), and its head is recorded in the index.
`verify` needs nothing but the bundle: every file against its run's manifest, each
manifest against the chain, the chain against the history rows, the gates files by hash.
Removing a run, editing a file or swapping a gates file is found and named; rewriting
the whole chain is found only against a head kept elsewhere (`expected_head`).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import posixpath
import re
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from infra.errors import ConfigError, GamedayError
from scorecards import manifest
from scorecards.briefing import latest_run_ids, residual_risks
from scorecards.briefing import to_html as briefing_html
from scorecards.briefing import to_markdown as risks_markdown
from scorecards.history import (
    StoredRun,
    connect,
    runs_since,
    stored_runs,
    stored_scorecards,
)
from scorecards.render import iso
from scorecards.report import DAY, readiness, to_markdown

SCHEMA = "gameday.evidence"
VERSION = 1
GENESIS = "0" * 64
INDEX = "index.json"
HISTORY_CSV = "history.csv"
REPORT_MD = "report/report.md"
REPORT_HTML = "report/briefing.html"
HISTORY_FIELDS = (
    "run",
    "experiment",
    "started_at",
    "started_at_utc",
    "scored_at",
    "verdict",
    "gates_sha256",
    "run_dir",
)
CHAIN_RULE = "sha256(prev_link \\n run \\n started_at \\n manifest_sha256), genesis 64 x '0'"


def stamp(when: float) -> str:
    """Epoch seconds as the chain and history.csv write them (6 decimals)."""
    return f"{when:.6f}"


def link(prev: str, run: str, started_at: str, manifest_sha256: str) -> str:
    """One link of the chain: binds a run, its start and its manifest to all runs before."""
    text = "\n".join((prev, run, started_at, manifest_sha256))
    return hashlib.sha256(text.encode()).hexdigest()


def chain(entries: Sequence[tuple[str, str, str]]) -> list[str]:
    """The links of (run id, started_at stamp, manifest sha256) entries, in order."""
    links, prev = [], GENESIS
    for run, started, digest in entries:
        prev = link(prev, run, started, digest)
        links.append(prev)
    return links


@dataclass(frozen=True)
class Exported:
    """A written bundle."""

    path: Path
    runs: int
    head: str
    start: float
    end: float
    decision: str


def _run_ids(runs: Sequence[StoredRun]) -> list[str]:
    """A bundle id per run: its directory name, made unique in time order.

    The runs of a repeated drill are `<drill dir>/run-01`, `run-02`, …: their id carries
    the drill directory's name too.
    """
    ids: list[str] = []
    seen: dict[str, int] = {}
    for run in runs:
        path = Path(run.run_key)
        name = path.name or f"run-{run.id}"
        if re.fullmatch(r"run-\d+", name) and path.parent.name:
            name = f"{path.parent.name}-{name}"
        seen[name] = seen.get(name, 0) + 1
        ids.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return ids


def _scorecard_gates_sha(run_dir: Path) -> str | None:
    try:
        document = json.loads((run_dir / "scorecard.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{run_dir / 'scorecard.json'}: not readable: {exc}") from exc
    gates = document.get("gates_file") if isinstance(document, dict) else None
    sha = gates.get("sha256") if isinstance(gates, dict) else None
    return sha if isinstance(sha, str) else None


def _gates_path(run_dir: Path) -> Path | None:
    try:
        document = json.loads((run_dir / "scorecard.json").read_text())
        path = document["gates_file"]["path"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return Path(path) if isinstance(path, str) else None


def _gates_text(path: Path) -> tuple[str, bytes] | None:
    """(sha256, bytes) of a gates file as `scorecards.gates` digests it; None if unreadable."""
    try:
        data = path.read_text().encode()
    except (OSError, UnicodeDecodeError):
        return None
    return _sha(data), data


def _find_gates(
    needed: Mapping[str, list[str]], candidates: Sequence[Path]
) -> dict[str, tuple[Path, bytes]]:
    found: dict[str, tuple[Path, bytes]] = {}
    for path in candidates:
        got = _gates_text(path)
        if got is not None and got[0] in needed and got[0] not in found:
            found[got[0]] = (path, got[1])
    for sha, runs in needed.items():
        if sha not in found:
            looked = ", ".join(sorted({str(p) for p in candidates})) or "nothing"
            raise ConfigError(
                f"gates file with sha256 {sha} (scored runs {', '.join(runs)}) not found; "
                f"looked at {looked}: pass the file the runs were scored against with --gates"
            )
    return found


def _history_csv(runs: Sequence[StoredRun], entries: Sequence[Mapping[str, Any]]) -> bytes:
    """The history rows; the gates digest is the scorecard's (rows of schema 1 lack it)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_FIELDS)
    for run, entry in zip(runs, entries, strict=True):
        writer.writerow(
            (
                entry["id"],
                run.experiment,
                entry["started_at"],
                entry["started_at_utc"],
                stamp(run.scored_at),
                run.verdict,
                entry["gates_sha256"],
                run.run_dir,
            )
        )
    return out.getvalue().encode()


def _report(
    db: Path, start: float, end: float, now: float, max_age_days: float
) -> tuple[str, bytes, bytes]:
    """(decision, report.md, briefing.html) over the runs of the period, as of `now`."""
    conn = connect(db)
    try:
        runs = [r for r in runs_since(conn, start) if r.when <= end]
        cards = stored_scorecards(conn, latest_run_ids(runs))
    finally:
        conn.close()
    result = readiness(runs, now, (end - start) / DAY, max_age_days, str(db))
    risks = residual_risks(result, runs, cards)
    markdown = to_markdown(result) + "\n" + risks_markdown(risks)
    return result.decision, markdown.encode(), briefing_html(result, risks).encode()


def _sha(data: bytes) -> str:
    """SHA-256 of bytes in memory, through the manifest's digest."""
    return manifest.sha256_stream(io.BytesIO(data))


class _Writer:
    """Adds members with fixed owner, mode and time, so a bundle's bytes are reproducible."""

    def __init__(self, tar: tarfile.TarFile, mtime: float) -> None:
        self.tar, self.mtime = tar, int(mtime)

    def _info(self, name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = size, self.mtime, 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def data(self, name: str, data: bytes) -> None:
        self.tar.addfile(self._info(name, len(data)), io.BytesIO(data))

    def file(self, name: str, path: Path) -> None:
        with path.open("rb") as handle:
            self.tar.addfile(self._info(name, os.fstat(handle.fileno()).st_size), handle)


def export(
    db: Path,
    start: float,
    end: float,
    out: Path,
    *,
    tool_version: str,
    git_revision: str,
    gates_files: Sequence[Path] = (),
    max_age_days: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> Exported:
    """Write the bundle of the runs that started in [start, end] to `out`.

    Raises ConfigError (bad input: no history, no run in the period, a run directory
    or gates file missing) and GamedayError when a run directory no longer matches its
    manifest (evidence that was changed is not exported). The file appears only
    complete: it is written beside `out` and renamed.
    """
    if not db.is_file():
        raise ConfigError(f"{db}: no history yet (score a run with `gameday scorecard`)")
    if end < start:
        raise ConfigError(f"period: --to {iso(end)} is before --from {iso(start)}")
    conn = connect(db)
    try:
        runs = stored_runs(conn, start, end)
    finally:
        conn.close()
    if not runs:
        raise ConfigError(
            f"{db}: no drill started between {iso(start)} and {iso(end)}: nothing to export"
        )
    ids = _run_ids(runs)
    entries: list[dict[str, Any]] = []
    needed: dict[str, list[str]] = {}
    candidates = list(gates_files)
    for run, run_id in zip(runs, ids, strict=True):
        run_dir = Path(run.run_key)
        where = f"run {run_dir} ({run.experiment}, started {iso(run.when)})"
        if not run_dir.is_dir():
            raise ConfigError(f"{where}: directory missing; the history still lists it")
        differences = manifest.verify(run_dir)
        if differences:
            listed = ", ".join(map(str, differences))
            raise GamedayError(
                f"{where}: differs from its manifest.json ({listed}); not exporting evidence "
                "that changed after it was scored"
            )
        gates_sha = _scorecard_gates_sha(run_dir)
        if gates_sha is None or (run.gates_sha256 not in (None, gates_sha)):
            raise GamedayError(
                f"{where}: scorecard.json gates_file.sha256 {gates_sha!r} is not the one the "
                f"history recorded ({run.gates_sha256!r}): score the run again"
            )
        needed.setdefault(gates_sha, []).append(run_id)
        recorded_path = _gates_path(run_dir)
        if recorded_path is not None:
            candidates.append(recorded_path)
        entries.append(
            {
                "id": run_id,
                "experiment": run.experiment,
                "started_at": stamp(run.when),
                "started_at_utc": iso(run.when, "T", "Z"),
                "verdict": run.verdict,
                "gates_sha256": gates_sha,
                "dir": f"runs/{run_id}",
                "source_dir": str(run_dir),
                "files": len(manifest.read_manifest(run_dir)),
                "manifest_sha256": manifest.sha256_file(run_dir / manifest.MANIFEST),
            }
        )
    gates = _find_gates(needed, candidates)
    links = chain([(e["id"], e["started_at"], e["manifest_sha256"]) for e in entries])
    for entry, value in zip(entries, links, strict=True):
        entry["link"] = value
    now = clock()
    decision, report_md, report_html = _report(db, start, end, min(end, now), max_age_days)
    history = _history_csv(runs, entries)
    index = {
        "schema": SCHEMA,
        "version": VERSION,
        "created_at": iso(now, "T", "Z"),
        "period": {"from": iso(start, "T", "Z"), "to": iso(end, "T", "Z")},
        "tool": {"name": "gameday", "version": tool_version, "git_revision": git_revision},
        "history": {"source": str(db), "file": HISTORY_CSV, "sha256": _sha(history)},
        "gates": [
            {"sha256": digest, "file": f"gates/{digest}.yaml", "source": str(path)}
            for digest, (path, _) in sorted(gates.items())
        ],
        "report": {
            "decision": decision,
            "max_age_days": max_age_days,
            "files": {REPORT_MD: _sha(report_md), REPORT_HTML: _sha(report_html)},
        },
        "runs": entries,
        "chain": {"rule": CHAIN_RULE, "length": len(links), "head": links[-1]},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".evidence-", suffix=".tmp", dir=out.parent)
    os.close(handle)
    try:
        with tarfile.open(temporary, "w:gz") as tar:
            put = _Writer(tar, now)
            put.data(INDEX, (json.dumps(index, indent=2) + "\n").encode())
            put.data(HISTORY_CSV, history)
            put.data(REPORT_MD, report_md)
            put.data(REPORT_HTML, report_html)
            for digest, (_, data) in sorted(gates.items()):
                put.data(f"gates/{digest}.yaml", data)
            for run, entry in zip(runs, entries, strict=True):
                run_dir = Path(run.run_key)
                for rel in [*manifest.read_manifest(run_dir), manifest.MANIFEST]:
                    put.file(f"{entry['dir']}/{rel}", run_dir / rel)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Exported(out, len(entries), links[-1], start, end, decision)


# ------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class Verification:
    """What `verify` found; `problems` is empty when the bundle is intact."""

    bundle: Path
    runs: int
    head: str
    period: tuple[str, str]
    tool: dict[str, str]
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Whether nothing is wrong."""
        return not self.problems


# Members whose content verify reads, beyond their digest.
_READ = (INDEX, HISTORY_CSV)


def _members(bundle: Path) -> tuple[dict[str, str], dict[str, bytes], list[str]]:
    """(name → sha256, name → content of the files verify parses, member problems)."""
    if not bundle.is_file():
        raise ConfigError(f"{bundle}: no such bundle file")
    digests: dict[str, str] = {}
    contents: dict[str, bytes] = {}
    problems: list[str] = []
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            for member in tar:
                name = member.name
                if name.startswith("/") or ".." in name.split("/"):
                    problems.append(f"unexpected member {name!r}: a path outside the bundle")
                    continue
                name = posixpath.normpath(name)
                if not member.isfile():
                    problems.append(f"unexpected member {name!r}: not a regular file")
                    continue
                if name in digests:
                    problems.append(f"{name}: appears twice (a later copy would shadow the first)")
                    continue
                handle = tar.extractfile(member)
                assert handle is not None  # regular files always have content
                if name in _READ or name.endswith(("/" + manifest.MANIFEST, "/scorecard.json")):
                    data = handle.read()
                    contents[name] = data
                    digests[name] = _sha(data)
                else:
                    digests[name] = manifest.sha256_stream(cast(io.BufferedIOBase, handle))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConfigError(f"{bundle}: not a readable tar.gz bundle: {exc}") from exc
    return digests, contents, problems


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _index(bundle: Path, contents: Mapping[str, bytes]) -> dict[str, Any]:
    where = f"{bundle}: {INDEX}"
    if INDEX not in contents:
        raise ConfigError(f"{where}: missing (not an evidence bundle)")
    try:
        index = json.loads(contents[INDEX])
    except ValueError as exc:
        raise ConfigError(f"{where}: not valid JSON: {exc}") from exc
    if not isinstance(index, dict) or index.get("schema") != SCHEMA:
        raise ConfigError(f"{where}: schema: expected {SCHEMA!r}")
    if index.get("version") != VERSION:
        raise ConfigError(f"{where}: version: expected {VERSION}, got {index.get('version')!r}")
    shapes: dict[str, type] = {
        "runs": list,
        "chain": dict,
        "gates": list,
        "history": dict,
        "report": dict,
        "tool": dict,
        "period": dict,
    }
    for key, kind in shapes.items():
        if not isinstance(index.get(key), kind):
            raise ConfigError(f"{where}: {key}: expected a {kind.__name__}")
    run_keys = ("id", "experiment", "started_at", "verdict", "gates_sha256", "dir")
    for i, run in enumerate(index["runs"]):
        for key in (*run_keys, "manifest_sha256", "link"):
            if not isinstance(run, dict) or not isinstance(run.get(key), str):
                raise ConfigError(f"{where}: runs[{i}].{key}: expected a string")
        if _seconds(run["started_at"]) is None:
            raise ConfigError(
                f"{where}: runs[{i}].started_at: expected epoch seconds, got {run['started_at']!r}"
            )
    for i, gate in enumerate(index["gates"]):
        for key in ("sha256", "file", "source"):
            if not isinstance(gate, dict) or not isinstance(gate.get(key), str):
                raise ConfigError(f"{where}: gates[{i}].{key}: expected a string")
    if not isinstance(index["chain"].get("head"), str):
        raise ConfigError(f"{where}: chain.head: expected a string")
    return index


def _check_runs(
    index: Mapping[str, Any],
    digests: Mapping[str, str],
    contents: Mapping[str, bytes],
    expected: set[str],
) -> list[str]:
    """Every run's files against its manifest, and its manifest against the index."""
    problems: list[str] = []
    for run in index["runs"]:
        run_id, folder = run["id"], run["dir"].rstrip("/")
        what = f"run {run_id} ({run['experiment']}, started {run.get('started_at_utc', '?')})"
        present = {
            name[len(folder) + 1 :]: digest
            for name, digest in digests.items()
            if name.startswith(folder + "/")
        }
        expected.update(f"{folder}/{rel}" for rel in present)
        if not present:
            problems.append(f"{what}: removed from the bundle")
            continue
        text = contents.get(f"{folder}/{manifest.MANIFEST}")
        if text is None:
            problems.append(f"{what}: manifest.json removed")
            continue
        actual_manifest = present.pop(manifest.MANIFEST)
        if actual_manifest != run["manifest_sha256"]:
            problems.append(
                f"{what}: manifest.json edited (sha256 {actual_manifest}, the index and the "
                f"chain record {run['manifest_sha256']})"
            )
        try:
            recorded = manifest.parse_manifest(text.decode(errors="replace"), f"{folder}/manifest")
        except ConfigError as exc:
            problems.append(f"{what}: {exc}")
            continue
        problems += [f"{what}: {d}" for d in manifest.compare(recorded, present)]
        card = contents.get(f"{folder}/scorecard.json")
        if card is not None:
            try:
                gates_sha = json.loads(card)["gates_file"]["sha256"]
            except (ValueError, KeyError, TypeError):
                gates_sha = None
            if gates_sha != run["gates_sha256"]:
                problems.append(
                    f"{what}: scorecard.json names gates sha256 {gates_sha}, the index "
                    f"{run['gates_sha256']}"
                )
    return problems


def _check_chain(index: Mapping[str, Any], expected_head: str | None) -> list[str]:
    problems: list[str] = []
    runs = index["runs"]
    prev, prev_run = GENESIS, None
    for run in runs:
        if prev_run is not None and float(run["started_at"]) < float(prev_run["started_at"]):
            problems.append(f"run {run['id']}: out of time order (before run {prev_run['id']})")
        want = link(prev, run["id"], run["started_at"], run["manifest_sha256"])
        if want != run["link"]:
            after = f"run {prev_run['id']}" if prev_run else "the start of the chain"
            problems.append(
                f"chain broken at run {run['id']} (started {run.get('started_at_utc', '?')}): "
                f"its link does not follow from {after}: a run between them was removed, or "
                "an entry was edited"
            )
        prev, prev_run = run["link"], run
    head = index["chain"]["head"]
    if runs and prev != head:
        problems.append(f"chain head {head} is not the last run's link {prev}: runs were removed")
    if index["chain"].get("length") != len(runs):
        problems.append(
            f"chain length {index['chain'].get('length')} but {len(runs)} runs in the index: "
            "runs were removed or added"
        )
    if expected_head is not None and head != expected_head:
        problems.append(
            f"chain head {head} is not the expected {expected_head}: this is not the bundle "
            "whose head was recorded"
        )
    return problems


def _check_history(
    index: Mapping[str, Any], digests: Mapping[str, str], contents: Mapping[str, bytes]
) -> tuple[list[str], str | None]:
    """history.csv against its digest and the runs of the index; then the chain head.

    The second item says when the chain recomputed from the history rows and the
    manifests in the bundle misses the recorded head.
    """
    entry = index["history"]
    name = str(entry.get("file", HISTORY_CSV))
    if name not in contents:
        return [f"{name}: removed"], None
    problems = []
    if digests[name] != entry.get("sha256"):
        problems.append(f"{name}: edited (sha256 {digests[name]}, recorded {entry.get('sha256')})")
    try:
        rows = list(csv.DictReader(io.StringIO(contents[name].decode())))
    except (UnicodeDecodeError, csv.Error) as exc:
        return [*problems, f"{name}: not readable CSV: {exc}"], None
    if rows and set(HISTORY_FIELDS) - set(rows[0]):
        missing = ", ".join(sorted(set(HISTORY_FIELDS) - set(rows[0])))
        return [*problems, f"{name}: columns missing: {missing}"], None
    by_id = {r["id"]: r for r in index["runs"]}
    listed = set()
    for line, row in enumerate(rows, start=2):
        run_id = row["run"]
        listed.add(run_id)
        run = by_id.get(run_id)
        if run is None:
            problems.append(
                f"run {run_id} ({row['experiment']}, started {row['started_at_utc']}) is in "
                f"{name} (line {line}) but was removed from the bundle"
            )
            continue
        for column, key in (
            ("experiment", "experiment"),
            ("started_at", "started_at"),
            ("verdict", "verdict"),
            ("gates_sha256", "gates_sha256"),
        ):
            if row[column] != run[key]:
                problems.append(
                    f"run {run_id}: {column} is {row[column]!r} in {name} (line {line}) but "
                    f"{run[key]!r} in the index"
                )
    problems += [
        f"run {run_id} is in the index but not in {name}"
        for run_id in by_id
        if run_id not in listed
    ]
    # The chain again, from the history rows and the manifests actually in the bundle.
    recomputed = chain(
        [
            (
                r["run"],
                r["started_at"],
                digests.get(f"{by_id[r['run']]['dir']}/{manifest.MANIFEST}", "")
                if r["run"] in by_id
                else "",
            )
            for r in sorted(rows, key=lambda r: (_seconds(r["started_at"]) or 0.0, r["run"] or ""))
        ]
    )
    head = recomputed[-1] if recomputed else GENESIS
    if head == index["chain"]["head"]:
        return problems, None
    return problems, (
        f"the chain recomputed from {name} and the bundle's manifests ends at {head}, "
        f"not at the recorded head {index['chain']['head']}"
    )


def _check_gates(index: Mapping[str, Any], digests: Mapping[str, str]) -> list[str]:
    problems = []
    have = set()
    for gate in index["gates"]:
        what = f"gates file {gate['file']} (from {gate['source']})"
        have.add(gate["sha256"])
        actual = digests.get(gate["file"])
        if actual is None:
            problems.append(f"{what}: removed")
        elif actual != gate["sha256"]:
            problems.append(f"{what}: swapped: its sha256 is {actual}, recorded {gate['sha256']}")
    for run in index["runs"]:
        if run["gates_sha256"] not in have:
            problems.append(
                f"run {run['id']}: its gates file (sha256 {run['gates_sha256']}) is not in the "
                "bundle"
            )
    return problems


def verify(bundle: Path, expected_head: str | None = None) -> Verification:
    """Check a bundle offline; raises ConfigError only when it is not a bundle at all."""
    digests, contents, problems = _members(bundle)
    index = _index(bundle, contents)
    expected = {INDEX, str(index["history"].get("file", HISTORY_CSV))}
    expected |= {g["file"] for g in index["gates"]}
    report_files = index["report"].get("files")
    if isinstance(report_files, dict):
        for name, digest in sorted(report_files.items()):
            expected.add(name)
            if name not in digests:
                problems.append(f"{name}: removed")
            elif digests[name] != digest:
                problems.append(f"{name}: edited (sha256 {digests[name]}, recorded {digest})")
    problems += _check_runs(index, digests, contents, expected)
    problems += _check_chain(index, expected_head)
    history, recomputed = _check_history(index, digests, contents)
    problems += history
    problems += _check_gates(index, digests)
    problems += [
        f"{name}: added (not in the index nor in a run's manifest)"
        for name in sorted(set(digests) - expected)
    ]
    if recomputed and not problems:
        # Every other finding explains this one; alone, it is the last line of defence.
        problems.append(recomputed)
    tool = {str(k): str(v) for k, v in index["tool"].items()}
    period = (str(index["period"].get("from")), str(index["period"].get("to")))
    return Verification(
        bundle, len(index["runs"]), index["chain"]["head"], period, tool, tuple(problems)
    )
