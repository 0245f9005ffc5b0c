from __future__ import annotations

from pathlib import Path

import pytest

from infra.types import FaultRecord, append_event, read_events


def test_fault_records_round_trip_through_events_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "run" / "events.jsonl"
    fault = FaultRecord(
        "fault",
        "kill-region",
        "us-east",
        "a1",
        applied_at=1795000000.123,
        details={"processes_killed": 5},
    )
    revert = FaultRecord(
        "revert",
        "kill-region",
        "us-east",
        "b2",
        reverted_at=1795000030.5,
        details={"fault_ids": ["a1"]},
    )
    append_event(path, fault)
    append_event(path, revert)
    assert read_events(path) == [fault, revert]
    assert '"applied_at": 1795000000.123' in path.read_text().splitlines()[0]


def test_malformed_event_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"type": "fault", "fault": "x", "target": "y", "id": "1", "applied_at": 1.5}\n'
        '{"type": "oops", "fault": "x", "target": "y", "id": "2"}\n'
    )
    with pytest.raises(ValueError, match=r"events.jsonl:2: field 'type': unknown record type"):
        read_events(path)
