"""The scorecard and the readiness report open in real headless Chromium, without errors.

Screenshots go to test-artifacts/ (scorecard.png, report.png). Skipped only when
Chromium is absent and GAMEDAY_REQUIRE_BROWSER is not "1" (CI sets it and installs
Debian's `chromium`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from scorecards.gates import parse_gates
from scorecards.history import connect, record
from scorecards.report import report
from scorecards.sample import edit_measurements, write_sample_run
from scorecards.scoring import score

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
T = 1_795_000_500.0

pytestmark = pytest.mark.skipif(
    CHROMIUM is None and os.environ.get("GAMEDAY_REQUIRE_BROWSER") != "1",
    reason="chromium not installed (apt-get install chromium; GAMEDAY_REQUIRE_BROWSER=1 "
    "makes this a failure)",
)

GATES = (REPO / "experiments" / "gates.yaml").read_text()


def chromium(page: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "chromium is required (GAMEDAY_REQUIRE_BROWSER=1)"
    with tempfile.TemporaryDirectory(prefix="gd-chromium-") as profile:
        return subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                "--v=0",
                f"--user-data-dir={profile}",
                "--window-size=1280,2000",
                *mode,
                page.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def page_errors(stderr: str) -> list[str]:
    """Console errors and failed loads Chromium logged for the page (not its own D-Bus noise)."""
    return [
        line
        for line in stderr.splitlines()
        if re.search(r"CONSOLE|Uncaught|net::ERR_|Failed to load resource", line)
    ]


def check_page(page: Path, shot: Path, expected: list[str]) -> None:
    dom = chromium(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for text in expected:
        assert text in dom.stdout
    assert page_errors(dom.stderr) == []
    ARTIFACTS.mkdir(exist_ok=True)
    shot.unlink(missing_ok=True)
    done = chromium(page, f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert page_errors(done.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one


def test_scorecard_and_report_render_in_chromium(tmp_path: Path) -> None:
    gates = parse_gates(GATES, Path("experiments/gates.yaml"))
    run = write_sample_run(tmp_path / "region-kill-1", requests=50_000, lost_after_fault=2)
    outcome = score([run], gates, clock=lambda: T, history=tmp_path / "h.sqlite")
    check_page(
        run / "scorecard.html",
        ARTIFACTS / "scorecard.png",
        ["NO-GO", "What blocks the release", "Acknowledged writes lost after the fault"],
    )

    conn = connect(tmp_path / "h.sqlite")
    for i, rto in enumerate([12.0, 18.5, 15.0, 22.0]):
        when = T + i * 86_400.0
        other = write_sample_run(tmp_path / f"drill-{i}", timeline=False, rto_us=rto)

        def restart(doc: dict[str, Any], when: float = when) -> None:
            doc["run"]["started_at"] = when

        edit_measurements(other, restart)
        card = score([other], gates, clock=partial(float, when + 600), charts=False)
        record(conn, card.runs[0].card)
    conn.close()
    assert outcome.verdict.value == "FAIL"
    result = report(
        tmp_path / "h.sqlite", 90, 30, tmp_path / "report", clock=lambda: T + 5 * 86_400.0
    )
    assert result.charts
    check_page(
        tmp_path / "report" / "report.html",
        ARTIFACTS / "report.png",
        ["Readiness", "rule of three"],
    )
