from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra.types import (
    TIMELINE_REQUIRED,
    FaultRecord,
    append_event,
    read_events,
    timeline_schema,
    write_key,
)


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


def test_the_contract_does_not_import_pyarrow_into_platform_processes() -> None:
    # Every region's service imports infra.types (the write key): 27 MB each otherwise.
    code = "import sys, infra.types, infra.local.service\nsys.exit('pyarrow' in sys.modules)\n"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_the_timeline_schema_is_declared_once() -> None:
    from loadgen.timeline import SCHEMA
    from probes.timeline import REQUIRED

    assert SCHEMA is timeline_schema()
    assert [(f.name, str(f.type)) for f in SCHEMA][:4] == [
        ("t_start", "double"), ("latency_ms", "double"), ("kind", "string"), ("ok", "bool")
    ]  # fmt: skip
    assert REQUIRED == TIMELINE_REQUIRED
    assert write_key("w-1", 7) == "ev:w-1:7"
