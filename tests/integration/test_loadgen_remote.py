"""Multi-machine load: `gameday load --master` here, `gameday load --worker` "elsewhere"
(another process on 127.0.0.1); the worker's rows reach the master's timeline."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa

from loadgen.timeline import read_timeline
from tests.integration.prometheus_process import free_port
from tests.integration.test_loadgen_run import stub  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]
GAMEDAY = [sys.executable, "-m", "experiments.cli", "load"]


def test_a_remote_worker_sends_its_rows_to_the_master(stub: str, tmp_path: Path) -> None:  # noqa: F811
    port = free_port()
    out = tmp_path / "load"
    master_cmd = [
        *GAMEDAY,
        "--host", stub, "--users", "4", "--duration", "4", "--out", str(out),
        "--master", "--workers", "1", "--master-port", str(port), "--json",
    ]  # fmt: skip
    master = subprocess.Popen(
        master_cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    worker_done: list[subprocess.CompletedProcess[str]] = []

    def worker() -> None:
        worker_done.append(
            subprocess.run(
                [
                    *GAMEDAY,
                    "--host",
                    stub,
                    "--worker",
                    "--master-host",
                    "127.0.0.1",
                    "--master-port",
                    str(port),
                    "--out",
                    str(tmp_path / "worker"),
                ],
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        )

    # The master must listen before the worker connects; it waits for its worker.
    time.sleep(3.0)
    thread = threading.Thread(target=worker)
    thread.start()
    try:
        stdout, stderr = master.communicate(timeout=120)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
        thread.join(timeout=130)
    assert master.returncode == 0, stderr[-2000:]
    summary = json.loads(stdout)
    table = read_timeline(out / "timeline.parquet")
    assert table.num_rows > 0
    assert table.num_rows == summary["requests"]
    kinds = set(table.column("kind").to_pylist())
    assert "predict" in kinds and "write" in kinds
    writes = table.filter(pa.compute.equal(table.column("kind"), "write"))
    assert writes.column("client").null_count == 0
    assert worker_done and worker_done[0].returncode in (0, 1), worker_done[0].stderr[-2000:]
    # The worker wrote no timeline of its own: every row went to the master.
    assert not list((tmp_path / "worker").rglob("*.parquet"))
