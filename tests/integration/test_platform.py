"""The local reference platform, against the real programs (DESIGN section 2).

One world per module; every test leaves it whole (its faults reverted in `finally`).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from infra.errors import ConfigError, UnsupportedFault
from infra.local import world
from infra.types import read_events
from tests.conftest import Answer, LocalWorld, needs_world

pytestmark = [needs_world, pytest.mark.world]


def _until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> float | None:
    """Seconds until `check()` held, or None if it never did within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(interval)
    return None


@pytest.fixture
def w(local_world: LocalWorld) -> Iterator[LocalWorld]:
    yield local_world
    # Whatever a test did, the next one starts from a whole platform.
    result = local_world.fault("revert-all")
    assert result["errors"] == []


def test_residency_is_enforced_by_the_router(w: LocalWorld) -> None:
    eu_regions = {"eu-west", "eu-central"}
    us_regions = {"us-east", "us-west"}
    seen: dict[str, set[str]] = {"eu": set(), "us": set()}
    for n in range(40):
        for residency in ("eu", "us"):
            answer = w.predict(residency, f"{residency}-{n}")
            assert answer.status == 200, answer
            assert answer.region is not None
            seen[residency].add(answer.region)
            assert answer.headers.get("X-Model-Digest") or answer.headers.get("x-model-digest")
    assert seen["eu"] == eu_regions  # round-robin reaches both, and only these
    assert seen["us"] == us_regions
    # An EU entity asked for in the US finds nothing: US stores never hold EU data.
    crossed = w.predict("us", "eu-1")
    assert crossed.status == 404 and crossed.region in us_regions
    assert w.predict("", "us-1").status == 400  # no residency: refused, not routed


def test_writes_land_on_the_primary_and_reach_the_replica(w: LocalWorld) -> None:
    answer = w.write("eu", "itest-repl", 1)
    assert answer.status == 201, answer
    key = answer.body["key"]
    argv = world.exec_argv(
        ["redis-cli", "-h", "10.200.0.14", "--no-auth-warning", "-a", _password(w), "GET", key],
        base=w.base,
    )
    found = _until(
        lambda: bool(
            subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
        ),
        5,
    )
    assert found is not None, "write did not replicate to eu-central"
    primary = subprocess.run(
        world.exec_argv(
            ["redis-cli", "-h", "10.200.0.13", "--no-auth-warning", "-a", _password(w), "ROLE"],
            base=w.base,
        ),
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()[0]
    assert primary == "master"


def _password(w: LocalWorld) -> str:
    return str(json.loads((w.base / "world" / "world.json").read_text())["redis_password"])


def test_region_kill_fails_over_and_restore_rejoins_as_replica(w: LocalWorld) -> None:
    assert w.status()["primaries"]["us"] == "us-east"
    record = w.fault("kill-region", region="us-east")
    assert record["details"]["store_role_at_fault"] == "primary"
    seq = iter(range(1, 10_000))
    last: dict[str, Answer] = {}

    def predicts() -> bool:
        last["p"] = w.predict("us", "us-7")
        return last["p"].status == 200

    def writes() -> bool:
        last["w"] = w.write("us", "itest-kill", next(seq))
        return last["w"].status == 201

    assert _until(predicts, 10) is not None, last.get("p")
    assert last["p"].region == "us-west"
    assert _until(writes, 20) is not None, last.get("w")
    assert last["w"].region == "us-west"
    assert w.status()["primaries"]["us"] == "us-west"
    # The EU never noticed.
    assert w.predict("eu", "eu-3").status == 200

    revert = w.fault("restore-region", region="us-east")
    assert revert["details"]["fault_ids"] == [record["id"]]
    assert revert["details"]["store_role"] == "slave"
    assert w.region("us-east")["role"] == "replica"
    assert _until(lambda: w.region("us-east")["router"].startswith("UP"), 10) is not None
    events = read_events(w.base / "events.jsonl")
    assert [(e.type, e.fault) for e in events[-2:]] == [
        ("fault", "kill-region"),
        ("revert", "kill-region"),
    ]


def test_isolated_primary_is_replaced_by_sentinel(w: LocalWorld) -> None:
    primary = w.status()["primaries"]["eu"]
    replica = "eu-central" if primary == "eu-west" else "eu-west"
    others = [r["name"] for r in w.status()["regions"] if r["name"] != primary]
    w.fault("partition", side_a=[primary], side_b=others)
    # Clients at the edge still reach the isolated region; the sentinels do not.
    assert _until(lambda: w.status()["primaries"]["eu"] == replica, 20) is not None
    w.fault("heal")
    assert _until(lambda: w.region(primary)["role"] == "replica", 30) is not None
    assert w.write("eu", "itest-heal", 1).status == 201


def test_corrupt_model_with_verification_never_serves(w: LocalWorld) -> None:
    w.fault("corrupt-replica", region="us-west", what="model")
    assert _until(lambda: not w.region("us-west")["router"].startswith("UP"), 10) is not None
    served = {w.predict("us", f"us-{n}").region for n in range(30)}
    assert served == {"us-east"}
    w.fault("repair-replica", region="us-west", what="model")
    assert _until(lambda: w.region("us-west")["router"].startswith("UP"), 10) is not None


def test_corrupt_features_are_never_served_and_repaired_by_resync(w: LocalWorld) -> None:
    replica = next(
        r["name"]
        for r in w.status()["regions"]
        if r["jurisdiction"] == "eu" and r["role"] == "replica"
    )
    entity = "eu-0"  # a canary: corrupted first
    good = w.predict("eu", entity).body["score"]
    record = w.fault("corrupt-replica", region=replica, what="features", count=20)
    assert entity in record["details"]["entities"]
    answers = [w.predict("eu", entity) for _ in range(20)]
    # The damaged copy is refused (503), never answered from; the replica then leaves
    # the router and the healthy region answers.
    assert {a.body["score"] for a in answers if a.status == 200} == {good}
    assert _until(lambda: not w.region(replica)["router"].startswith("UP"), 10) is not None
    w.fault("repair-replica", region=replica, what="features")
    assert _until(lambda: w.region(replica)["router"].startswith("UP"), 15) is not None
    served = {w.predict("eu", entity).region for _ in range(6)}
    assert replica in served


def test_corrupting_the_primary_is_refused(w: LocalWorld) -> None:
    primary = w.status()["primaries"]["us"]
    with pytest.raises(ConfigError, match="not a replica"):
        w.fault("corrupt-replica", region=primary, what="features")


def test_degrade_link_needs_netem(w: LocalWorld) -> None:
    netem = subprocess.run(
        ["tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
        capture_output=True,
        text=True,
        check=False,
    )
    if netem.returncode == 0:
        subprocess.run(["tc", "qdisc", "del", "dev", "lo", "root"], check=False)
        w.fault("degrade-link", region="us-west", delay_ms=50)
        w.fault("restore-link", region="us-west")
    else:
        with pytest.raises(UnsupportedFault, match="sch_netem"):
            w.fault("degrade-link", region="us-west", delay_ms=50)
        assert w.status()["faults"] == []


def test_exec_runs_inside_the_world(w: LocalWorld) -> None:
    done = subprocess.run(
        world.exec_argv(["ip", "-br", "addr"], base=w.base),
        capture_output=True,
        text=True,
        check=False,
    )
    assert "10.200.0.1/24" in done.stdout
    edge = subprocess.run(
        world.exec_argv(["ip", "-br", "addr"], base=w.base, node="edge"),
        capture_output=True,
        text=True,
        check=False,
    )
    assert "10.200.0.2/24" in edge.stdout


def test_prometheus_sees_every_region(w: LocalWorld) -> None:
    import urllib.request

    url = w.info.urls["prometheus_url"] + "/api/v1/query?query=up"

    def regions() -> set[str]:
        with urllib.request.urlopen(url, timeout=2) as response:
            data = json.loads(response.read())
        return {
            r["metric"].get("region", "")
            for r in data["data"]["result"]
            if r["metric"].get("job") == "service" and r["value"][1] == "1"
        }

    assert (
        _until(lambda: regions() == {"us-east", "us-west", "eu-west", "eu-central"}, 20, 1)
        is not None
    )


def test_unknown_region_is_a_config_error(w: LocalWorld) -> None:
    with pytest.raises(ConfigError, match="unknown region 'mars-1'"):
        w.fault("kill-region", region="mars-1")
    assert isinstance(w.base, Path)


def test_the_load_generator_on_the_platform(w: LocalWorld, tmp_path: Path) -> None:
    import os
    import sys
    import urllib.parse
    import urllib.request

    import pyarrow.parquet as pq

    world_dir = w.base / "world"
    out = tmp_path / "load"
    sd_file = world_dir / "nodes" / "edge" / "loadgen-targets" / "itest.json"
    argv = world.exec_argv(
        [
            sys.executable,
            "-m",
            "experiments.cli",
            "load",
            "--host",
            "http://10.200.0.2:8080",
            "--users",
            "8",
            "--duration",
            "8",
            "--out",
            str(out),
            "--metrics-port",
            "9647",
            "--prometheus-sd-file",
            str(sd_file),
            "--json",
        ],
        base=w.base,
        node="edge",
    )
    # Every kind present even with few users (Locust splits users by weight).
    profile = tmp_path / "profile.yaml"
    profile.write_text(
        "mix:\n  predict: {weight: 2, rate: 10}\n  write: {weight: 1, rate: 10}\n"
        "  canary: {weight: 1, rate: 10}\n"
    )
    argv += ["--profile", str(profile)]
    env = {**os.environ, "GAMEDAY_GOLDEN": str(world_dir / "registry" / "golden.json")}
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    query = urllib.parse.urlencode({"query": "sum(gameday_load_requests_total)"})
    url = f"{w.info.urls['prometheus_url']}/api/v1/query?{query}"

    def scraped() -> bool:
        with urllib.request.urlopen(url, timeout=2) as response:
            result = json.loads(response.read())["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) > 0

    # The global Prometheus finds the generator through its file_sd target and scrapes it.
    seen = _until(scraped, 12, 0.5)
    stdout, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 0, stderr[-2000:]
    assert seen is not None
    load = json.loads(stdout)
    rows = pq.read_table(out / "timeline.parquet").to_pylist()
    assert len(rows) == load["requests"] == load["locust_requests"] > 100
    jurisdiction = {r["name"]: r["jurisdiction"] for r in w.status()["regions"]}
    answered = [r for r in rows if r["ok"] and r["kind"] in ("predict", "canary")]
    assert answered and all(jurisdiction[r["region"]] == r["residency"] for r in answered)
    canaries = [r for r in answered if r["kind"] == "canary"]
    assert canaries and all(r["correct"] for r in canaries)  # a healthy platform is right
    assert not sd_file.exists()  # the generator deregistered itself
