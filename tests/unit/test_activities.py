"""Any Chaos Toolkit activity is a fault: the records the drill's control writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from experiments.activities import declared_target, record_for
from infra.types import FaultRecord

REGIONS = ("us-east", "us-west", "eu-west")


def _process(arguments: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "action",
        "name": "kill-it",
        "provider": {"type": "process", "path": "gameday", "arguments": arguments},
        **extra,
    }


@pytest.mark.parametrize(
    ("activity", "target"),
    [
        pytest.param(_process("fault kill-region us-east"), "us-east", id="process-words"),
        pytest.param(_process(["fault", "kill-region", "eu-west"]), "eu-west", id="process-list"),
        pytest.param(
            _process("fault kill-region us-east", gameday={"target": "us-west"}),
            "us-west",
            id="extension-field-wins",
        ),
        pytest.param(
            {
                "type": "action",
                "name": "drain",
                "provider": {
                    "type": "python",
                    "module": "chaosk8s.node.actions",
                    "func": "drain_nodes",
                    "arguments": {"region": "eu-west", "count": 1},
                },
            },
            "eu-west",
            id="python-region-argument",
        ),
        pytest.param(
            {
                "type": "action",
                "name": "stop",
                "provider": {"type": "http", "url": "http://127.0.0.1:9/stop/us-west"},
            },
            "us-west",
            id="http-url",
        ),
        pytest.param(_process("sleep 1"), "", id="nothing-declared"),
    ],
)
def test_the_declared_target(activity: dict[str, Any], target: str) -> None:
    assert declared_target(activity, REGIONS) == target


def test_a_method_action_is_a_fault_at_its_end() -> None:
    record = record_for(
        _process("fault kill-region us-east"), {"status": "succeeded"}, "method", 1795.5, REGIONS
    )
    assert record is not None
    assert (record.type, record.fault, record.target, record.applied_at) == (
        "fault",
        "kill-it",
        "us-east",
        1795.5,
    )
    assert record.details["provider"] == "process"
    assert record.details["target_declared"] is True
    # It round-trips through the one reader of events.jsonl.
    assert FaultRecord.from_dict(record.__dict__) == record


def test_a_rollback_action_reverts_the_faults_of_its_target() -> None:
    kill_east = record_for(_process("kill us-east"), None, "method", 10.0, REGIONS)
    kill_west = record_for(_process("kill us-west"), None, "method", 11.0, REGIONS)
    assert kill_east is not None and kill_west is not None
    revert = record_for(
        _process("restore us-east"), None, "rollback", 20.0, REGIONS, [kill_east, kill_west]
    )
    assert revert is not None
    assert (revert.type, revert.reverted_at, revert.applied_at) == ("revert", 20.0, None)
    assert revert.details["fault_ids"] == [kill_east.id]
    everything = record_for(
        _process("restore all"), None, "rollback", 21.0, REGIONS, [kill_east, kill_west]
    )
    assert everything is not None
    assert everything.details["fault_ids"] == [kill_east.id, kill_west.id]


@pytest.mark.parametrize(
    ("activity", "run", "phase"),
    [
        pytest.param({**_process("x us-east"), "type": "probe"}, None, "method", id="a-probe"),
        pytest.param(
            {
                "type": "action",
                "name": "ours",
                "provider": {"type": "python", "module": "infra.actions", "func": "kill_region"},
            },
            None,
            "method",
            id="gameday-own-action",
        ),
        pytest.param(_process("x us-east"), {"status": "failed"}, "method", id="failed"),
        pytest.param(_process("x us-east"), None, "", id="outside-method-and-rollbacks"),
    ],
)
def test_no_record(activity: dict[str, Any], run: dict[str, Any] | None, phase: str) -> None:
    assert record_for(activity, run, phase, 1.0, REGIONS) is None


def test_the_drill_control_appends_the_records_to_the_run(tmp_path: Path) -> None:
    from experiments import controls
    from infra.local.describe import REFERENCE_PLATFORM
    from infra.types import read_event_log

    configuration = {
        "gameday_run_dir": str(tmp_path),
        "gameday_platform_file": str(REFERENCE_PLATFORM),
    }
    controls.configure_control(configuration)
    try:
        activity = _process("fault kill-region us-east")
        # Before the method (baseline): nothing is a fault yet.
        controls.after_activity_control(activity, {"status": "succeeded"}, configuration)
        assert not (tmp_path / "events.jsonl").exists()
        controls._STATE["drill"].phase = "fault"  # what before_method_control ends with
        controls.after_activity_control(activity, {"status": "succeeded"}, configuration)
        controls.before_rollback_control({}, configuration)
        controls.after_activity_control(
            _process("fault restore-region us-east"), {"status": "succeeded"}, configuration
        )
        records = read_event_log(tmp_path / "events.jsonl").records
        assert [(r.type, r.target) for r in records] == [
            ("fault", "us-east"),
            ("revert", "us-east"),
        ]
        assert records[1].details["fault_ids"] == [records[0].id]
    finally:
        controls._STATE.clear()
