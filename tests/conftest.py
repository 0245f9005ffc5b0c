"""Shared fixtures: a real local world per test module, and an HTTP client for it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from infra.local import world

REPO = Path(__file__).resolve().parent.parent
# `testbed up` arguments for a world that opens no fixed port on the host: tests and
# benchmarks run beside whatever else uses 8080/9090.
NO_HOST_PORTS = ("--router-port", "0", "--prometheus-port", "0", "--stats-port", "0")


def stop_processes(procs: list[subprocess.Popen[Any]], grace: float = 10.0) -> None:
    """SIGTERM every process at once, then wait for each; SIGKILL what outlives `grace`."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no HTTP answer at all
    region: str | None
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class LocalWorld:
    """A running world under a private state folder, with helpers to talk to it."""

    base: Path
    info: world.WorldInfo

    @property
    def router(self) -> str:
        return self.info.urls["router_url"]

    def post(
        self, path: str, residency: str | None, body: dict[str, Any], timeout: float = 2.0
    ) -> Answer:
        headers = {"Content-Type": "application/json"}
        if residency:
            headers["X-Residency"] = residency
        request = urllib.request.Request(
            self.router + path, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Answer(
                    response.status,
                    response.headers.get("X-Region"),
                    json.loads(response.read() or b"{}"),
                    dict(response.headers),
                )
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw or b"{}")
            except ValueError:
                parsed = {"raw": raw.decode(errors="replace")}
            return Answer(exc.code, exc.headers.get("X-Region"), parsed, dict(exc.headers))
        except (urllib.error.URLError, OSError) as exc:
            return Answer(0, None, {"error": str(exc)}, {})

    def predict(self, residency: str, entity: str) -> Answer:
        return self.post("/v1/predict", residency, {"entity_id": entity})

    def write(self, residency: str, client: str, seq: int) -> Answer:
        return self.post(
            "/v1/events", residency, {"client": client, "seq": seq, "payload": {"n": seq}}
        )

    def status(self) -> dict[str, Any]:
        return world.status(self.base)

    def fault(self, op: str, **args: Any) -> dict[str, Any]:
        return world.fault(op, args, base=self.base, events=self.base / "events.jsonl")

    def region(self, name: str) -> dict[str, Any]:
        return next(r for r in self.status()["regions"] if r["name"] == name)


@contextlib.contextmanager
def running_world(base: Path, **kwargs: Any) -> Iterator[LocalWorld]:
    """Bring a world up under `base` and always take it down (unless GAMEDAY_KEEP_WORLD=1)."""
    ports = {"router": 0, "prometheus": 0, "haproxy_stats": 0}
    info = world.up(base=base, ports=ports, **kwargs)
    try:
        yield LocalWorld(base, info)
    finally:
        if os.environ.get("GAMEDAY_KEEP_WORLD") != "1":
            world.down(base)


def _world_prerequisites() -> str | None:
    try:
        world.check_prerequisites()
        world.check_privileges()
    except Exception as exc:
        return str(exc)
    return None


needs_world = pytest.mark.skipif(
    os.environ.get("GAMEDAY_REQUIRE_WORLD") != "1" and _world_prerequisites() is not None,
    reason=f"local platform unavailable: {_world_prerequisites()}",
)


@pytest.fixture(scope="module")
def local_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalWorld]:
    base = tmp_path_factory.mktemp("gd")
    with running_world(base) as w:
        yield w
    shutil.rmtree(base, ignore_errors=True)
