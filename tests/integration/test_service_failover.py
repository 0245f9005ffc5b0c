"""The inference service across a Sentinel demotion, against real Redis and Sentinel.

A primary and a replica started from `configs.redis_conf`, one Sentinel, and the real
service (`python -m infra.local.service` under uvicorn) whose local store is the
primary: the position of eu-west in the partition drills. When a partition heals,
Sentinel demotes that store to a replica of the one it promoted meanwhile; a write the
service retries must then go to the new primary, never back to the demoted one, and
its predictions must keep being answered while the demoted store resyncs in full.
A stopped process (SIGSTOP) answers nothing: a write to it must fail after one
time-out, not be retried.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from infra.local import configs, model, stores
from tests.conftest import stop_processes
from tests.integration.prometheus_process import free_port
from tests.integration.redis_process import needs_redis, sentinel_conf, wait_for

PASSWORD = "failover-test-secret"
# As many as the platform loads (world.up): the demoted store's full resync then
# transfers and loads an RDB of about 3 MB, as eu-west's does after the heal.
ENTITIES = 10_000
# Longer than the platform's 0.5 s: a retried time-out (two of them) must stand out
# from one on a loaded machine.
REDIS_TIMEOUT = 1.0

pytestmark = needs_redis


@dataclass
class Group:
    """One data group ("eu") with its Sentinel, and the service of the primary's region."""

    ports: dict[str, int]
    procs: dict[str, subprocess.Popen[bytes]]
    log: Path
    seq: Iterator[int] = field(default_factory=lambda: iter(range(1, 100_000)))

    def conn(self, name: str) -> redis.Redis:
        return stores.client("127.0.0.1", PASSWORD, port=self.ports[name])

    def sentinel_primary(self) -> int:
        """The port the Sentinel names as the group's primary, as the service asks.

        redis-py reads SENTINEL MASTERS, which names the new primary only once the
        failover has ended (get-master-addr-by-name names it earlier, while the other
        replicas are being reconfigured).
        """
        sentinel = stores.client("127.0.0.1", PASSWORD, port=self.ports["sentinel"])
        state = sentinel.sentinel_master("eu")
        assert isinstance(state, dict), state
        return int(state["port"])

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
        """(status, JSON body, seconds) of one request to the service; status 0: no answer."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.ports['service']}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        started = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read()), time.monotonic() - started
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}"), time.monotonic() - started
        except OSError as exc:
            return 0, {"error": str(exc)}, time.monotonic() - started

    def write(self) -> tuple[int, dict[str, Any], float]:
        seq = next(self.seq)
        return self.post("/v1/events", {"client": "itest", "seq": seq, "payload": {"n": seq}})

    def writes(self, count: int, workers: int = 8) -> list[tuple[int, dict[str, Any], float]]:
        """`count` writes, `workers` at a time: the service's pool holds that many connections."""
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(lambda _: self.write(), range(count)))


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.fixture
def group(tmp_path: Path) -> Iterator[Group]:
    names = ("primary", "replica", "sentinel", "service")
    ports = {name: free_port() for name in names}
    argv: dict[str, list[str]] = {}
    for name in ("primary", "replica"):
        (tmp_path / name).mkdir()
        conf = tmp_path / f"{name}.conf"
        conf.write_text(configs.redis_conf("127.0.0.1", tmp_path / name, PASSWORD, None))
        argv[name] = ["redis-server", str(conf), "--port", str(ports[name])]
        argv[name] += ["--bind", "127.0.0.1"]
    argv["replica"] += ["--replicaof", "127.0.0.1", str(ports["primary"])]
    watcher = sentinel_conf(
        tmp_path / "sentinel.conf", ports["sentinel"], ports["primary"], PASSWORD
    )
    argv["sentinel"] = ["redis-sentinel", str(watcher)]
    registry, store = tmp_path / "registry", tmp_path / "models"
    model.publish(registry, ("eu",), ENTITIES)
    model.replicate(registry, store)
    service_json = tmp_path / "service.json"
    service_json.write_text(
        json.dumps(
            {
                "region": "eu-west",
                "jurisdiction": "eu",
                "host": "127.0.0.1",
                "port": ports["service"],
                "redis_password": PASSWORD,
                "sentinels": [["127.0.0.1", ports["sentinel"]]],
                "model_path": str(store / model.MODEL_FILE),
                "registry": str(registry),
                "redis_port": ports["primary"],
                "redis_timeout": REDIS_TIMEOUT,
            }
        )
    )
    argv["service"] = [sys.executable, "-m", "infra.local.service", "--config", str(service_json)]
    log = tmp_path / "service.log"
    procs: dict[str, subprocess.Popen[bytes]] = {}
    made = Group(ports, procs, log)
    try:
        for name in ("primary", "replica", "sentinel"):
            procs[name] = subprocess.Popen(
                argv[name], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=tmp_path
            )
        linked = wait_for(
            lambda: made.conn("replica").info("replication")["master_link_status"] == "up", 15
        )
        assert linked, "the replica never synced"
        sentinel = stores.client("127.0.0.1", PASSWORD, port=ports["sentinel"])
        assert wait_for(lambda: len(sentinel.sentinel_slaves("eu")) == 1, 15), "no replica seen"
        feats = model.entity_features("eu", ENTITIES)
        pipe = made.conn("primary").pipeline(transaction=False)
        for index, row in enumerate(feats):
            pipe.set(f"{stores.FEATURE_PREFIX}eu-{index}", model.feature_record(row))
        pipe.execute()
        with log.open("wb") as out:
            procs["service"] = subprocess.Popen(
                argv["service"], stdout=out, stderr=subprocess.STDOUT, cwd=Path.cwd()
            )
        assert wait_for(lambda: _ready(ports["service"]), 30), log.read_text()[-2000:]
        yield made
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
        stop_processes(list(procs.values()), grace=5.0)


def _role(conn: redis.Redis) -> object:
    return conn.execute_command("ROLE")[0]  # type: ignore[no-untyped-call]


def _not_created(answers: list[tuple[int, dict[str, Any], float]]) -> list[Any]:
    return [(code, body) for code, body, _ in answers if code != 201]


def _failover(group: Group) -> None:
    """Sentinel promotes the replica; returns once it names the replica as primary."""
    sentinel = stores.client("127.0.0.1", PASSWORD, port=group.ports["sentinel"])
    sentinel.execute_command("SENTINEL", "FAILOVER", "eu")  # type: ignore[no-untyped-call]
    moved = wait_for(lambda: group.sentinel_primary() == group.ports["replica"], 15)
    assert moved, "sentinel never named the replica"
    assert wait_for(lambda: _role(group.conn("replica")) == b"master", 5)


def test_a_write_after_the_demotion_goes_to_the_new_primary(group: Group) -> None:
    """READONLY from the demoted primary: the one retry asks Sentinel where to go."""
    warm = group.writes(16)
    assert _not_created(warm) == [], warm
    _failover(group)
    # Demoted while the service's pooled connections stay open (Sentinel's own
    # reconfiguration would also close them, a path the next test drives): each
    # connection's next write is answered READONLY.
    demoted = group.conn("primary")
    demoted.execute_command(  # type: ignore[no-untyped-call]
        "REPLICAOF", "127.0.0.1", str(group.ports["replica"])
    )
    assert wait_for(lambda: demoted.info("replication")["master_link_status"] == "up", 15)
    answers = group.writes(32)
    assert _not_created(answers) == [], answers
    new_primary = group.conn("replica")
    for _, body, _ in answers:
        assert new_primary.exists(body["key"]) == 1, body
    # Reads stay local: the demoted store, a replica now, still serves predictions.
    code, body, _ = group.post("/v1/predict", {"entity_id": "eu-3"})
    assert code == 200 and 0.0 <= body["score"] <= 1.0, body


def test_writes_in_flight_when_sentinel_demotes_the_primary_all_succeed(group: Group) -> None:
    """Sentinel's own reconfiguration (REPLICAOF, then CLIENT KILL) under a write stream."""
    assert _not_created(group.writes(16)) == []
    _failover(group)
    # Sentinel turns the old primary into a replica about 8 s after it reports the
    # wrong role, and closes every client connection it has (this test's too, hence a
    # new one per look): write through it.
    answers: list[tuple[int, dict[str, Any], float]] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _role(group.conn("primary")) == b"master":
        answers += group.writes(8, workers=4)
    assert _role(group.conn("primary")) == b"slave", "sentinel never demoted the old primary"
    for _ in range(10):  # every pooled connection used again after the demotion
        answers += group.writes(8, workers=4)
    assert _not_created(answers) == [], _not_created(answers)[:5]


def test_predictions_from_the_store_sentinel_demotes_all_succeed(group: Group) -> None:
    """The demoted store's clients are closed, then it resyncs in full: reads still answer."""
    _failover(group)
    # The service's heartbeat keeps writing to the old primary until Sentinel demotes
    # it: its history diverges from the new primary's, so the resync is a full one.
    answers: list[tuple[int, dict[str, Any], float]] = []
    entity = iter(range(100_000))

    def predict() -> tuple[int, dict[str, Any], float]:
        return group.post("/v1/predict", {"entity_id": f"eu-{next(entity) % ENTITIES}"})

    def predictions(count: int) -> list[tuple[int, dict[str, Any], float]]:
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(lambda _: predict(), range(count)))

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _role(group.conn("primary")) == b"master":
        answers += predictions(16)
    assert _role(group.conn("primary")) == b"slave", "sentinel never demoted the old primary"
    for _ in range(20):  # through the transfer and the load of the full resync
        answers += predictions(16)
    info = group.conn("primary").info("replication")
    assert info["master_link_status"] == "up", info
    # The condition happened: a full resync (served by the new primary), not a partial.
    assert group.conn("replica").info("stats")["sync_full"] >= 1
    assert group.conn("primary").dbsize() >= ENTITIES
    failed = [(code, body) for code, body, _ in answers if code != 200]
    assert failed == [], failed[:5]


def test_a_write_to_a_primary_that_does_not_answer_is_not_retried(group: Group) -> None:
    """A time-out fails the request after one `redis_timeout`: a dead primary must show."""
    assert _not_created(group.writes(4)) == []
    os.kill(group.procs["primary"].pid, signal.SIGSTOP)
    try:
        code, body, took = group.write()
    finally:
        os.kill(group.procs["primary"].pid, signal.SIGCONT)
    assert code == 503 and "Timeout" in body["error"], body
    # One time-out, not two: a retry would double it.
    assert REDIS_TIMEOUT <= took < 1.8 * REDIS_TIMEOUT, took
