"""Redis's write guard as the platform configures it, against real Redis and Sentinel.

A primary and a replica started from `configs.redis_conf` with the guard of
`topology-guarded.yaml` (min-replicas-to-write 1, min-replicas-max-lag 2), on free
loopback ports, and a Sentinel that fails over within seconds. A stopped process
(SIGSTOP) keeps its TCP connections open and answers nothing: to its peers it looks
exactly like the far side of a partition that drops packets. The last test brings up
a whole world on the guarded topology and fails its EU primary region over.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from infra.local import configs, stores
from infra.local.topology import DEFAULT_TOPOLOGY, load_topology
from tests.conftest import Answer, needs_world, running_world, stop_processes
from tests.integration.prometheus_process import free_port
from tests.integration.redis_process import needs_redis, sentinel_conf, wait_for

PASSWORD = "guard-test-secret"
GUARD = load_topology(DEFAULT_TOPOLOGY.with_name("topology-guarded.yaml")).store_settings("eu")
# Lag is counted in whole seconds and the good-replica count is refreshed once a second.
REFUSED_WITHIN = (GUARD.min_replicas_max_lag + 2 + 0.5) if GUARD else 0.0

pytestmark = needs_redis


@dataclass
class Group:
    """A guarded data group: its processes by role and their ports."""

    primary: subprocess.Popen[bytes]
    replica: subprocess.Popen[bytes]
    ports: dict[str, int]

    def conn(self, name: str) -> redis.Redis:
        return stores.client("127.0.0.1", PASSWORD, port=self.ports[name])


def _store(base: Path, name: str, port: int, primary_port: int | None) -> list[str]:
    assert GUARD is not None
    conf = base / f"{name}.conf"
    (base / name).mkdir()
    conf.write_text(configs.redis_conf("127.0.0.1", base / name, PASSWORD, None, GUARD))
    # Command-line options override the file: a free port on loopback, not 6379 on all.
    argv = ["redis-server", str(conf), "--port", str(port), "--bind", "127.0.0.1"]
    if primary_port is not None:
        argv += ["--replicaof", "127.0.0.1", str(primary_port)]
    return argv


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    ports = {"primary": free_port(), "replica": free_port(), "sentinel": free_port()}
    watcher = sentinel_conf(
        tmp_path / "sentinel.conf", ports["sentinel"], ports["primary"], PASSWORD
    )
    commands = [
        _store(tmp_path, "primary", ports["primary"], None),
        _store(tmp_path, "replica", ports["replica"], ports["primary"]),
        ["redis-sentinel", str(watcher)],
    ]
    procs = [
        subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        for argv in commands
    ]
    made = Group(procs[0], procs[1], ports)
    try:
        linked = wait_for(
            lambda: made.conn("replica").info("replication")["master_link_status"] == "up",
            15.0,
        )
        assert linked, "the replica never synced"
        yield made
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        stop_processes(procs, grace=5.0)


def role(conn: redis.Redis) -> object:
    return conn.execute_command("ROLE")[0]  # type: ignore[no-untyped-call]


def _write(conn: redis.Redis, key: str) -> bool:
    """True when acknowledged, False when the guard refused it."""
    try:
        conn.set(key, "1")
        return True
    except redis.ResponseError as exc:
        assert str(exc).startswith("NOREPLICAS"), exc
        return False


def test_every_store_reports_the_guard_replica_included(group: Group) -> None:
    wanted = {"min-replicas-to-write": 1, "min-replicas-max-lag": 2}
    for name in ("primary", "replica"):
        assert stores.store_settings("127.0.0.1", PASSWORD, group.ports[name]) == wanted
    # The replica carries them and still replicates: it ignores them while a replica.
    primary = group.conn("primary")
    assert wait_for(lambda: _write(primary, "k:before"), 10)
    assert wait_for(lambda: group.conn("replica").get("k:before") == b"1", 5)
    assert stores.store_settings("127.0.0.1", PASSWORD, free_port()) == {}  # nobody there


def test_an_isolated_primary_refuses_writes_after_the_max_lag(group: Group) -> None:
    primary = group.conn("primary")
    assert wait_for(lambda: _write(primary, "k:warm"), 10), "the guard never let a write in"
    os.kill(group.replica.pid, signal.SIGSTOP)  # the replica goes silent: no more ACKs
    cut = time.monotonic()
    last_ok, refused_at, n = cut, None, 0
    while time.monotonic() - cut < REFUSED_WITHIN + 2:
        n += 1
        if _write(primary, f"k:{n}"):
            last_ok = time.monotonic()
        else:
            refused_at = time.monotonic()
            break
        time.sleep(0.02)
    assert refused_at is not None, f"still acknowledging {REFUSED_WITHIN + 2:.1f} s after the cut"
    window = refused_at - cut
    print(f"\nguard: last write acknowledged {last_ok - cut:.2f} s, refused {window:.2f} s after")
    # It refuses within the bound the gates assume, and not before the lag could pass.
    assert GUARD is not None
    assert GUARD.min_replicas_max_lag - 1 <= window <= REFUSED_WITHIN
    assert not _write(primary, "k:still-cut")
    os.kill(group.replica.pid, signal.SIGCONT)  # the partition heals: writes come back
    assert wait_for(lambda: _write(primary, "k:healed"), 10)


def test_the_replica_sentinel_promotes_enforces_the_guard(group: Group) -> None:
    sentinel = stores.client("127.0.0.1", PASSWORD, port=group.ports["sentinel"])
    assert wait_for(lambda: len(sentinel.sentinel_slaves("eu")) == 1, 15), (
        "sentinel sees no replica"
    )
    os.kill(group.primary.pid, signal.SIGSTOP)  # the primary is gone; Sentinel promotes
    replica = group.conn("replica")
    promoted = wait_for(lambda: role(replica) == b"master", 30)
    assert promoted, "sentinel did not promote the replica"
    # Nobody re-applied anything: the settings came from its own redis.conf.
    assert stores.store_settings("127.0.0.1", PASSWORD, group.ports["replica"]) == {
        "min-replicas-to-write": 1,
        "min-replicas-max-lag": 2,
    }
    # Its only possible replica is the stopped old primary: it must refuse, not diverge.
    assert not _write(replica, "k:promoted")
    # The old primary returns, Sentinel makes it a replica of the new one: writes resume.
    os.kill(group.primary.pid, signal.SIGCONT)
    assert wait_for(lambda: _write(replica, "k:rejoined"), 30), "writes never resumed"
    assert role(group.conn("primary")) == b"slave"


WANTED = {"min-replicas-to-write": 1, "min-replicas-max-lag": 2}
REDIS_DEFAULTS = {"min-replicas-to-write": 0, "min-replicas-max-lag": 10}


def _until(predicate: object, timeout: float) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@needs_world
@pytest.mark.world
def test_a_guarded_world_keeps_the_guard_through_failover_and_restore(tmp_path: Path) -> None:
    """In the world: status shows the guard; the promoted and the restored store carry it."""
    base = tmp_path / "gd"
    with running_world(
        base, topology_path=DEFAULT_TOPOLOGY.with_name("topology-guarded.yaml")
    ) as w:
        status = w.status()
        assert status["data_groups"] == {"eu": WANTED}
        reported = {r["name"]: r["store_settings"] for r in status["regions"]}
        assert reported == {
            "us-east": REDIS_DEFAULTS,
            "us-west": REDIS_DEFAULTS,
            "eu-west": WANTED,
            "eu-central": WANTED,
        }
        human = subprocess.run(
            [sys.executable, "-m", "experiments.cli", "testbed", "status"],
            capture_output=True,
            text=True,
            env={**os.environ, "GAMEDAY_HOME": str(base)},
            timeout=30,
            check=True,
        ).stdout
        assert (
            "store settings eu: min-replicas-to-write 1, min-replicas-max-lag 2 (stores report: "
            "eu-west min-replicas-to-write 1 min-replicas-max-lag 2; "
            "eu-central min-replicas-to-write 1 min-replicas-max-lag 2)"
        ) in human
        assert "store settings us: Redis defaults, no write guard" in human
        assert w.write("eu", "guard-itest", 1).status == 201

        w.fault("kill-region", region="eu-west")
        assert _until(lambda: w.status()["primaries"]["eu"] == "eu-central", 30)
        promoted = w.region("eu-central")
        assert (promoted["role"], promoted["store_settings"]) == ("primary", WANTED)
        # Its only replica is dead: it refuses instead of acknowledging what it may lose.
        answers: list[Answer] = []

        def refused() -> bool:
            answers.append(w.write("eu", "guard-itest", 2))
            return answers[-1].status == 503 and "NOREPLICAS" in str(answers[-1].body)

        # (The service may first have to drop its connection to the dead primary.)
        assert _until(refused, 10), answers[-3:]
        assert all(a.status != 201 for a in answers), answers

        w.fault("restore-region", region="eu-west")
        restored = w.region("eu-west")
        assert (restored["role"], restored["store_settings"]) == ("replica", WANTED)
        seq = iter(range(3, 1000))
        assert _until(lambda: w.write("eu", "guard-itest", next(seq)).status == 201, 20)
