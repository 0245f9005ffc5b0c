"""The world's state folder without a world: the lock, stale records, the fault gates."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from infra.errors import ConfigError, FaultError, WorldBusy
from infra.local import world
from infra.local.supervisor import Supervisor
from infra.local.topology import load_topology


def _naming(directory: Path) -> subprocess.Popen[bytes]:
    """A live process whose argv names `directory`, as a world's launcher does."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(directory)])


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _record(directory: Path, launcher: int, init: int, owner: int | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    doc = {
        "launcher_pid": launcher,
        "init_pid": init,
        "owner_pid": owner,
        "started_at": 1795000000.0,
        "urls": {"router_url": "http://127.0.0.1:1"},
        "topology": "t.yaml",
    }
    (directory / "world.json").write_text(json.dumps(doc))


def test_the_lock_has_one_holder_and_names_it(tmp_path: Path) -> None:
    busy = rf"another gameday command \(pid {os.getpid()}\)"
    with (
        world.world_lock(tmp_path),
        pytest.raises(WorldBusy, match=busy),
        world.world_lock(tmp_path),
    ):
        pass
    with world.world_lock(tmp_path):  # released on exit: free again
        pass
    assert (tmp_path / "world.lock").read_text() == ""


def test_the_lock_waits_when_asked(tmp_path: Path) -> None:
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with world.world_lock(tmp_path):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    with world.world_lock(tmp_path, wait=5):
        assert release.is_set()
    thread.join()


def test_a_world_whose_processes_are_gone_is_stale(tmp_path: Path) -> None:
    dead = _dead_pid()
    _record(tmp_path / "world", dead, dead, None)
    info = world._recorded(tmp_path / "world")
    assert info is not None and info.ownership == "detached"
    assert world.stale_reason(info) == f"its processes (pids {dead}, {dead}) are gone"
    assert world.read_info(tmp_path) is None
    assert (tmp_path / "world" / "world.json").exists()  # a reader never removes it
    with pytest.raises(ConfigError) as caught:
        world.require_world(tmp_path)
    assert str(caught.value) == (
        f"no local world is running (looked in {tmp_path / 'world'}: a stale record is "
        f"there, its processes (pids {dead}, {dead}) are gone); start one with "
        "`gameday testbed up`"
    )


def test_a_pid_reused_by_another_program_is_not_the_world(tmp_path: Path) -> None:
    # Our own pid is alive but is not an unshare or supervisor of this folder.
    _record(tmp_path / "world", os.getpid(), os.getpid(), None)
    info = world._recorded(tmp_path / "world")
    assert info is not None and world.stale_reason(info) is not None


def test_an_owned_world_whose_owner_is_gone_is_stale(tmp_path: Path) -> None:
    directory = tmp_path / "world"
    sleeper = _naming(directory)
    try:
        owner = _dead_pid()
        _record(directory, sleeper.pid, 0, owner)
        info = world._recorded(directory)
        assert info is not None and info.ownership == f"owned by pid {owner}"
        assert world.stale_reason(info) == f"its owner (pid {owner}) is gone"
        _record(directory, sleeper.pid, 0, os.getpid())
        info = world._recorded(directory)
        assert info is not None and world.stale_reason(info) is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_make_room_removes_a_stale_record_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = _dead_pid()
    directory = tmp_path / "world"
    _record(directory, dead, dead, None)
    world._make_room(directory)
    assert not directory.exists()
    err = capsys.readouterr().err
    assert err == (
        f"gameday: removed a stale world in {directory}: its processes (pids {dead}, "
        f"{dead}) are gone\n"
    )


def test_make_room_removes_a_dead_control_socket_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "world"
    directory.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(directory / "control.sock"))  # the file outlives the socket
    world._make_room(directory)
    assert not directory.exists()
    assert capsys.readouterr().err.count("\n") == 1


def test_make_room_refuses_when_something_answers_on_the_socket(tmp_path: Path) -> None:
    directory = tmp_path / "world"
    directory.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(directory / "control.sock"))
        sock.listen(1)
        with pytest.raises(ConfigError, match=r"answers on .*control\.sock but has no world\.json"):
            world._make_room(directory)
    assert (directory / "control.sock").exists()  # nothing of it was touched


def test_make_room_refuses_a_running_world(tmp_path: Path) -> None:
    directory = tmp_path / "world"
    sleeper = _naming(directory)
    try:
        _record(directory, sleeper.pid, 0, None)
        with pytest.raises(ConfigError, match=r"already running \(.*, detached\)"):
            world._make_room(directory)
        assert (directory / "world.json").exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_make_room_on_an_unreadable_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "world"
    directory.mkdir()
    (directory / "world.json").write_text('{"launcher_pid": ')
    world._make_room(directory)
    assert not directory.exists()
    assert "removing an unreadable world record" in capsys.readouterr().err


def test_down_without_any_state_creates_nothing(tmp_path: Path) -> None:
    assert world.down(tmp_path / "nowhere") is False
    assert not (tmp_path / "nowhere").exists()


def test_a_closed_process_applies_no_fault_but_still_reverts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(world, "_FAULTS_CLOSED", threading.Event())
    monkeypatch.setenv("GAMEDAY_HOME", str(tmp_path))
    world.close_faults()
    for op in sorted(world.APPLYING):
        with pytest.raises(FaultError, match=f"{op} refused: the process that owns"):
            world.fault(op, {"region": "us-east"})
    # A revert is not refused: it goes on to look for the world (none here).
    with pytest.raises(ConfigError, match="no local world is running"):
        world.fault("revert-all", {})


def test_the_supervisor_refuses_faults_once_its_owner_is_gone(tmp_path: Path) -> None:
    sup = Supervisor(tmp_path, load_topology(), [], 10, True, owner_pid=4242)
    sup.ready = True
    sup.owner_gone.set()
    for op in ("kill-region", "partition", "revert-all"):
        with pytest.raises(FaultError, match=rf"{op} refused: the world's owner \(pid 4242\)"):
            sup.handle({"op": op, "args": {}})
    assert sup.handle({"op": "secrets"})["redis_password"]  # reads still answer


def test_status_shows_the_ownership(capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.cli import _print_world

    _print_world({"phase": "ready", "ownership": "owned by pid 77", "regions": []})
    assert "owner              owned by pid 77\n" in capsys.readouterr().out
    _print_world({"phase": "ready", "ownership": "detached", "regions": []})
    assert "owner              detached\n" in capsys.readouterr().out
