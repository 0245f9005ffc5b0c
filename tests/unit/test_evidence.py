"""The evidence bundle: real scored runs in, tampering out, each kind named."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from experiments.cmd_evidence import evidence, parse_when
from infra.errors import ConfigError, GamedayError
from scorecards import evidence as ev
from scorecards.gates import load_gates
from scorecards.history import StoredRun
from scorecards.sample import edit_measurements, write_sample_run
from scorecards.scoring import score

REPO = Path(__file__).resolve().parents[2]
DAY = 86_400.0
T0 = 1_795_000_000.0  # the sample runs' epoch
NOW = T0 + 10 * DAY


@dataclass(frozen=True)
class World:
    db: Path
    gates: Path
    runs: list[Path]
    bundle: Path
    head: str


def scored_run(tmp: Path, name: str, started: float, gates: Path, **figures: Any) -> Path:
    run = write_sample_run(tmp / "runs" / name, timeline=False, **figures)
    edit_measurements(run, lambda d: d["run"].update(started_at=started))
    score([run], load_gates(gates), clock=lambda: started + 300, history=tmp / "h.sqlite")
    return run


def build(tmp_path: Path) -> World:
    gates = tmp_path / "gates.yaml"
    gates.write_text((REPO / "experiments" / "gates.yaml").read_text())
    runs = [
        scored_run(tmp_path, "d1-region-kill", T0 + 1 * DAY, gates),
        scored_run(tmp_path, "d2-region-kill", T0 + 2 * DAY, gates, rto_us=61.0),
        scored_run(tmp_path, "d3-partition", T0 + 3 * DAY, gates, experiment="network-partition"),
        scored_run(tmp_path, "d4-region-kill", T0 + 4 * DAY, gates),
    ]
    # one more with a timeline, so charts/ (a subfolder) is evidence too
    run = write_sample_run(tmp_path / "runs" / "d5-region-kill", requests=3_000)
    edit_measurements(run, lambda d: d["run"].update(started_at=T0 + 5 * DAY))
    score([run], load_gates(gates), clock=lambda: NOW, history=tmp_path / "h.sqlite")
    runs.append(run)
    bundle = tmp_path / "out" / "bundle.tar.gz"
    done = ev.export(
        tmp_path / "h.sqlite",
        T0,
        NOW,
        bundle,
        tool_version="0.1.0",
        git_revision="abc123",
        clock=lambda: NOW,
    )
    return World(tmp_path / "h.sqlite", gates, runs, bundle, done.head)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Five scored runs and their bundle, shared: tests must not change them."""
    return build(tmp_path_factory.mktemp("evidence"))


@pytest.fixture
def fresh(tmp_path: Path) -> World:
    """The same, for a test that changes the runs or the gates file."""
    (tmp_path / "world").mkdir()
    return build(tmp_path / "world")


def members(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle, "r:gz") as tar:
        out = {}
        for m in tar.getmembers():
            handle = tar.extractfile(m)
            assert handle is not None
            out[m.name] = handle.read()
        return out


def rewrite(
    bundle: Path,
    target: Path,
    drop: Callable[[str], bool] = lambda _n: False,
    replace: dict[str, bytes] | None = None,
    index: Callable[[dict[str, Any]], None] | None = None,
    history: Callable[[list[str]], list[str]] | None = None,
) -> Path:
    """A copy of a bundle with members dropped or replaced (what a tamperer would do)."""
    files = members(bundle)
    files.update(replace or {})
    if index is not None:
        document = json.loads(files[ev.INDEX])
        index(document)
        files[ev.INDEX] = json.dumps(document).encode()
    if history is not None:
        lines = files[ev.HISTORY_CSV].decode().splitlines()
        files[ev.HISTORY_CSV] = ("\n".join(history(lines)) + "\n").encode()
    with tarfile.open(target, "w:gz") as tar:
        for name, data in files.items():
            if not drop(name):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return target


def index_of(bundle: Path) -> dict[str, Any]:
    return dict(json.loads(members(bundle)[ev.INDEX]))


def test_link_is_sha256_of_the_fields() -> None:
    text = "0" * 64 + "\nrun-1\n1795000000.000000\n" + "ab" * 32
    assert ev.link(ev.GENESIS, "run-1", "1795000000.000000", "ab" * 32) == (
        hashlib.sha256(text.encode()).hexdigest()
    )
    first = ev.link(ev.GENESIS, "a", "1.000000", "x")
    assert ev.chain([("a", "1.000000", "x"), ("b", "2.000000", "y")]) == [
        first,
        ev.link(first, "b", "2.000000", "y"),
    ]
    assert ev.stamp(1795000000.1234567) == "1795000000.123457"


def test_a_fresh_bundle_verifies(world: World) -> None:
    result = ev.verify(world.bundle)
    assert result.problems == ()
    assert result.ok and result.runs == 5 and result.head == world.head
    assert result.tool == {"name": "gameday", "version": "0.1.0", "git_revision": "abc123"}
    index = index_of(world.bundle)
    assert [r["id"] for r in index["runs"]] == [p.name for p in world.runs]
    assert [r["verdict"] for r in index["runs"]] == ["PASS", "FAIL", "PASS", "PASS", "PASS"]
    assert index["chain"]["head"] == index["runs"][-1]["link"] == world.head
    digest = hashlib.sha256(world.gates.read_bytes()).hexdigest()
    assert index["gates"] == [
        {"sha256": digest, "file": f"gates/{digest}.yaml", "source": str(world.gates)}
    ]
    assert ev.verify(world.bundle, expected_head=world.head).ok


def test_the_bundle_holds_every_piece(world: World) -> None:
    files = members(world.bundle)
    assert next(iter(files)) == ev.INDEX
    for run in world.runs:
        recorded = json.loads((run / "manifest.json").read_text())["files"]
        for rel in [*recorded, "manifest.json"]:
            assert files[f"runs/{run.name}/{rel}"] == (run / rel).read_bytes()
    assert any(n.startswith("runs/d5-region-kill/charts/") for n in files)
    lines = files[ev.HISTORY_CSV].decode().splitlines()
    assert lines[0] == ",".join(ev.HISTORY_FIELDS)
    assert lines[2].startswith("d2-region-kill,region-kill,1795172800.000000,2026-11-20T11:06:40Z,")
    assert b"# " in files[ev.REPORT_MD] and b"Residual risks" in files[ev.REPORT_HTML]
    # d2 failed, but the latest region-kill drill passed: no residual risk left
    assert b"None: every gate of every experiment" in files[ev.REPORT_HTML]
    assert index_of(world.bundle)["report"]["decision"] == "GO"


def test_removing_a_run_directory_is_named(world: World, tmp_path: Path) -> None:
    cut = rewrite(world.bundle, tmp_path / "cut.tar.gz", drop=lambda n: "/d2-region-kill/" in n)
    problems = ev.verify(cut).problems
    assert problems == (
        "run d2-region-kill (region-kill, started 2026-11-20T11:06:40Z): removed from the bundle",
    )


def test_removing_a_run_and_its_index_entry_is_named_by_the_history(
    world: World, tmp_path: Path
) -> None:
    def forget(index: dict[str, Any]) -> None:
        index["runs"] = [r for r in index["runs"] if r["id"] != "d3-partition"]

    cut = rewrite(
        world.bundle, tmp_path / "cut.tar.gz", drop=lambda n: "/d3-partition/" in n, index=forget
    )
    problems = ev.verify(cut).problems
    assert (
        "run d3-partition (network-partition, started 2026-11-21T11:06:40Z) is in history.csv "
        "(line 4) but was removed from the bundle"
    ) in problems
    assert any(p.startswith("chain broken at run d4-region-kill") for p in problems)


def test_removing_a_run_everywhere_still_breaks_the_chain(world: World, tmp_path: Path) -> None:
    def forget(index: dict[str, Any]) -> None:
        index["runs"] = [r for r in index["runs"] if r["id"] != "d3-partition"]

    cut = rewrite(
        world.bundle,
        tmp_path / "cut.tar.gz",
        drop=lambda n: "/d3-partition/" in n,
        index=forget,
        history=lambda lines: [x for x in lines if not x.startswith("d3-partition,")],
    )
    problems = ev.verify(cut).problems
    assert problems[0].startswith(
        "chain broken at run d4-region-kill (started 2026-11-22T11:06:40Z): its link does not "
        "follow from run d2-region-kill: a run between them was removed"
    )
    assert "chain length 5 but 4 runs in the index: runs were removed or added" in problems
    assert any(p.startswith("history.csv: edited") for p in problems)


def test_a_rebuilt_chain_is_caught_only_by_the_recorded_head(world: World, tmp_path: Path) -> None:
    # A tamperer who rewrites index, links, head and history.csv consistently...
    def forget(index: dict[str, Any]) -> None:
        runs = [r for r in index["runs"] if r["id"] != "d3-partition"]
        links = ev.chain([(r["id"], r["started_at"], r["manifest_sha256"]) for r in runs])
        for run, value in zip(runs, links, strict=True):
            run["link"] = value
        index["runs"], index["chain"]["head"], index["chain"]["length"] = runs, links[-1], 4

    def rows(lines: list[str]) -> list[str]:
        return [x for x in lines if not x.startswith("d3-partition,")]

    files = members(world.bundle)
    history = ("\n".join(rows(files[ev.HISTORY_CSV].decode().splitlines())) + "\n").encode()

    def fix_digest(index: dict[str, Any]) -> None:
        forget(index)
        index["history"]["sha256"] = hashlib.sha256(history).hexdigest()

    cut = rewrite(
        world.bundle,
        tmp_path / "cut.tar.gz",
        drop=lambda n: "/d3-partition/" in n,
        replace={ev.HISTORY_CSV: history},
        index=fix_digest,
    )
    assert ev.verify(cut).ok  # ...is consistent on its own,
    problems = ev.verify(cut, expected_head=world.head).problems  # but not against the head
    assert len(problems) == 1 and "is not the expected " + world.head in problems[0]


def test_editing_a_scorecard_is_named(world: World, tmp_path: Path) -> None:
    name = "runs/d2-region-kill/scorecard.md"
    text = members(world.bundle)[name].replace(b"FAIL", b"PASS")
    edited = rewrite(world.bundle, tmp_path / "e.tar.gz", replace={name: text})
    assert ev.verify(edited).problems == (
        "run d2-region-kill (region-kill, started 2026-11-20T11:06:40Z): changed: scorecard.md",
    )


def test_editing_a_scorecard_and_its_manifest_is_named(world: World, tmp_path: Path) -> None:
    files = members(world.bundle)
    card = files["runs/d2-region-kill/scorecard.json"].replace(b'"FAIL"', b'"PASS"')
    recorded = json.loads(files["runs/d2-region-kill/manifest.json"])
    recorded["files"]["scorecard.json"] = hashlib.sha256(card).hexdigest()
    forged = json.dumps(recorded).encode()
    edited = rewrite(
        world.bundle,
        tmp_path / "e.tar.gz",
        replace={
            "runs/d2-region-kill/scorecard.json": card,
            "runs/d2-region-kill/manifest.json": forged,
        },
    )
    problems = ev.verify(edited).problems
    assert len(problems) == 1
    assert problems[0].startswith(
        "run d2-region-kill (region-kill, started 2026-11-20T11:06:40Z): manifest.json edited"
    )


def test_swapping_a_gates_file_is_named(world: World, tmp_path: Path) -> None:
    entry = index_of(world.bundle)["gates"][0]
    lax = members(world.bundle)[entry["file"]].replace(b"less_than: 60", b"less_than: 600")
    swapped = rewrite(world.bundle, tmp_path / "s.tar.gz", replace={entry["file"]: lax})
    assert ev.verify(swapped).problems == (
        f"gates file {entry['file']} (from {entry['source']}): swapped: its sha256 is "
        f"{hashlib.sha256(lax).hexdigest()}, recorded {entry['sha256']}",
    )


def test_added_and_duplicated_members_are_named(world: World, tmp_path: Path) -> None:
    extra = rewrite(
        world.bundle,
        tmp_path / "x.tar.gz",
        replace={"runs/d1-region-kill/note.txt": b"x", "notes.txt": b"y"},
    )
    assert ev.verify(extra).problems == (
        "run d1-region-kill (region-kill, started 2026-11-19T11:06:40Z): added: note.txt",
        "notes.txt: added (not in the index nor in a run's manifest)",
    )
    twice = tmp_path / "twice.tar.gz"
    with tarfile.open(twice, "w:gz") as tar:
        for name, data in [*members(world.bundle).items(), (ev.INDEX, b"{}")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert ev.verify(twice).problems == (
        "index.json: appears twice (a later copy would shadow the first)",
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "no such bundle file", id="missing"),
        pytest.param(b"not a tarball", "not a readable tar.gz bundle", id="not-tar"),
        pytest.param({"other.txt": b"x"}, "index.json: missing", id="no-index"),
        pytest.param({ev.INDEX: b"{"}, "index.json: not valid JSON", id="bad-json"),
        pytest.param(
            {ev.INDEX: json.dumps({"schema": ev.SCHEMA, "version": 1}).encode()},
            "index.json: runs: expected a list",
            id="no-runs",
        ),
        pytest.param(
            {ev.INDEX: json.dumps({"schema": "x"}).encode()},
            "index.json: schema: expected 'gameday.evidence'",
            id="other-schema",
        ),
    ],
)
def test_not_a_bundle_is_bad_input(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "b.tar.gz"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, dict):
        with tarfile.open(path, "w:gz") as tar:
            for name, data in content.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ConfigError, match=message):
        ev.verify(path)


def test_export_refuses_a_run_edited_after_scoring(fresh: World, tmp_path: Path) -> None:
    card = fresh.runs[1] / "scorecard.md"
    card.write_text(card.read_text().replace("FAIL", "PASS"))
    with pytest.raises(GamedayError, match=r"d2-region-kill .*changed: scorecard.md"):
        ev.export(fresh.db, T0, NOW, tmp_path / "b2.tar.gz", tool_version="x", git_revision="y")
    assert not (tmp_path / "b2.tar.gz").exists()
    assert list(fresh.bundle.parent.iterdir()) == [fresh.bundle]  # no temporary left behind


def test_export_needs_the_gates_file_the_runs_were_scored_against(
    fresh: World, tmp_path: Path
) -> None:
    original = fresh.gates.read_text()
    fresh.gates.write_text(original.replace("less_than: 60", "less_than: 90"))
    with pytest.raises(ConfigError, match=r"gates file with sha256 \w+ \(scored runs d1-reg"):
        ev.export(fresh.db, T0, NOW, tmp_path / "b2.tar.gz", tool_version="x", git_revision="y")
    kept = tmp_path / "kept-gates.yaml"
    kept.write_text(original)
    done = ev.export(
        fresh.db,
        T0,
        NOW,
        tmp_path / "b2.tar.gz",
        tool_version="x",
        git_revision="y",
        gates_files=[kept],
    )
    assert ev.verify(done.path).ok
    assert index_of(done.path)["gates"][0]["source"] == str(kept)


def test_export_of_an_empty_period_or_missing_run_is_bad_input(
    fresh: World, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="no drill started between"):
        ev.export(
            fresh.db, NOW, NOW + DAY, tmp_path / "b.tar.gz", tool_version="x", git_revision="y"
        )
    for path in sorted(fresh.runs[0].rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    fresh.runs[0].rmdir()
    with pytest.raises(ConfigError, match=r"d1-region-kill .* directory missing"):
        ev.export(fresh.db, T0, NOW, tmp_path / "b.tar.gz", tool_version="x", git_revision="y")
    with pytest.raises(ConfigError, match="no history yet"):
        ev.export(
            tmp_path / "none.sqlite",
            T0,
            NOW,
            tmp_path / "b.tar.gz",
            tool_version="x",
            git_revision="y",
        )


def test_a_period_selects_its_runs(world: World, tmp_path: Path) -> None:
    done = ev.export(
        world.db,
        T0 + 2 * DAY,
        T0 + 3 * DAY,
        tmp_path / "b.tar.gz",
        tool_version="x",
        git_revision="y",
    )
    assert [r["id"] for r in index_of(done.path)["runs"]] == ["d2-region-kill", "d3-partition"]
    assert ev.verify(done.path).ok


def test_parse_when() -> None:
    assert parse_when("2026-11-30", "--from", False) == 1_795_996_800.0
    assert parse_when("2026-11-30", "--to", True) == 1_795_996_800.0 + DAY - 1e-6
    assert parse_when("2026-11-30T12:00:00Z", "--to", True) == 1_795_996_800.0 + DAY / 2
    assert parse_when("2026-11-30T12:00:00", "--to", True) == 1_795_996_800.0 + DAY / 2
    with pytest.raises(ConfigError, match=r"--from: expected a date .* got 'yesterday'"):
        parse_when("yesterday", "--from", False)


def cli(args: list[str]) -> Result:
    return CliRunner().invoke(evidence, args, obj={"clock": lambda: NOW}, catch_exceptions=False)


def test_cli_exit_codes(world: World, tmp_path: Path) -> None:
    out = tmp_path / "cli.tar.gz"
    made = cli(["--history", str(world.db), "--since", "30", "--out", str(out), "--json"])
    assert made.exit_code == 0, made.output
    head = json.loads(made.stdout)["chain_head"]
    assert json.loads(made.stdout)["runs"] == 5
    assert cli(["--verify", str(out)]).exit_code == 0
    assert cli(["--verify", str(out), "--head", head]).exit_code == 0
    bad_head = cli(["--verify", str(out), "--head", "0" * 64])
    assert bad_head.exit_code == 1 and "VERIFICATION FAILED (1 problem(s))" in bad_head.stdout
    cut = rewrite(out, tmp_path / "cut.tar.gz", drop=lambda n: "/d4-region-kill/" in n)
    failed = cli(["--verify", str(cut), "--json"])
    assert failed.exit_code == 1
    assert json.loads(failed.stdout)["problems"] == [
        "run d4-region-kill (region-kill, started 2026-11-22T11:06:40Z): removed from the bundle"
    ]
    assert cli(["--verify", str(tmp_path / "none.tar.gz")]).exit_code == 2
    assert cli(["--since", "3", "--from", "2026-11-01", "--history", str(world.db)]).exit_code == 2
    assert cli(["--head", head, "--history", str(world.db)]).exit_code == 2
    window = cli(
        [
            *("--history", str(world.db), "--from", "2026-11-19", "--to", "2026-11-19"),
            *("--out", str(tmp_path / "w.tar.gz"), "--json"),
        ]
    )
    assert window.exit_code == 0 and json.loads(window.stdout)["runs"] == 1


def test_malformed_fields_are_named_not_crashed_on(world: World, tmp_path: Path) -> None:
    def garble(index: dict[str, Any]) -> None:
        index["runs"][0]["started_at"] = "soon"

    bad = rewrite(world.bundle, tmp_path / "i.tar.gz", index=garble)
    with pytest.raises(
        ConfigError, match=r"runs\[0\].started_at: expected epoch seconds, got 'soon'"
    ):
        ev.verify(bad)

    def row(lines: list[str]) -> list[str]:
        first = lines[1].split(",")
        first[2] = "x"
        return [lines[0], ",".join(first), *lines[2:]]

    edited = rewrite(world.bundle, tmp_path / "h.tar.gz", history=row)
    problems = ev.verify(edited).problems
    assert problems[0].startswith("history.csv: edited")
    assert (
        "run d1-region-kill: started_at is 'x' in history.csv (line 2) but '1795086400.000000' "
        "in the index"
    ) in problems


def test_run_ids_are_unique_and_name_repeated_drills() -> None:
    def stored(key: str, i: int) -> StoredRun:
        return StoredRun(i, key, "region-kill", key, T0 + i, T0 + i, T0 + i, "PASS", None)

    keys = ["/r/a", "/s/a", "/r/20261128T1-region-kill/run-01", "/r/20261129T1-region-kill/run-01"]
    assert ev._run_ids([stored(k, i) for i, k in enumerate(keys)]) == [
        "a",
        "a-2",
        "20261128T1-region-kill-run-01",
        "20261129T1-region-kill-run-01",
    ]


def test_history_rows_without_a_gates_digest_still_verify(fresh: World, tmp_path: Path) -> None:
    conn = sqlite3.connect(fresh.db)
    conn.execute("UPDATE runs SET gates_sha256 = NULL")  # rows written by schema version 1
    conn.commit()
    conn.close()
    done = ev.export(fresh.db, T0, NOW, tmp_path / "b.tar.gz", tool_version="x", git_revision="y")
    assert ev.verify(done.path).problems == ()


def test_make_evidence_runs_the_export() -> None:
    done = subprocess.run(
        ["make", "-n", "-C", str(REPO), "evidence", "EVIDENCE_ARGS=--since 7"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert ".venv/bin/gameday evidence --since 7" in done.stdout
