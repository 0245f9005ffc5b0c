"""`gameday compare` on constructed scored runs: exact values, the noise statement, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from experiments.cmd_compare import compare as compare_command
from infra.errors import ConfigError
from scorecards import compare_render
from scorecards.compare import Comparison, GateChange, compare, expand, last_two
from scorecards.gates import Gates, parse_gates
from scorecards.sample import TARGET_GATES, write_sample_run
from scorecards.stats import bootstrap_ci

T = 1_795_000_500.0
# The fix is held to its own bound, as network-partition-guarded is in gates.yaml.
GATES_TEXT = TARGET_GATES + "experiments:\n  fixed:\n    lost_after_fault: {at_most: 80}\n"


@pytest.fixture
def gates(tmp_path: Path) -> Gates:
    return parse_gates(GATES_TEXT, tmp_path / "gates.yaml")


def run(tmp_path: Path, name: str, **figures: Any) -> Path:
    return write_sample_run(tmp_path / name, timeline=False, **figures)


def broken_and_fixed(tmp_path: Path) -> tuple[Path, Path]:
    a = run(tmp_path, "a", experiment="broken", lost_after_fault=412, rto_us=3.0)
    b = run(tmp_path, "b", experiment="fixed", lost_after_fault=31, rto_us=25.0)
    return a, b


def gate(comparison: Comparison, gate_id: str) -> GateChange:
    return next(g for g in comparison.gates if g.id == gate_id)


def test_single_runs_gate_by_gate(tmp_path: Path, gates: Gates) -> None:
    a, b = broken_and_fixed(tmp_path)
    result = compare([a], [b], gates, T)
    assert (result.a.label, result.b.label) == ("broken (a)", "fixed (b)")
    assert (result.a.card.verdict.value, result.b.card.verdict.value) == ("FAIL", "PASS")

    lost = gate(result, "lost_after_fault[us]")
    assert (lost.a and lost.a.value, lost.b and lost.b.value, lost.change) == (412.0, 31.0, -381.0)
    assert lost.verdict_changed and lost.notable
    assert (lost.a and lost.a.threshold, lost.b and lost.b.threshold) == (0.0, 80.0)

    write_rto = gate(result, "rto_seconds[write/us]")
    assert (write_rto.change, write_rto.verdict_changed, write_rto.notable) == (22.0, False, True)
    # 0.3 s on a 60 s limit is under a tenth of the room the gate allows: not named.
    latency = gate(result, "p99_latency_ms[predict/us]")
    assert (latency.change, latency.notable) == (0.0, False)
    assert [g.id for g in result.changes] == [
        "lost_after_fault[us]",
        "rto_seconds[predict/us]",
        "rto_seconds[write/us]",
    ]
    assert lost.noise.status == "unknown"
    assert lost.noise.statement.startswith("1 usable run on a side: run-to-run noise not measured")
    assert result.notes[0] == (
        "different experiments: each side is held to its own gates (A 'broken', B 'fixed')"
    )


def test_a_small_change_on_a_single_run_is_not_named(tmp_path: Path, gates: Gates) -> None:
    a = run(tmp_path, "a", rto_us=14.2)
    b = run(tmp_path, "b", rto_us=19.9)  # +5.7 s: under 10 % of the 60 s limit
    result = compare([a], [b], gates, T)
    assert gate(result, "rto_seconds[write/us]").change == pytest.approx(5.7)
    assert result.changes == []


def test_markdown_names_both_changes(tmp_path: Path, gates: Gates) -> None:
    a, b = broken_and_fixed(tmp_path)
    text = compare_render.to_markdown(compare([a], [b], gates, T))
    assert (
        "- **Acknowledged writes lost after the fault** (us): 412 writes → 31 writes "
        "(-381 writes); FAIL → PASS"
    ) in text
    assert (
        "- **Recovery time (RTO, client side)** (write · us): 3 s → 25 s (+22 s); PASS on both"
        in (text)
    )
    assert (
        "| Acknowledged writes lost after the fault | us | 412 writes | 31 writes | -381 writes | "
        "A ≤ 0 writes · B ≤ 80 writes | FAIL → PASS | not measured |"
    ) in text
    assert "| verdict | ❌ FAIL | ✅ PASS |" in text


def test_json_and_html_outputs(tmp_path: Path, gates: Gates) -> None:
    a, b = broken_and_fixed(tmp_path)
    written = compare_render.write(compare([a], [b], gates, T), tmp_path / "out")
    assert [p.name for p in written] == ["comparison.json", "comparison.md", "comparison.html"]
    doc = json.loads(written[0].read_text())
    assert doc["schema"] == "gameday.comparison" and doc["version"] == 1
    assert (doc["a"]["verdict"], doc["b"]["verdict"]) == ("FAIL", "PASS")
    assert doc["verdict_changes"] == ["lost_after_fault[us]"]
    entry = next(g for g in doc["gates"] if g["id"] == "lost_after_fault[us]")
    assert (entry["a"]["value"], entry["b"]["value"], entry["change"]) == (412.0, 31.0, -381.0)
    assert (entry["a"]["verdict"], entry["b"]["verdict"]) == ("FAIL", "PASS")
    assert entry["a"]["per_run"] == [412.0]
    html = written[2].read_text()
    assert html.startswith("<!DOCTYPE html>") and "412 writes → 31 writes" in html
    assert "<script" not in html and "http" not in html.split("<body>")[1]


def repeated(tmp_path: Path, side: str, **per_run: list[Any]) -> list[Path]:
    n = len(next(iter(per_run.values())))
    return [run(tmp_path, f"{side}{i}", **{k: v[i] for k, v in per_run.items()}) for i in range(n)]


def test_repeated_runs_a_difference_larger_than_the_noise(tmp_path: Path, gates: Gates) -> None:
    a = repeated(tmp_path, "a", lost_after_fault=[400, 410, 420])
    b = repeated(tmp_path, "b", lost_after_fault=[30, 31, 32])
    lost = gate(compare(a, b, gates, T), "lost_after_fault[us]")
    # Every gate but RTO is held to the worst run; the noise test uses every run.
    assert (lost.a and lost.a.value, lost.b and lost.b.value, lost.change) == (420.0, 32.0, -388.0)
    assert lost.noise.status == "larger" and lost.notable
    assert lost.noise.a_interval == bootstrap_ci([400.0, 410.0, 420.0], 0.95)
    assert lost.noise.b_interval == bootstrap_ci([30.0, 31.0, 32.0], 0.95)
    low_a, high_b = lost.noise.a_interval[0], lost.noise.b_interval[1]
    assert high_b < low_a
    assert lost.noise.statement.startswith("larger than run-to-run noise: 95 % intervals")
    assert "over 3 runs" in lost.noise.statement and "do not overlap" in lost.noise.statement
    assert lost.noise.statement.endswith(
        "; with under 5 runs a side an interval is about the range of the runs"
    )


def test_repeated_runs_a_difference_within_the_noise(tmp_path: Path, gates: Gates) -> None:
    a = repeated(tmp_path, "a", rto_us=[10.0, 20.0, 30.0])
    b = repeated(tmp_path, "b", rto_us=[12.0, 22.0, 31.0])
    result = compare(a, b, gates, T)
    rto = gate(result, "rto_seconds[write/us]")
    # The RTO gate's statistic is `max`: 30 s against 31 s.
    assert (rto.a and rto.a.value, rto.b and rto.b.value, rto.change) == (30.0, 31.0, 1.0)
    assert rto.noise.status == "within" and not rto.notable
    assert "overlap" in rto.noise.statement and "do not" not in rto.noise.statement
    assert result.changes == []


def test_a_repeated_drill_folder_stands_for_its_runs(tmp_path: Path, gates: Gates) -> None:
    drill = tmp_path / "drill"
    for i, lost in enumerate((5, 7), 1):
        write_sample_run(drill / f"run-{i:02d}", timeline=False, lost_after_fault=lost)
    assert [p.name for p in expand(drill)] == ["run-01", "run-02"]
    single = run(tmp_path, "single")
    result = compare([drill], [single], gates, T)
    assert len(result.a.runs) == 2 and result.a.label == "region-kill (2 runs)"
    assert gate(result, "lost_after_fault[us]").noise.status == "unknown"


def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(compare_command, args, catch_exceptions=False)


def test_cli_prints_and_writes(tmp_path: Path) -> None:
    gates_file = tmp_path / "gates.yaml"
    gates_file.write_text(GATES_TEXT)
    a, b = broken_and_fixed(tmp_path)
    out = tmp_path / "cmp"
    result = invoke([str(a), str(b), "--gates", str(gates_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "412 writes → 31 writes (-381 writes); FAIL → PASS" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "comparison.html",
        "comparison.json",
        "comparison.md",
    ]
    as_json = invoke(
        ["--a", str(a), "--b", str(b), "--gates", str(gates_file), "--out", str(out), "--json"]
    )
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout)["changes"][0] == "lost_after_fault[us]"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["{tmp}/nowhere", "{tmp}/a"], "{tmp}/nowhere: no such run directory", id="missing"
        ),
        pytest.param(
            ["{tmp}/empty", "{tmp}/a"],
            "{tmp}/empty: not a measured run (no measurements.json",
            id="unmeasured",
        ),
        pytest.param(
            ["{tmp}/a", "{tmp}/broken"],
            "{tmp}/broken/measurements.json: line 1: not valid JSON: Expecting property name "
            "enclosed in double quotes",
            id="malformed",
        ),
        pytest.param(["{tmp}/a"], "give exactly two runs, RUN_A RUN_B (got 1)", id="one-run"),
        pytest.param(
            ["{tmp}/a", "--b", "{tmp}/a"],
            "give one of: RUN_A RUN_B, --a/--b, or --last EXPERIMENT",
            id="mixed",
        ),
        pytest.param(
            ["--last", "region-kill", "--history", "{tmp}/none.sqlite"],
            "{tmp}/none.sqlite: no such history database",
            id="no-history",
        ),
        pytest.param(["--a", "{tmp}/a"], "at least one --a and one --b", id="one-side"),
    ],
)
def test_bad_input_is_exit_2_naming_it(tmp_path: Path, args: list[str], message: str) -> None:
    run(tmp_path, "a")
    (tmp_path / "empty").mkdir()
    run(tmp_path, "broken")
    (tmp_path / "broken" / "measurements.json").write_text("{not json")
    tmp = str(tmp_path)
    result = CliRunner().invoke(
        compare_command,
        [a.replace("{tmp}", tmp) for a in args] + ["--out", f"{tmp}/cmp"],
    )
    assert result.exit_code == 2, result.output
    assert message.replace("{tmp}", tmp) in result.stderr
    assert not (tmp_path / "cmp").exists()  # nothing half written


def test_library_raises_config_error_for_an_empty_side(tmp_path: Path, gates: Gates) -> None:
    with pytest.raises(ConfigError, match="at least one run on each side"):
        compare([], [run(tmp_path, "a")], gates, T)


def test_different_store_settings_are_noted(tmp_path: Path, gates: Gates) -> None:
    a, b = broken_and_fixed(tmp_path)
    world = json.loads((b / "world.json").read_text())
    world["data_groups"] = {"eu": {"min-replicas-to-write": 1, "min-replicas-max-lag": 2}}
    (b / "world.json").write_text(json.dumps(world))
    notes = compare([a], [b], gates, T).notes
    assert (
        "store settings differ: A Redis defaults; "
        "B eu: min-replicas-to-write 1, min-replicas-max-lag 2"
    ) in notes


def test_last_compares_the_two_latest_runs_in_the_history(tmp_path: Path, gates: Gates) -> None:
    from scorecards.scoring import score

    history = tmp_path / "h.sqlite"
    older = run(tmp_path, "older", rto_us=3.0)
    newer = run(tmp_path, "newer", rto_us=25.0)
    other = run(tmp_path, "other", experiment="fixed")
    score([older], gates, clock=lambda: T, history=history, charts=False)
    with pytest.raises(
        ConfigError, match=r"1 scored run\(s\) of 'region-kill'; comparing needs two"
    ):
        last_two(history, "region-kill")
    score([newer], gates, clock=lambda: T, history=history, charts=False)
    score([other], gates, clock=lambda: T, history=history, charts=False)
    assert last_two(history, "region-kill") == (older, newer)
    gates_file = tmp_path / "gates.yaml"
    gates_file.write_text(GATES_TEXT)
    args = ["--last", "region-kill", "--history", str(history), "--gates", str(gates_file)]
    result = invoke([*args, "--out", str(tmp_path / "cmp"), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["a"]["runs"], doc["b"]["runs"]) == ([str(older)], [str(newer)])
    assert "rto_seconds[write/us]" in doc["changes"]
