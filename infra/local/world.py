"""The host side of a local world: bring it up, talk to it, enter it, take it down.

A world is one `unshare` process (network, mount and PID namespaces, plus a user
namespace when not root) whose process 1 runs the supervisor. Its state lives in
`<home>/world/` (default home: `.gameday/` in the current directory, or
`$GAMEDAY_HOME`): `world.json` (pids, URLs, addresses, owner), the control socket,
configs, logs and data of every service.

Ownership: a world is either *owned* by the process that brought it up (`gameday run`,
`testbed up --foreground`, a test) or *detached* on purpose (`testbed up`, a game day).
An owned world gets a lifeline, the read end of a pipe whose write end only its owner
holds; when the owner dies, by any signal, the supervisor reads EOF, refuses every
fault and removes the world. One world per state folder: `up` and `down` hold
`<home>/world.lock` (`fcntl.flock`) from the "already running?" check until
`world.json` is written, and while stopping.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import (
    ConfigError,
    FaultError,
    PrerequisiteError,
    UnsupportedFault,
    WorldBusy,
    WorldNotUp,
)
from infra.local import plan
from infra.local.topology import DEFAULT_TOPOLOGY, load_topology
from infra.types import FaultRecord, append_event

REQUIRED_PROGRAMS = {
    "redis-server": "redis-server",
    "redis-sentinel": "redis-sentinel",
    "prometheus": "prometheus",
    "prometheus-redis-exporter": "prometheus-redis-exporter",
    "haproxy": "haproxy",
    "ip": "iproute2",
    "tc": "iproute2",
    "nft": "nftables",
    "unshare": "util-linux",
    "nsenter": "util-linux",
}
UP_TIMEOUT = 120.0
CONTROL_TIMEOUT = 60.0
LOCK_FILE = "world.lock"
LOCK_WAIT = 10.0  # `down` waits this long for an `up` to finish writing world.json
ORPHAN_GRACE = 10.0  # an owner-less world's supervisor removes itself well within this
# Operations that inject a fault (the others revert or read): the ones a drill whose
# owner is gone must never send.
APPLYING = frozenset({"kill-region", "partition", "corrupt-replica", "degrade-link"})
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes; leave room
ERROR_KINDS: dict[str, type[Exception]] = {
    "ConfigError": ConfigError,
    "UnsupportedFault": UnsupportedFault,
    "FaultError": FaultError,
}


def home() -> Path:
    """gameday's state folder: `$GAMEDAY_HOME`, else `.gameday/` in the working directory."""
    return Path(os.environ.get("GAMEDAY_HOME") or Path.cwd() / ".gameday").resolve()


def world_dir(base: Path | None = None) -> Path:
    """The world's folder, resolved: a world is recognised by this path in its argv."""
    return ((base or home()) / "world").resolve()


@dataclass(frozen=True)
class WorldInfo:
    """What `world.json` records about a running world.

    `owner_pid` is the process whose death removes the world; None for a detached one.
    """

    directory: Path
    launcher_pid: int
    init_pid: int
    started_at: float
    urls: dict[str, str]
    topology: str
    owner_pid: int | None = None

    @property
    def control_socket(self) -> Path:
        return self.directory / "control.sock"

    @property
    def ownership(self) -> str:
        return "detached" if self.owner_pid is None else f"owned by pid {self.owner_pid}"


# World folder -> write end of its lifeline, for the worlds this process owns. Only this
# process may hold it: os.pipe() makes it non-inheritable, so no child keeps it open.
_LIFELINES: dict[Path, int] = {}


def _notice(message: str) -> None:
    """One line on stderr for something a user should know that is not an error."""
    with contextlib.suppress(OSError):
        print(f"gameday: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def world_lock(base: Path | None = None, wait: float = 0.0) -> Iterator[None]:
    """Hold the state folder's world lock; WorldBusy when another command holds it.

    `wait` is how long to wait for it (0: fail at once, as the loser of two `up`s
    must). The holder's pid is written into the lock file for the loser's message.
    """
    state = base or home()
    state.mkdir(parents=True, exist_ok=True)
    path = state / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError as exc:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise WorldBusy(
                        f"another gameday command (pid {holder}) is starting or stopping "
                        f"the world in {state}: nothing was changed; try again when it is done"
                    ) from exc
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _search_path() -> str:
    extra = ["/usr/sbin", "/sbin", "/usr/local/sbin"]
    return os.pathsep.join([os.environ.get("PATH", "/usr/bin:/bin"), *extra])


def check_prerequisites() -> None:
    """Raise PrerequisiteError naming every missing program and the Debian package."""
    path = _search_path()
    missing = {pkg for prog, pkg in REQUIRED_PROGRAMS.items() if not shutil.which(prog, path=path)}
    if missing:
        names = " ".join(sorted(missing))
        raise PrerequisiteError(
            f"missing Debian packages: {names} (run `make setup`, or "
            f"`sudo apt-get install -y {names}`)"
        )


def namespace_flags() -> list[str]:
    """unshare flags for this user: root needs no user namespace."""
    flags = ["--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"]
    if os.geteuid() != 0:
        flags = ["--user", "--map-root-user", *flags]
    return flags


def check_privileges() -> None:
    """Raise PrerequisiteError when this user cannot create the world's namespaces."""
    probe = ["unshare", *namespace_flags(), "true"]
    try:
        done = subprocess.run(
            probe,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env={**os.environ, "PATH": _search_path()},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PrerequisiteError(f"cannot run unshare: {exc}") from exc
    if done.returncode != 0:
        raise PrerequisiteError(
            "not enough privileges to create network namespaces: run as root, or enable "
            "unprivileged user namespaces (sysctl user.max_user_namespaces > 0; on Debian "
            f"kernel.unprivileged_userns_clone=1). unshare said: {done.stderr.strip()}"
        )


def _alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(0, …) would test our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _recorded(directory: Path) -> WorldInfo | None:
    """`world.json` as written, alive or not; None when absent or unreadable."""
    try:
        raw = json.loads((directory / "world.json").read_text())
        owner = raw.get("owner_pid")
        return WorldInfo(
            directory,
            int(raw["launcher_pid"]),
            int(raw["init_pid"]),
            float(raw["started_at"]),
            dict(raw["urls"]),
            str(raw["topology"]),
            None if owner is None else int(owner),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _of_world(pid: int, info: WorldInfo) -> bool:
    """True when `pid` is alive and is the world's launcher or init (not a reused pid)."""
    if not _alive(pid):
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # alive but unreadable: assume it is, rather than forget a world
    return str(info.directory).encode() in argv


def stale_reason(info: WorldInfo) -> str | None:
    """Why a recorded world is no longer usable, or None while it runs."""
    if not _of_world(info.launcher_pid, info) and not _of_world(info.init_pid, info):
        return f"its processes (pids {info.launcher_pid}, {info.init_pid}) are gone"
    if info.owner_pid is not None and not _alive(info.owner_pid):
        return f"its owner (pid {info.owner_pid}) is gone"
    return None


def read_info(base: Path | None = None) -> WorldInfo | None:
    """The running world's record, or None (none, unreadable, or stale).

    A stale record is left in place: only `up` and `down`, holding the world lock,
    remove it (a reader removing it could delete the record of a world being started).
    """
    info = _recorded(world_dir(base))
    if info is None:
        return None
    if in_world():
        # Inside the world the host's pids are not visible; being here proves it runs.
        return info
    return None if stale_reason(info) else info


def require_world(base: Path | None = None) -> WorldInfo:
    """The running world's record; WorldNotUp (saying why when a stale one is there)."""
    info = read_info(base)
    if info is None:
        recorded = _recorded(world_dir(base))
        reason = stale_reason(recorded) if recorded is not None else None
        stale = f": a stale record is there, {reason}" if reason else ""
        raise WorldNotUp(
            f"no local world is running (looked in {world_dir(base)}{stale}); "
            "start one with `gameday testbed up`"
        )
    return info


def control(
    request: dict[str, Any],
    base: Path | None = None,
    timeout: float = CONTROL_TIMEOUT,
    info: WorldInfo | None = None,
) -> Any:
    """Send one request to the supervisor; returns its result or raises its error."""
    info = info or require_world(base)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(info.control_socket))
            sock.sendall((json.dumps(request) + "\n").encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (OSError, TimeoutError) as exc:
        raise WorldNotUp(
            f"the world's supervisor does not answer ({info.control_socket}): {exc}"
        ) from exc
    if not data:
        raise WorldNotUp("the world's supervisor closed the connection without answering")
    reply = json.loads(data)
    if not reply["ok"]:
        raise ERROR_KINDS.get(reply.get("kind", ""), FaultError)(reply["error"])
    return reply["result"]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _bind_local(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from exc
    sock.listen(128)
    return sock


def up(
    topology_path: Path | None = None,
    base: Path | None = None,
    ports: dict[str, int] | None = None,
    entities: int = 10_000,
    verify_model_digest: bool = True,
    verify_features: bool = True,
    progress: Callable[[str], None] | None = None,
    timeout: float = UP_TIMEOUT,
    detach: bool = False,
) -> WorldInfo:
    """Bring a world up and return once every region is ready.

    `ports` maps "router", "prometheus" and "haproxy_stats" to host ports on 127.0.0.1
    (0 picks a free one). On any failure the half-built world is removed before the
    error is raised. The world is owned by the calling process (it is removed when this
    process dies, by any signal) unless `detach`. WorldBusy when another command is
    starting or stopping a world in the same state folder; ConfigError when a world
    runs there already. A stale world there (its processes or its owner gone) is
    removed, with one line on stderr.
    """
    topology_path = (topology_path or DEFAULT_TOPOLOGY).resolve()
    load_topology(topology_path)  # fail on a bad file before touching anything
    if entities < 1:
        raise ConfigError(f"entities {entities} must be at least 1")
    check_prerequisites()
    check_privileges()
    directory = world_dir(base)
    if len(str(directory / "control.sock")) > SOCKET_PATH_MAX:
        raise ConfigError(f"state folder path too long for a unix socket: {directory}")
    options = _Options(verify_model_digest, verify_features)
    with world_lock(base):
        _make_room(directory)
        directory.mkdir(parents=True)
        info, launcher = _launch(directory, topology_path, ports, entities, detach, options)
    try:
        _wait_ready(info, launcher, progress, timeout)
    except BaseException:
        _release(directory)
        _kill(info)
        raise
    secrets_ = control({"op": "secrets"}, info=info)
    world_json = json.loads((directory / "world.json").read_text())
    world_json["redis_password"] = secrets_["redis_password"]
    _write_record(directory, world_json, mode=0o600)
    return info


def _write_record(directory: Path, doc: dict[str, Any], mode: int = 0o644) -> None:
    """Write world.json whole or not at all: a reader never sees half a record."""
    temporary = directory / "world.json.tmp"
    temporary.write_text(json.dumps(doc, indent=2) + "\n")
    temporary.chmod(mode)
    os.replace(temporary, directory / "world.json")


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def _make_room(directory: Path) -> None:
    """Under the world lock: refuse when a world runs; remove a stale one, saying so."""
    info = _recorded(directory)
    record = directory / "world.json"
    sock = directory / "control.sock"
    if info is not None:
        reason = stale_reason(info)
        if reason is None:
            raise ConfigError(
                f"a world is already running ({directory}, {info.ownership}); "
                "`gameday testbed down` first"
            )
        _remove_stale(info, reason)
    elif record.exists():
        _notice(f"removing an unreadable world record {record}")
    elif sock.exists():
        if _socket_answers(sock):
            raise ConfigError(
                f"a world answers on {sock} but has no world.json: stop it before starting "
                "another (its supervisor takes {'op': 'shutdown'} on that socket)"
            )
        _notice(f"removing a stale control socket {sock} (nothing answers on it)")
    if directory.exists():
        shutil.rmtree(directory)


def _remove_stale(info: WorldInfo, reason: str) -> None:
    """Make sure no process of a stale world is left, then forget it."""
    # An owner-less world removes itself; give its supervisor the time to, then force.
    deadline = time.monotonic() + ORPHAN_GRACE
    while time.monotonic() < deadline and (
        _of_world(info.launcher_pid, info) or _of_world(info.init_pid, info)
    ):
        time.sleep(0.05)
    _kill(info)
    _notice(f"removed a stale world in {info.directory}: {reason}")
    for name in ("world.json", "control.sock"):
        with contextlib.suppress(OSError):
            (info.directory / name).unlink()


def _release(directory: Path) -> None:
    """Close this process's lifeline to the world in `directory`, if it owns it."""
    fd = _LIFELINES.pop(directory, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


@dataclass(frozen=True)
class _Options:
    verify_model_digest: bool
    verify_features: bool


def _launch(
    directory: Path,
    topology_path: Path,
    ports: dict[str, int] | None,
    entities: int,
    detach: bool,
    options: _Options,
) -> tuple[WorldInfo, subprocess.Popen[bytes]]:
    """Start the `unshare` process and write world.json; returns once both are done."""
    wanted = {"router": 18080, "prometheus": 19090, "haproxy_stats": 18404, **(ports or {})}
    targets = {
        "router": (plan.EDGE_ADDRESS, plan.ROUTER_PORT),
        "prometheus": (plan.EDGE_ADDRESS, plan.PROMETHEUS_PORT),
        "haproxy_stats": (plan.EDGE_ADDRESS, plan.HAPROXY_STATS_PORT),
    }
    sockets: dict[str, socket.socket] = {}
    try:
        for name, port in wanted.items():
            sockets[name] = _bind_local(port)
    except ConfigError:
        for sock in sockets.values():
            sock.close()
        raise
    urls = {
        "router_url": f"http://127.0.0.1:{sockets['router'].getsockname()[1]}",
        "prometheus_url": f"http://127.0.0.1:{sockets['prometheus'].getsockname()[1]}",
        "haproxy_stats_url": f"http://127.0.0.1:{sockets['haproxy_stats'].getsockname()[1]}/stats",
    }
    argv: list[str] = [
        "unshare",
        *namespace_flags(),
        sys.executable,
        "-m",
        "infra.local.supervisor",
        "--world-dir",
        str(directory),
        "--topology",
        str(topology_path),
        "--entities",
        str(entities),
    ]
    if not options.verify_model_digest:
        argv.append("--no-verify-model-digest")
    if not options.verify_features:
        argv.append("--no-verify-features")
    for name, sock in sockets.items():
        address, port = targets[name]
        argv += ["--forward", f"{sock.fileno()}:{address}:{port}"]
    pass_fds = [s.fileno() for s in sockets.values()]
    reader, lifeline = -1, -1
    if not detach:
        # The read end goes to the supervisor; the write end stays here, and nowhere
        # else, so its EOF on the other side means exactly "the owner is gone".
        reader, lifeline = os.pipe()
        argv += ["--lifeline", str(reader), "--owner-pid", str(os.getpid())]
        pass_fds.append(reader)
    log = (directory / "supervisor.log").open("ab")
    env = {**os.environ, "PATH": _search_path(), "PYTHONUNBUFFERED": "1"}
    try:
        launcher = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            pass_fds=pass_fds,
            start_new_session=True,
        )
    except BaseException:
        if lifeline >= 0:
            os.close(lifeline)
        raise
    finally:
        log.close()
        for sock in sockets.values():
            sock.close()
        if reader >= 0:
            os.close(reader)
    if lifeline >= 0:
        _LIFELINES[directory] = lifeline
    deadline = time.monotonic() + 5
    init_pid = 0
    while time.monotonic() < deadline and not init_pid:
        children = _children(launcher.pid)
        init_pid = children[0] if children else 0
        if launcher.poll() is not None:
            break
        time.sleep(0.02)
    owner = None if detach else os.getpid()
    info = WorldInfo(
        directory, launcher.pid, init_pid, time.time(), urls, str(topology_path), owner
    )
    _write_record(
        directory,
        {
            "launcher_pid": info.launcher_pid,
            "init_pid": info.init_pid,
            "owner_pid": owner,
            "started_at": info.started_at,
            "urls": urls,
            "topology": str(topology_path),
            "addresses": {n.name: n.address for n in plan.nodes(load_topology(topology_path))},
        },
    )
    return info, launcher


def _log_tail(info: WorldInfo, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        text = (info.directory / "supervisor.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])
    return ""


def _wait_ready(
    info: WorldInfo,
    launcher: subprocess.Popen[bytes],
    progress: Callable[[str], None] | None,
    timeout: float,
) -> None:
    deadline = time.monotonic() + timeout
    last_phase = ""
    while time.monotonic() < deadline:
        if launcher.poll() is not None:
            raise PrerequisiteError(
                f"the world exited during start-up (code {launcher.returncode}); "
                f"last lines of {info.directory / 'supervisor.log'}:\n{_log_tail(info)}"
            )
        status: dict[str, Any] | None = None
        if info.control_socket.exists():
            with contextlib.suppress(WorldNotUp):
                status = control({"op": "status"}, info=info, timeout=5)
        if status:
            if status["phase"] != last_phase and progress:
                progress(status["phase"])
            last_phase = status["phase"]
            if status["ready"]:
                return
            if status["error"]:
                raise PrerequisiteError(
                    f"the world failed to start: {status['error']}\n{_log_tail(info)}"
                )
        time.sleep(0.2)
    raise PrerequisiteError(
        f"the world was not ready after {timeout:.0f} s (phase: {last_phase}); "
        f"see {info.directory / 'supervisor.log'}"
    )


def _kill(info: WorldInfo) -> None:
    """SIGKILL the world: the kernel removes everything in it."""
    for pid in (info.init_pid, info.launcher_pid):
        if _of_world(pid, info):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        _of_world(info.launcher_pid, info) or _of_world(info.init_pid, info)
    ):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(info.launcher_pid, os.WNOHANG)
        time.sleep(0.02)


def down(base: Path | None = None, timeout: float = 4.0, info: WorldInfo | None = None) -> bool:
    """Stop the running world; False when none was running. Never leaves a process.

    Given the `info` that `up` returned, it needs no `world.json` (a caller that started
    the world can always remove it). Holds the world lock while stopping (WorldBusy
    after LOCK_WAIT seconds of another command holding it). A stale record is removed,
    with one line on stderr, and counts as no world running.
    """
    directory = info.directory if info is not None else world_dir(base)
    if info is None and not directory.exists():
        return False
    with world_lock(directory.parent, wait=LOCK_WAIT):
        recorded = info or _recorded(directory)
        if recorded is None:
            _release(directory)
            return False
        reason = stale_reason(recorded)
        if reason is not None and info is None:
            _release(directory)
            _remove_stale(recorded, reason)
            return False
        with contextlib.suppress(WorldNotUp, FaultError):
            control({"op": "shutdown"}, info=recorded, timeout=2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _of_world(recorded.launcher_pid, recorded):
            time.sleep(0.05)
        _release(directory)
        _kill(recorded)
        for name in ("world.json", "control.sock"):
            with contextlib.suppress(OSError):
                (directory / name).unlink()
    return True


def status(base: Path | None = None) -> dict[str, Any]:
    """The supervisor's status plus the URLs and the ownership from `world.json`.

    `owner_pid` is the pid whose death removes the world, None for a detached world;
    `ownership` says the same in words.
    """
    info = require_world(base)
    result: dict[str, Any] = control({"op": "status"}, info=info, timeout=10)
    result["urls"] = info.urls
    result["world_dir"] = str(info.directory)
    result["owner_pid"] = info.owner_pid
    result["ownership"] = info.ownership
    return result


IN_WORLD_ENV = "GAMEDAY_IN_WORLD"


def in_world() -> bool:
    """True in a process started by `testbed exec` (inside the world's namespaces)."""
    return os.environ.get(IN_WORLD_ENV) == "1"


def endpoints(base: Path | None = None) -> dict[str, str]:
    """Router, Prometheus and HAProxy stats URLs as reachable from this process.

    Inside the world they are the edge's own addresses; on the host, the forwarded
    ports on 127.0.0.1.
    """
    if in_world():
        edge = f"http://{plan.EDGE_ADDRESS}"
        return {
            "router_url": f"{edge}:{plan.ROUTER_PORT}",
            "prometheus_url": f"{edge}:{plan.PROMETHEUS_PORT}",
            "haproxy_stats_url": f"{edge}:{plan.HAPROXY_STATS_PORT}/stats",
        }
    return dict(require_world(base).urls)


def node_prefix(node: str | None = None, base: Path | None = None) -> list[str]:
    """argv prefix that runs a command in the world (in `node`'s namespace if given)."""
    if node is not None and node != plan.EDGE:
        info = require_world(base)
        topology = load_topology(Path(info.topology))
        if node not in {r.name for r in topology.regions}:
            raise ConfigError(f"unknown node {node!r} (edge or a region of {info.topology})")
    netns = ["nsenter", f"--net=/run/netns/gd-{node}"] if node else []
    if in_world():
        return [*netns, "--"] if netns else []
    info = require_world(base)
    argv = ["nsenter", "-t", str(info.init_pid), "--net", "--mount", "--pid", f"--wd={Path.cwd()}"]
    if os.geteuid() != 0:
        argv[3:3] = ["--user", "--preserve-credentials"]
    return [*argv, *netns, "--", "env", f"{IN_WORLD_ENV}=1"]


def exec_argv(
    command: Sequence[str], base: Path | None = None, node: str | None = None
) -> list[str]:
    """The argv that runs `command` inside the world (in `node`'s namespace if given)."""
    if not command:
        raise ConfigError("testbed exec needs a command after `--`")
    return [*node_prefix(node, base), *command]


# Closed for good once the process that owns this drill is gone (see `close_faults`).
_FAULT_GATE = threading.Lock()
_FAULTS_CLOSED = threading.Event()


def close_faults() -> None:
    """Refuse every later fault of this process; returns once one in flight is done.

    For a drill whose owner is gone: after this, `fault` applies nothing, and what the
    caller reverts next includes anything applied before.
    """
    with _FAULT_GATE:
        _FAULTS_CLOSED.set()


def fault(
    op: str, args: dict[str, Any], base: Path | None = None, events: Path | None = None
) -> dict[str, Any]:
    """Apply or revert a fault through the supervisor; appends the record to `events`.

    FaultError for an operation in APPLYING after `close_faults`; reverts still run.
    """
    if op not in APPLYING:
        return _fault(op, args, base, events)
    with _FAULT_GATE:
        if _FAULTS_CLOSED.is_set():
            raise FaultError(f"{op} refused: the process that owns this drill is gone")
        return _fault(op, args, base, events)


def _fault(op: str, args: dict[str, Any], base: Path | None, events: Path | None) -> dict[str, Any]:
    info = require_world(base)
    result: dict[str, Any] = control({"op": op, "args": args}, info=info)
    path = events or info.directory / "events.jsonl"
    records = result.get("records", [result]) if op == "revert-all" else [result]
    for record in records:
        if record:
            append_event(path, FaultRecord.from_dict(record))
    return result
