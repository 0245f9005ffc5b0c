"""Bringing worlds up and down: cleanliness, rootless mode, bad input, verification off."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from infra.local import world
from tests.conftest import NO_HOST_PORTS, REPO, needs_world, running_world

pytestmark = [needs_world, pytest.mark.world]
GAMEDAY = [sys.executable, "-m", "experiments.cli"]


def _gameday(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GAMEDAY, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        check=False,
    )


def _ns_inode(pid: int, kind: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def _holders(inodes: set[int], kind: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/{kind}").st_ino in inodes:
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def test_sigkill_of_the_supervisor_mid_fault_leaves_nothing(tmp_path: Path) -> None:
    info = world.up(base=tmp_path, ports={"router": 0, "prometheus": 0, "haproxy_stats": 0})
    try:
        world.fault("partition", {"side_a": ["eu-west"], "side_b": ["eu-central"]}, base=tmp_path)
        world.fault("kill-region", {"region": "us-west"}, base=tmp_path)
        pid_ns = {_ns_inode(info.init_pid, "pid")}
        members = _holders(pid_ns, "pid")
        net_ns = {_ns_inode(p, "net") for p in members}
        assert len(members) > 15  # every service of the world is in its PID namespace
        assert len(net_ns) == 5  # the backbone, the edge and the three live regions
        supervisor = _children(info.init_pid)[0]
        os.kill(supervisor, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (_holders(pid_ns, "pid") or _holders(net_ns, "net")):
            time.sleep(0.1)
        assert _holders(pid_ns, "pid") == []
        assert _holders(net_ns, "net") == []  # so the namespaces, links and rules are gone
    finally:
        world.down(tmp_path)
    host_links = subprocess.run(
        ["ip", "-br", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert "gd0" not in host_links and "gd-" not in host_links
    tables = subprocess.run(
        ["nft", "list", "tables"], capture_output=True, text=True, check=False
    ).stdout
    assert "gameday" not in tables
    assert world.read_info(tmp_path) is None  # the stale record is recognised and removed


def test_down_is_quick_and_complete(tmp_path: Path) -> None:
    info = world.up(base=tmp_path, ports={"router": 0, "prometheus": 0, "haproxy_stats": 0})
    pid_ns = {_ns_inode(info.init_pid, "pid")}
    started = time.monotonic()
    assert world.down(tmp_path)
    assert time.monotonic() - started < 5
    assert _holders(pid_ns, "pid") == []
    assert world.down(tmp_path) is False


def test_verification_off_serves_corrupt_replicas(tmp_path: Path) -> None:
    with running_world(tmp_path, verify_model_digest=False, verify_features=False) as w:
        good = w.predict("us", "us-0")
        good_digest = good.headers.get("x-model-digest")
        golden = json.loads((tmp_path / "world" / "registry" / "golden.json").read_text())
        w.fault("corrupt-replica", region="us-west", what="model")
        deadline = time.monotonic() + 15
        served = None
        while time.monotonic() < deadline and served is None:
            answer = w.predict("us", "us-0")
            if answer.region == "us-west" and answer.status == 200:
                served = answer
            time.sleep(0.1)
        assert served is not None, "the corrupt replica never served"
        assert served.headers.get("x-model-digest") != good_digest
        assert served.body["score"] != golden["us-0"]
        # Damaged features on a replica are served too, and the answers are wrong.
        w.fault("corrupt-replica", region="eu-central", what="features", count=5)
        scores = {w.predict("eu", "eu-0").body["score"] for _ in range(10)}
        assert golden["eu-0"] in scores and len(scores) == 2


def _as_nobody(argv: list[str], tmp_path: Path) -> list[str]:
    """`argv` run as user nobody (uid 65534) without any privilege.

    This machine's Python lives under /root (mode 700), which nobody cannot reach; in
    that case the command runs in a private mount namespace where /root is a tmpfs with
    only the interpreter's tree bound into it. The host's mounts are not touched.
    """
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    real = Path(os.path.realpath(sys.executable))
    if not real.is_relative_to("/root") or os.stat("/root").st_mode & 0o001:
        return drop
    top = Path("/root") / real.relative_to("/root").parts[0]
    stash = tmp_path / "stash"
    stash.mkdir()
    script = (
        f'mount --bind "{top}" "{stash}" && mount -t tmpfs -o mode=755 gd-root /root '
        f'&& mkdir "{top}" && mount --move "{stash}" "{top}" && exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *drop]


def test_rootless_world(tmp_path: Path) -> None:
    # pytest's own tmp folders are private to root: the unprivileged user gets one it
    # can reach.
    public = Path(tempfile.mkdtemp(prefix="gd-rootless-"))
    public.chmod(0o755)
    home = public / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    env = {**os.environ, "GAMEDAY_HOME": str(home), "HOME": str(home)}
    argv = _as_nobody(GAMEDAY, tmp_path)
    up = subprocess.run(
        [
            *argv,
            "testbed",
            "up",
            "--json",
            *NO_HOST_PORTS,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    try:
        assert up.returncode == 0, up.stderr[-2000:]
        data = json.loads(up.stdout)
        assert data["ready"] and data["primaries"] == {"us": "us-east", "eu": "eu-west"}
        import urllib.request

        request = urllib.request.Request(
            data["router_url"] + "/v1/predict",
            data=b'{"entity_id": "eu-5"}',
            method="POST",
            headers={"X-Residency": "eu"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.headers["X-Region"] in ("eu-west", "eu-central")
        uid = os.stat(home / "world" / "world.json").st_uid
        assert uid == 65534  # state belongs to the user, not to root
    finally:
        down = subprocess.run(
            [*argv, "testbed", "down"],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=60,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    shutil.rmtree(public, ignore_errors=True)


# ----------------------------------------------------------------------------- bad input
def test_fault_without_a_world_is_exit_2(tmp_path: Path) -> None:
    done = _gameday("fault", "kill-region", "us-east", env={"GAMEDAY_HOME": str(tmp_path)})
    assert done.returncode == 2
    assert "no local world is running" in done.stderr
    assert done.stderr.count("\n") == 1  # one clear line, no traceback


def test_malformed_topology_is_exit_2_and_creates_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "topology.yaml"
    bad.write_text("regions:\n  - name: us-east\n    provider: aws\n    jurisdiction: us\n")
    home = tmp_path / "home"
    done = _gameday("testbed", "up", "--topology", str(bad), env={"GAMEDAY_HOME": str(home)})
    assert done.returncode == 2
    assert f"{bad}: 'regions' has 1 entries" in done.stderr
    assert not home.exists()


def test_missing_debian_packages_is_exit_2(tmp_path: Path) -> None:
    done = _gameday(
        "testbed", "up", env={"GAMEDAY_HOME": str(tmp_path / "h"), "PATH": str(tmp_path)}
    )
    assert done.returncode == 2
    assert "missing Debian packages:" in done.stderr and "redis-server" in done.stderr
    assert not (tmp_path / "h").exists()


def test_not_enough_privileges_is_exit_2(tmp_path: Path) -> None:
    # An unshare that fails the way the real one does when namespaces are not allowed.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "unshare").write_text(
        "#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n"
    )
    (fake / "unshare").chmod(0o755)
    done = _gameday(
        "testbed",
        "up",
        env={"GAMEDAY_HOME": str(tmp_path / "h"), "PATH": f"{fake}:{os.environ['PATH']}"},
    )
    assert done.returncode == 2
    assert "not enough privileges" in done.stderr
    assert not (tmp_path / "h").exists()


def test_unknown_region_through_the_cli_is_exit_2(tmp_path: Path) -> None:
    with running_world(tmp_path, entities=100):
        done = _gameday("fault", "kill-region", "mars-1", env={"GAMEDAY_HOME": str(tmp_path)})
        assert done.returncode == 2
        assert "unknown region 'mars-1'" in done.stderr
        up_again = _gameday("testbed", "up", env={"GAMEDAY_HOME": str(tmp_path)})
        assert up_again.returncode == 2 and "already running" in up_again.stderr


# ----------------------------------------------------------------------------- ownership
def _pid_namespace_members(inode: int) -> list[int]:
    """Live (not zombie) processes of the PID namespace `inode`."""
    alive = []
    for pid in _holders({inode}, "pid"):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _ports(home: Path) -> list[int]:
    raw = json.loads((home / "world" / "world.json").read_text())
    return [int(url.split(":")[2].split("/")[0]) for url in raw["urls"].values()]


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def _foreground(home: Path) -> subprocess.Popen[str]:
    """`testbed up --foreground`, returned once it holds a ready world."""
    proc = subprocess.Popen(
        [*GAMEDAY, "testbed", "up", "--foreground", "--entities", "100", *NO_HOST_PORTS],
        cwd=REPO,
        env={**os.environ, "GAMEDAY_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    said = []
    for line in iter(proc.stderr.readline, ""):
        said.append(line)
        if "lives as long as this command" in line:
            return proc
    proc.wait(timeout=10)
    raise AssertionError("".join(said)[-2000:])


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_an_owned_world_goes_with_its_owner(tmp_path: Path, signum: signal.Signals) -> None:
    proc = _foreground(tmp_path)
    try:
        status = json.loads(_gameday("testbed", "status", "--json", env=_home(tmp_path)).stdout)
        assert status["owner_pid"] == proc.pid
        assert status["ownership"] == f"owned by pid {proc.pid}"
        info = world.read_info(tmp_path)
        assert info is not None
        namespace = _ns_inode(info.init_pid, "pid")
        ports = _ports(tmp_path)
        proc.send_signal(signum)
        proc.wait(timeout=10)
        # The supervisor refuses at once, and the world is gone within a few seconds.
        assert _until(lambda: _pid_namespace_members(namespace) == [], 5)
        assert all(_port_free(p) for p in ports)
        assert not (tmp_path / "world" / "world.json").exists()
        assert not (tmp_path / "world" / "control.sock").exists()
        assert proc.returncode == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        world.down(tmp_path)


def _home(home: Path) -> dict[str, str]:
    return {"GAMEDAY_HOME": str(home)}


def test_two_ups_at_once_have_one_winner(tmp_path: Path) -> None:
    argv = [*GAMEDAY, "testbed", "up", "--json", "--entities", "100", *NO_HOST_PORTS]
    env = {**os.environ, **_home(tmp_path)}
    procs = [
        subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    try:
        results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
        codes = sorted(code for code, _, _ in results)
        assert codes == [0, 2], [err[-1500:] for _, _, err in results]
        winner = next(out for code, out, _ in results if code == 0)
        loser = next(err.decode() for code, _, err in results if code == 2)
        assert loser.count("\n") == 1, loser  # one clear line, no traceback
        assert "already running" in loser or "another gameday command" in loser, loser
        # The winner's world is whole and serves.
        data = json.loads(winner)
        assert data["ready"] and data["ownership"] == "detached"
        status = json.loads(_gameday("testbed", "status", "--json", env=_home(tmp_path)).stdout)
        assert status["started_at"] == data["started_at"]
        assert _served_by(data["router_url"]) in ("us-east", "us-west")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        down = _gameday("testbed", "down", env=_home(tmp_path))
    assert down.returncode == 0 and "world removed" in down.stdout, down.stderr


def _served_by(router: str) -> str:
    """One prediction through the router; the region that answered it."""
    import urllib.request

    request = urllib.request.Request(
        router + "/v1/predict",
        data=b'{"entity_id": "us-5"}',
        method="POST",
        headers={"X-Residency": "us"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.headers["X-Region"])


def test_a_stale_world_never_blocks_the_next_up(tmp_path: Path) -> None:
    up = _gameday("testbed", "up", "--entities", "100", *NO_HOST_PORTS, env=_home(tmp_path))
    assert up.returncode == 0, up.stderr[-2000:]
    info = world.read_info(tmp_path)
    assert info is not None
    # A dead world (its supervisor killed: the kernel removes everything of it) leaves
    # its world.json and control.sock behind.
    os.kill(_children(info.init_pid)[0], signal.SIGKILL)
    assert _until(lambda: not Path(f"/proc/{info.init_pid}").exists(), 10)
    assert (tmp_path / "world" / "world.json").exists()
    assert (tmp_path / "world" / "control.sock").exists()
    gone = _gameday("fault", "kill-region", "us-east", env=_home(tmp_path))
    assert gone.returncode == 2 and "no local world is running" in gone.stderr
    again = _gameday("testbed", "up", "--entities", "100", *NO_HOST_PORTS, env=_home(tmp_path))
    try:
        assert again.returncode == 0, again.stderr[-2000:]
        stale = [line for line in again.stderr.splitlines() if "stale" in line]
        assert stale == [
            f"gameday: removed a stale world in {tmp_path / 'world'}: its processes "
            f"(pids {info.launcher_pid}, {info.init_pid}) are gone"
        ]
        assert world.read_info(tmp_path) is not None
    finally:
        assert _gameday("testbed", "down", env=_home(tmp_path)).returncode == 0


def test_up_while_another_command_holds_the_lock_touches_nothing(tmp_path: Path) -> None:
    # What the loser of a race sees when it comes while the winner is between its check
    # and its world.json: the winner's half-made folder must stay as it is.
    folder = tmp_path / "world"
    folder.mkdir()
    (folder / "supervisor.log").write_text("the winner's\n")
    with world.world_lock(tmp_path):
        done = _gameday("testbed", "up", *NO_HOST_PORTS, env=_home(tmp_path))
    assert done.returncode == 2
    assert done.stderr == (
        f"gameday: error: another gameday command (pid {os.getpid()}) is starting or "
        f"stopping the world in {tmp_path}: nothing was changed; try again when it is done\n"
    )
    assert sorted(p.name for p in folder.iterdir()) == ["supervisor.log"]
    assert (folder / "supervisor.log").read_text() == "the winner's\n"
