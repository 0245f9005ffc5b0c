"""The RPO read-back and the anti-entropy check against real Redis and Redis Sentinel.

A primary, a replica of it (writable, so a test can corrupt it as the fault does) and a
Sentinel monitoring the primary, all on free loopback ports with a password.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import redis

from probes.integrity import RedisFeatureStore, anti_entropy
from probes.rpo import (
    RedisWriteStore,
    SentinelWriteStore,
    StoreUnavailable,
    redis_client,
    rpo_table,
    stores_from_world,
)
from probes.rundir import Fault
from probes.timeline import normalise
from tests.conftest import stop_processes
from tests.integration.prometheus_process import free_port
from tests.integration.redis_process import needs_redis, wait_for

PASSWORD = "probe-test-secret"
T0 = 1_700_000_000.0

pytestmark = needs_redis


@dataclass
class Stores:
    primary: int
    replica: int
    sentinel: int

    def conn(self, port: int) -> redis.Redis:
        return redis_client("127.0.0.1", port, PASSWORD, 2.0)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    base = tmp_path_factory.mktemp("redis")
    ports = Stores(free_port(), free_port(), free_port())
    common = ["--bind", "127.0.0.1", "--requirepass", PASSWORD, "--save", "", "--appendonly", "no"]
    commands = [
        ["redis-server", "--port", str(ports.primary), "--dir", str(base), *common],
        [
            "redis-server",
            "--port",
            str(ports.replica),
            "--dir",
            str(base),
            *common,
            "--replicaof",
            "127.0.0.1",
            str(ports.primary),
            "--masterauth",
            PASSWORD,
            "--replica-read-only",
            "no",
        ],
    ]
    conf = base / "sentinel.conf"
    conf.write_text(
        f"port {ports.sentinel}\nbind 127.0.0.1\ndaemonize no\ndir {base}\n"
        f"requirepass {PASSWORD}\n"
        f"sentinel monitor us 127.0.0.1 {ports.primary} 1\n"
        f"sentinel auth-pass us {PASSWORD}\n"
        "sentinel down-after-milliseconds us 30000\n"
    )
    commands.append(["redis-sentinel", str(conf)])
    procs = [
        subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=(base / f"log{n}").open("w"), cwd=base
        )
        for n, cmd in enumerate(commands)
    ]
    try:
        for port in (ports.primary, ports.replica, ports.sentinel):
            assert wait_for(lambda p=port: ports.conn(p).ping(), 10.0), f"port {port} not up"
        yield ports
    finally:
        stop_processes(procs, grace=5.0)


def test_sentinel_store_reads_back_from_the_primary_it_names(stores: Stores) -> None:
    primary = stores.conn(stores.primary)
    primary.mset({f"ev:rb:{i}": '{"payload": 1}' for i in range(0, 2500, 2)})
    store = SentinelWriteStore([("127.0.0.1", stores.sentinel)], "us", PASSWORD, batch=700)
    wanted = [f"ev:rb:{i}" for i in range(2500)]
    found = store.present(wanted)
    assert found == {f"ev:rb:{i}" for i in range(0, 2500, 2)}
    assert store.describe()["primary"] == f"127.0.0.1:{stores.primary}"
    assert store.describe()["sentinel_views"] == {
        f"127.0.0.1:{stores.sentinel}": f"127.0.0.1:{stores.primary}"
    }


def test_a_replica_is_refused_as_the_primary(stores: Stores) -> None:
    with pytest.raises(StoreUnavailable, match="answers as 'slave', not as a primary"):
        RedisWriteStore("127.0.0.1", stores.replica, PASSWORD).present(["ev:x:1"])


@pytest.mark.parametrize(
    ("password", "match"),
    [("wrong", "no sentinel named a primary"), (PASSWORD, "no sentinel named a primary")],
    ids=["wrong-password", "unknown-group"],
)
def test_sentinel_failures_are_errors(stores: Stores, password: str, match: str) -> None:
    group = "us" if password == "wrong" else "zz"
    store = SentinelWriteStore([("127.0.0.1", stores.sentinel)], group, password)
    with pytest.raises(StoreUnavailable, match=match):
        store.present(["ev:x:1"])


def test_unreachable_sentinel_fails_fast() -> None:
    store = SentinelWriteStore([("127.0.0.1", free_port())], "us", PASSWORD, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store.present(["ev:x:1"])
    assert time.monotonic() - started < 2.0


def test_rpo_through_sentinel_counts_split_brain_losses(stores: Stores) -> None:
    # 20 writes, one every 0.5 s, acknowledged 10 ms later; the fault is at 5 s. The
    # primary lost seq 8-13 (acknowledged 4.01 … 6.51 s): 4 of them after the fault.
    primary = stores.conn(stores.primary)
    primary.mset({f"ev:sb:{i}": "{}" for i in range(20) if not 8 <= i < 14})
    primary.set("ev:sb:20", "{}")  # failed for the client (503) but stored: ambiguous
    seqs = np.arange(21)
    frame = normalise(
        pd.DataFrame(
            {
                "t_start": T0 + 0.5 * seqs,
                "latency_ms": 10.0,
                "kind": "write",
                "ok": seqs < 20,
                "status": np.where(seqs < 20, 201, 503).astype(np.int32),
                "residency": "us",
                "client": "sb",
                "seq": seqs,
            }
        ),
        columns=("client", "seq"),
    )
    sentinel = SentinelWriteStore([("127.0.0.1", stores.sentinel)], "us", PASSWORD)
    fault = Fault("f", "partition", "us-east|us-west", T0 + 5.0)
    (entry,) = rpo_table(frame, [fault], {"us": sentinel})
    assert entry["status"] == "ok", entry
    assert (entry["acknowledged"], entry["lost"], entry["lost_after_fault"]) == (20, 6, 4)
    assert entry["ambiguous"] == 1
    assert entry["rpo_seconds"] == pytest.approx(6.51 - 4.01, abs=1e-6)


def test_stores_from_world_use_every_region_sentinel(stores: Stores) -> None:
    world = {
        "addresses": {"edge": "10.0.0.2", "us-east": "127.0.0.1"},
        "redis_password": PASSWORD,
        "sentinel_port": stores.sentinel,
    }
    (store,) = stores_from_world(world, ["us"]).values()
    assert isinstance(store, SentinelWriteStore)
    assert store.sentinels == [("127.0.0.1", stores.sentinel)]
    assert store.present(["ev:rb:0", "ev:rb:1"]) == {"ev:rb:0"}


def test_anti_entropy_between_a_primary_and_its_corrupted_replica(stores: Stores) -> None:
    primary, replica = stores.conn(stores.primary), stores.conn(stores.replica)
    primary.mset({f"feat:us-{i}": f"[{i}, 0.5]" for i in range(3000)})
    assert wait_for(lambda: replica.get("feat:us-2999") is not None, 10.0)
    feature_stores = {
        "us-east": RedisFeatureStore("127.0.0.1", stores.primary, PASSWORD, batch=500),
        "us-west": RedisFeatureStore("127.0.0.1", stores.replica, PASSWORD, batch=500),
    }
    clean = anti_entropy(feature_stores, "us-east")
    assert (clean["status"], clean["diverged"]) == ("ok", 0)
    assert clean["replicas"][0]["compared"] == 3000
    replica.mset({f"feat:us-{i}": "[9.9, 9.9]" for i in (3, 14, 159)})  # the fault's way
    replica.delete("feat:us-26", "feat:us-535")
    dirty = anti_entropy(feature_stores, "us-east")
    west = dirty["replicas"][0]
    assert (west["differing"], west["missing"], west["extra"]) == (3, 2, 0)
    assert west["sample"]["differing"] == ["feat:us-14", "feat:us-159", "feat:us-3"]
    down = {**feature_stores, "us-west": RedisFeatureStore("127.0.0.1", free_port(), PASSWORD)}
    assert anti_entropy(down, "us-east")["status"] == "error"


def test_feature_store_keeps_its_scan_bounded(stores: Stores) -> None:
    store = RedisFeatureStore("127.0.0.1", stores.primary, PASSWORD, batch=100, max_keys=500)
    with pytest.raises(StoreUnavailable, match="more than 500 keys"):
        store.digests("feat:")
