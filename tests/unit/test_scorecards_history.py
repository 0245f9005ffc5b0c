"""History migrations, and the readiness report's statistics on constructed data."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from infra.errors import ConfigError
from scorecards import stats
from scorecards.evaluate import evaluate
from scorecards.gates import parse_gates
from scorecards.history import SCHEMA_VERSION, connect, migrate, record, runs_since, schema_version
from scorecards.report import DAY, report
from scorecards.rundir import load_run
from scorecards.sample import TARGET_GATES, edit_measurements, write_sample_run

GATES = parse_gates(
    TARGET_GATES,
    Path("gates.yaml"),
)
START = 1_795_000_000.0


def add_run(conn: sqlite3.Connection, path: Path, started_at: float, **figures: Any) -> None:
    run = write_sample_run(path, timeline=False, **figures)

    def when(doc: dict[str, Any]) -> None:
        doc["run"]["started_at"] = started_at

    edit_measurements(run, when)
    record(conn, evaluate([load_run(run)], GATES, started_at + 600))


def test_a_v1_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    conn = sqlite3.connect(db, isolation_level=None)
    assert migrate(conn, target=1) == 1
    conn.execute(
        "INSERT INTO runs (run_key, experiment, run_dir, started_at, scored_at, verdict, "
        "scorecard) VALUES ('k', 'region-kill', 'd', 1.0, 2.0, 'PASS', '{}')"
    )
    conn.close()

    conn = connect(db)
    assert schema_version(conn) == SCHEMA_VERSION == 2
    row = conn.execute("SELECT experiment, verdict, gates_sha256 FROM runs").fetchone()
    assert row == ("region-kill", "PASS", None)
    versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
    assert versions == [(1,), (2,)]
    conn.close()
    # Opening again is a no-op.
    assert schema_version(connect(db)) == 2


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    connect(db).execute("INSERT INTO schema_version VALUES (99, 'future')")
    with pytest.raises(ConfigError, match="schema version 99 is newer"):
        connect(db)


def test_a_file_that_is_not_a_database_is_a_config_error(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    db.write_text("not sqlite at all, just text " * 100)
    with pytest.raises(ConfigError, match="not a usable history database"):
        connect(db)


def test_rescoring_a_run_replaces_it(tmp_path: Path) -> None:
    conn = connect(tmp_path / "h.sqlite")
    add_run(conn, tmp_path / "r1", START, rto_us=10.0)
    add_run(conn, tmp_path / "r1", START, rto_us=70.0)
    runs = runs_since(conn, None)
    assert len(runs) == 1
    assert runs[0].verdict == "FAIL"
    assert {g.gate_id for g in runs[0].gates} >= {"rto_seconds[predict/us]", "rpo_seconds[eu]"}


def test_report_statistics_freshness_and_statements(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    conn = connect(db)
    for i, rto in enumerate([10.0, 20.0, 30.0, 40.0]):
        add_run(conn, tmp_path / f"r{i}", START + i * DAY, rto_us=rto, rpo_us=1.0 + i)
    add_run(conn, tmp_path / "old", START - 200 * DAY, rto_us=5.0)  # outside the window
    conn.close()
    latest = START + 3 * DAY
    out = tmp_path / "report"

    fresh = report(db, since_days=90, max_age_days=30, out_dir=out, clock=lambda: latest + DAY)
    assert fresh.decision == "GO"
    assert [(r.experiment, r.jurisdiction) for r in fresh.rows] == [
        ("region-kill", "eu"),
        ("region-kill", "us"),
    ]
    us = fresh.rows[1]
    assert (us.drills, us.passed, us.failed, us.inconclusive) == (4, 4, 0, 0)
    assert us.rto is not None and us.rpo is not None
    assert (us.rto.n, us.rto.median, us.rto.max) == (4, 25.0, 40.0)
    assert us.rto.p95 == pytest.approx(38.5)  # 30 + 0.85 * 10
    assert (us.rpo.median, us.rpo.max) == (2.5, 4.0)
    assert 10.0 <= us.rto.ci_low < 25.0 < us.rto.ci_high <= 40.0
    assert us.age_days == pytest.approx(1.0)
    assert us.statements[0].startswith(
        "0 failures in 4 drills: with 95 % confidence the failure rate is below 52.7 % "
        "(exact binomial bound; the rule of three, 3/n, holds from about 10 drills)"
    )
    assert "only 19 % confidence; it takes 59 drills" in us.statements[1]
    text = (out / "report.md").read_text()
    assert text.startswith("# ✅ Readiness: GO")
    assert "| RTO | 4 | 25.0 s | 38.5 s | 40.0 s |" in text
    assert (out / "report.html").exists() and (out / "rto-trend.png").exists()

    stale = report(
        db, since_days=90, max_age_days=30, out_dir=None, clock=lambda: latest + 31 * DAY
    )
    assert stale.decision == "NO-GO"
    assert all(r.decision == "NO-GO" and r.why.startswith("stale") for r in stale.rows)


def test_report_is_no_go_on_a_failed_latest_drill_and_counts_failures(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    conn = connect(db)
    add_run(conn, tmp_path / "a", START, rto_us=10.0)
    add_run(conn, tmp_path / "b", START + 10, rto_us=None)  # never recovered
    add_run(conn, tmp_path / "c", START + 20, saturated=True)  # inconclusive
    conn.close()
    result = report(db, 90, 30, None, clock=lambda: START + DAY)
    us = next(r for r in result.rows if r.jurisdiction == "us")
    assert (us.decision, us.latest_verdict) == ("NO-GO", "INCONCLUSIVE")
    assert (us.passed, us.failed, us.inconclusive, us.rto_not_recovered) == (1, 1, 1, 1)
    assert us.rto is not None and us.rto.n == 1
    assert us.statements[0].startswith("1 failure in 2 drills: observed failure rate 50.0 %")
    assert result.decision == "NO-GO"


def test_an_empty_history_is_no_go(tmp_path: Path) -> None:
    result = report(tmp_path / "h.sqlite", 90, 30, tmp_path / "out", clock=lambda: START)
    assert result.decision == "NO-GO"
    assert "No drill in the window" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        pytest.param(1, 0.95, id="one"),
        pytest.param(10, 1 - 0.05 ** (1 / 10), id="ten"),
        pytest.param(59, 1 - 0.05 ** (1 / 59), id="fifty-nine"),
    ],
)
def test_zero_failure_bound_is_exact_and_close_to_the_rule_of_three(
    n: int, expected: float
) -> None:
    assert stats.failure_rate_upper_bound(0, n) == pytest.approx(expected, abs=1e-9)
    if n >= 10:
        assert stats.failure_rate_upper_bound(0, n) == pytest.approx(3 / n, rel=0.15)


def test_the_worst_of_n_bounds_the_p95_only_from_59() -> None:
    assert stats.max_covers_p95_confidence(58) < 0.95 <= stats.max_covers_p95_confidence(59)
    assert "95.2 % confidence" in stats.statements(59, 0)[1]
    assert "it takes 59 drills" in stats.statements(58, 0)[1]


def test_percentile_and_bootstrap_exact_values() -> None:
    assert stats.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert stats.percentile([float(v) for v in range(1, 21)], 95) == pytest.approx(19.05)
    assert stats.bootstrap_ci([7.0, 7.0, 7.0]) == (7.0, 7.0)
    assert stats.bootstrap_ci([3.0]) == (3.0, 3.0)
    low, high = stats.bootstrap_ci([10.0, 20.0, 30.0, 40.0])
    assert (low, high) == stats.bootstrap_ci([10.0, 20.0, 30.0, 40.0])  # seeded: repeatable
    assert 10.0 <= low < 25.0 < high <= 40.0


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        pytest.param(1, "below 95.0 % (exact binomial bound", id="one-drill"),
        pytest.param(20, "below 3/20 = 15.0 % (rule of three; exact bound 13.9 %)", id="twenty"),
    ],
)
def test_what_zero_failures_can_show(n: int, expected: str) -> None:
    from scorecards.stats import statements

    assert expected in statements(n, 0)[0]
