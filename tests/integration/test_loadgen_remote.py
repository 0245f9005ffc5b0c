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


def test_the_load_follows_the_platform_file_oip_v2(stub: str, tmp_path: Path) -> None:  # noqa: F811
    """Requests in the OIP v2 shape, canaries from the platform file, read back as said."""
    import yaml

    from infra.local.describe import REFERENCE_PLATFORM
    from loadgen.profile import KindMix, Profile
    from loadgen.runner import LoadSettings, run
    from loadgen.stub import score_of

    doc = yaml.safe_load(REFERENCE_PLATFORM.read_text())
    doc.update(driver="none", allow={"hosts": ["127.0.0.1"]})
    doc["traffic"].update(base_url=stub, api={"shape": "oip-v2", "model": "stub"})
    doc["canaries"] = {
        "entities": [
            {"entity_id": e, "jurisdiction": e.split("-")[0], "score": score_of(e)}
            for e in ("us-4", "eu-2")
        ]
    }
    doc["prometheus"]["url"] = stub
    platform = tmp_path / "platform.yaml"
    platform.write_text(yaml.safe_dump(doc))
    profile = Profile(
        users=6,
        duration_s=3.0,
        mix={"predict": KindMix(3, 20.0), "write": KindMix(2, 10.0), "canary": KindMix(1, 10.0)},
    )
    result = run(LoadSettings(host=stub, profile=profile, platform=platform), tmp_path / "load")
    table = read_timeline(result.timeline).to_pandas()
    canaries = table[(table["kind"] == "canary") & table["ok"]]
    assert len(canaries) > 0
    assert canaries["correct"].all()  # the score was found in outputs[score].data[0]
    assert set(table["residency"]) == {"us", "eu"}
    assert table.loc[table["ok"], "region"].notna().all()
