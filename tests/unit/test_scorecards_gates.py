"""Gates files: validation with errors naming the file and field, and the override order."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import ConfigError
from scorecards.gates import load_gates, parse_gates
from scorecards.sample import TARGET_GATES

REPO = Path(__file__).resolve().parents[2]

BASE = TARGET_GATES


def test_the_shipped_gates_file_holds_the_platform_targets() -> None:
    gates = load_gates(REPO / "experiments" / "gates.yaml")
    default = gates.resolve(None, None)
    assert default.rto_seconds.comparison == "<"
    assert default.rto_seconds.threshold == 60
    assert default.rto_seconds.statistic == "max"
    assert default.rpo_seconds.threshold == 300
    for key in ("relapses", "lost_after_fault", "residency_violations", "wrong_answers"):
        assert default.spec(key).comparison == "<="
        assert default.spec(key).threshold == 0
    assert not default.time_to_detect_seconds.enabled
    assert gates.resolve("replica-corruption", "us").time_to_detect_seconds.enabled


def test_a_gates_file_without_relapses_gets_the_strict_default() -> None:
    # Older gates files predate the gate: they get at_most 0, not "no gate".
    gates = parse_gates(BASE, Path("g.yaml"))
    relapses = gates.resolve(None, None).relapses
    assert (relapses.enabled, relapses.comparison, relapses.threshold) == (True, "<=", 0)
    loose = parse_gates(BASE + "jurisdictions:\n  eu: {relapses: {at_most: 2}}\n", Path("g"))
    assert loose.resolve(None, "eu").relapses.threshold == 2
    assert loose.resolve(None, "us").relapses.threshold == 0


def test_overrides_merge_defaults_then_jurisdiction_then_experiment_then_both() -> None:
    text = (
        BASE
        + """
jurisdictions:
  eu: {rto_seconds: {less_than: 45, statistic: p95}}
experiments:
  split:
    rto_seconds: {less_than: 30}
    jurisdictions:
      eu: {rto_seconds: {at_most: 20}}
"""
    )
    gates = parse_gates(text, Path("g.yaml"))
    assert gates.resolve(None, "us").rto_seconds.threshold == 60
    eu = gates.resolve(None, "eu").rto_seconds
    assert (eu.threshold, eu.statistic) == (45, "p95")
    assert gates.resolve("split", "us").rto_seconds.threshold == 30
    both = gates.resolve("split", "eu").rto_seconds
    # at_most replaces less_than; the jurisdiction's statistic survives the later overrides.
    assert (both.comparison, both.threshold, both.statistic) == ("<=", 20, "p95")
    assert gates.resolve("unknown-experiment", None).rto_seconds.threshold == 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(BASE.replace("version: 1", "version: 2"), "version", id="version"),
        pytest.param(
            BASE.replace("{less_than: 60}", "{less_than: fast}"),
            "gates.rto_seconds.less_than",
            id="not-a-number",
        ),
        pytest.param(
            BASE.replace("{less_than: 60}", "{less_than: 60, at_most: 50}"),
            "exactly one of less_than or at_most",
            id="two-thresholds",
        ),
        pytest.param(
            BASE.replace("{less_than: 60}", "{less_than: 60, statistic: mean}"),
            "gates.rto_seconds.statistic",
            id="bad-statistic",
        ),
        pytest.param(
            BASE.replace("  wrong_answers: {at_most: 0}\n", ""),
            "gates.wrong_answers: field required",
            id="missing-gate",
        ),
        pytest.param(
            BASE + "experiments:\n  x: {rpo_secs: {less_than: 1}}\n",
            "experiments.x.rpo_secs",
            id="typo-in-experiment",
        ),
        pytest.param(
            BASE + "jurisdictions:\n  eu: {error_budget: {at_most: -1}}\n",
            "jurisdictions.eu.error_budget.at_most",
            id="negative",
        ),
        pytest.param("gates: [1, 2", "not valid YAML", id="yaml"),
        pytest.param("- 1\n", "expected a mapping", id="not-a-mapping"),
    ],
)
def test_bad_gates_name_the_file_and_the_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_gates(text, Path("conf/gates.yaml"))
    message = str(info.value)
    assert message.startswith("conf/gates.yaml: ")
    assert expected.lower() in message.lower()


def test_a_missing_gates_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read"):
        load_gates(tmp_path / "nope.yaml")
