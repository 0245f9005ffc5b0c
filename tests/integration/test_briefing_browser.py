"""The readiness briefing opens in real headless Chromium, with its sparklines and risk table.

Screenshot: test-artifacts/briefing.png. Skipped, like the scorecard's page test, only
when Chromium is absent and GAMEDAY_REQUIRE_BROWSER is not "1".
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

from scorecards.briefing import HINTS, MISMATCH
from scorecards.gates import parse_gates
from scorecards.report import DAY, report
from scorecards.sample import edit_measurements, write_sample_run
from scorecards.scoring import score
from tests.integration.test_scorecards_browser import (
    ARTIFACTS,
    GATES,
    check_page,
    chromium,
    pytestmark,
)

__all__ = ["pytestmark"]  # the Chromium skip applies here too
T = 1_795_000_000.0


def drill(tmp: Path, name: str, day: float, **figures: Any) -> None:
    run = write_sample_run(tmp / name, timeline=False, **figures)

    def restart(doc: dict[str, Any], when: float = T + day * DAY) -> None:
        doc["run"]["started_at"] = when

    edit_measurements(run, restart)
    gates = parse_gates(GATES, Path("experiments/gates.yaml"))
    score([run], gates, clock=partial(float, T + day * DAY + 600), history=tmp / "h.sqlite")


def test_briefing_renders_in_chromium(tmp_path: Path) -> None:
    for i, rto in enumerate([12.0, 18.5, 15.0, 22.0, 64.0]):
        drill(tmp_path, f"region-kill-{i}", 40 + i, rto_us=rto)
    drill(tmp_path, "partition-0", 41, experiment="network-partition", lost_after_fault=12)
    drill(tmp_path, "partition-1", 43, experiment="network-partition", mismatch=True)
    drill(tmp_path, "corruption-0", 2, experiment="replica-corruption", time_to_detect=4.0)
    page = tmp_path / "report" / "briefing.html"
    result = report(tmp_path / "h.sqlite", 90, 30, None, clock=lambda: T + 45 * DAY, briefing=page)
    assert result.decision == "NO-GO"
    dom = chromium(page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # 3 experiments x 2 jurisdictions, each with an RTO and an RPO sparkline
    assert dom.stdout.count("<svg") == 12
    risks = dom.stdout.split("Residual risks", 1)[1].split("</table>", 1)[0]
    # header; 2 mismatched RTOs, 2 failed RTOs, the corruption drill's error budget and age
    assert len(re.findall(r"<tr>", risks)) == 1 + 6
    check_page(
        page,
        ARTIFACTS / "briefing.png",
        [
            "Readiness briefing",
            "Residual risks",
            HINTS["rto_seconds"].split("`")[0],  # backticked words render as <code>
            MISMATCH,
            HINTS["error_budget"],
            "run it again",
            "What these drills can and cannot show",
            "rule of three",
        ],
    )
