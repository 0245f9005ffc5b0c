from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from infra.local import configs, plan
from infra.local.topology import load_topology
from infra.types import StoreSettings

TOPOLOGY = load_topology()


def test_router_backends_hold_only_their_jurisdiction() -> None:
    cfg = configs.haproxy_cfg(TOPOLOGY)
    backends: dict[str, list[str]] = {}
    current = ""
    for line in cfg.splitlines():
        if line.startswith("backend "):
            current = line.split()[1]
            backends[current] = []
        elif line.strip().startswith("server ") and current:
            backends[current].append(line.split()[1])
    assert backends == {"jur_us": ["us-east", "us-west"], "jur_eu": ["eu-west", "eu-central"]}
    assert "inter 500" in cfg and "fall 2 rise 2" in cfg
    # Requests without a known residency are refused rather than routed anywhere.
    assert "http-request return status 400" in cfg


def test_addresses_are_unique_and_on_the_backbone() -> None:
    nodes = plan.nodes(TOPOLOGY)
    addresses = [n.address for n in nodes]
    assert len(set(addresses)) == len(addresses)
    assert all(a.startswith(plan.BACKBONE + ".") for a in addresses)
    assert all(len(n.veth) <= 15 for n in nodes)  # Linux interface names


def test_sentinel_monitors_every_jurisdiction_with_fast_detection(tmp_path: Path) -> None:
    conf = configs.sentinel_conf(TOPOLOGY, "10.200.0.11", tmp_path, "pw")
    assert "sentinel monitor us 10.200.0.11 6379 2" in conf
    assert "sentinel monitor eu 10.200.0.13 6379 2" in conf
    assert "sentinel down-after-milliseconds us 1000" in conf
    assert "requirepass pw" in conf


def test_redis_replica_conf_points_at_primary(tmp_path: Path) -> None:
    assert "replicaof 10.200.0.11 6379" in configs.redis_conf(
        "10.200.0.12", tmp_path, "pw", "10.200.0.11"
    )
    assert "replicaof" not in configs.redis_conf("10.200.0.11", tmp_path, "pw", None)


def test_prometheus_configs_scrape_every_second(tmp_path: Path) -> None:
    regional = yaml.safe_load(configs.regional_prometheus(TOPOLOGY.regions[0], "10.200.0.11"))
    assert regional["global"]["scrape_interval"] == "1s"
    glob = yaml.safe_load(configs.global_prometheus(TOPOLOGY, tmp_path))
    jobs = {job["job_name"] for job in glob["scrape_configs"]}
    assert jobs == {"federate", "haproxy", "loadgen"}
    fed = next(j for j in glob["scrape_configs"] if j["job_name"] == "federate")
    assert len(fed["static_configs"]) == 4


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_recording_rules_pass_promtool() -> None:
    done = subprocess.run(
        ["promtool", "check", "rules", str(configs.RULES_FILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")
def test_haproxy_accepts_the_rendered_config(tmp_path: Path) -> None:
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(configs.haproxy_cfg(TOPOLOGY).replace(plan.EDGE_ADDRESS, "127.0.0.1"))
    done = subprocess.run(
        ["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_write_guard_goes_into_every_store_of_the_group(tmp_path: Path) -> None:
    guard = StoreSettings(min_replicas_to_write=1, min_replicas_max_lag=2)
    for primary in (None, "10.200.0.13"):
        lines = configs.redis_conf("10.200.0.14", tmp_path, "pw", primary, guard).splitlines()
        assert "min-replicas-to-write 1" in lines and "min-replicas-max-lag 2" in lines
    assert "min-replicas" not in configs.redis_conf("10.200.0.11", tmp_path, "pw", None)
