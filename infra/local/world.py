"""The host side of a local world: bring it up, talk to it, enter it, take it down.

A world is one `unshare` process (network, mount and PID namespaces, plus a user
namespace when not root) whose process 1 runs the supervisor. Its state lives in
`<home>/world/` (default home: `.gameday/` in the current directory, or
`$GAMEDAY_HOME`): `world.json` (pids, URLs, addresses), the control socket, configs,
logs and data of every service.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.errors import ConfigError, FaultError, PrerequisiteError, UnsupportedFault, WorldNotUp
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
    return (base or home()) / "world"


@dataclass(frozen=True)
class WorldInfo:
    """What `world.json` records about a running world."""

    directory: Path
    launcher_pid: int
    init_pid: int
    started_at: float
    urls: dict[str, str]
    topology: str

    @property
    def control_socket(self) -> Path:
        return self.directory / "control.sock"


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


def read_info(base: Path | None = None) -> WorldInfo | None:
    """The running world's record, or None (a record of a dead world is removed)."""
    directory = world_dir(base)
    path = directory / "world.json"
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    info = WorldInfo(
        directory,
        int(raw["launcher_pid"]),
        int(raw["init_pid"]),
        float(raw["started_at"]),
        dict(raw["urls"]),
        str(raw["topology"]),
    )
    if in_world():
        # Inside the world the host's pids are not visible; being here proves it runs.
        return info
    if not _alive(info.launcher_pid) and not _alive(info.init_pid):
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return info


def require_world(base: Path | None = None) -> WorldInfo:
    info = read_info(base)
    if info is None:
        raise WorldNotUp(
            f"no local world is running (looked in {world_dir(base)}); "
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
) -> WorldInfo:
    """Bring a world up and return once every region is ready.

    `ports` maps "router", "prometheus" and "haproxy_stats" to host ports on 127.0.0.1
    (0 picks a free one). On any failure the half-built world is removed before the
    error is raised.
    """
    topology_path = (topology_path or DEFAULT_TOPOLOGY).resolve()
    load_topology(topology_path)  # fail on a bad file before touching anything
    if entities < 1:
        raise ConfigError(f"entities {entities} must be at least 1")
    check_prerequisites()
    check_privileges()
    directory = world_dir(base)
    if read_info(base) is not None:
        raise ConfigError(f"a world is already running ({directory}); `gameday testbed down` first")
    if len(str(directory / "control.sock")) > SOCKET_PATH_MAX:
        raise ConfigError(f"state folder path too long for a unix socket: {directory}")
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
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
    argv = [
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
    if not verify_model_digest:
        argv.append("--no-verify-model-digest")
    if not verify_features:
        argv.append("--no-verify-features")
    for name, sock in sockets.items():
        address, port = targets[name]
        argv += ["--forward", f"{sock.fileno()}:{address}:{port}"]
    log = (directory / "supervisor.log").open("ab")
    env = {**os.environ, "PATH": _search_path(), "PYTHONUNBUFFERED": "1"}
    launcher = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        pass_fds=[s.fileno() for s in sockets.values()],
        start_new_session=True,
    )
    log.close()
    for sock in sockets.values():
        sock.close()
    deadline = time.monotonic() + 5
    init_pid = 0
    while time.monotonic() < deadline and not init_pid:
        children = _children(launcher.pid)
        init_pid = children[0] if children else 0
        if launcher.poll() is not None:
            break
        time.sleep(0.02)
    info = WorldInfo(directory, launcher.pid, init_pid, time.time(), urls, str(topology_path))
    (directory / "world.json").write_text(
        json.dumps(
            {
                "launcher_pid": info.launcher_pid,
                "init_pid": info.init_pid,
                "started_at": info.started_at,
                "urls": urls,
                "topology": str(topology_path),
                "addresses": {n.name: n.address for n in plan.nodes(load_topology(topology_path))},
            },
            indent=2,
        )
        + "\n"
    )
    try:
        _wait_ready(info, launcher, progress, timeout)
    except BaseException:
        _kill(info)
        raise
    secrets_ = control({"op": "secrets"}, info=info)
    world_json = json.loads((directory / "world.json").read_text())
    world_json["redis_password"] = secrets_["redis_password"]
    path = directory / "world.json"
    path.write_text(json.dumps(world_json, indent=2) + "\n")
    path.chmod(0o600)
    return info


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
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        _alive(info.launcher_pid) or (info.init_pid and _alive(info.init_pid))
    ):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(info.launcher_pid, os.WNOHANG)
        time.sleep(0.02)


def down(base: Path | None = None, timeout: float = 4.0, info: WorldInfo | None = None) -> bool:
    """Stop the running world; False when none was running. Never leaves a process.

    Given the `info` that `up` returned, it needs no `world.json` (a caller that started
    the world can always remove it).
    """
    info = info or read_info(base)
    if info is None:
        return False
    with contextlib.suppress(WorldNotUp, FaultError):
        control({"op": "shutdown"}, info=info, timeout=2)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(info.launcher_pid):
        time.sleep(0.05)
    _kill(info)
    with contextlib.suppress(OSError):
        (info.directory / "world.json").unlink()
    return True


def status(base: Path | None = None) -> dict[str, Any]:
    """The supervisor's status plus the URLs from `world.json`."""
    info = require_world(base)
    result: dict[str, Any] = control({"op": "status"}, info=info, timeout=10)
    result["urls"] = info.urls
    result["world_dir"] = str(info.directory)
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


def fault(
    op: str, args: dict[str, Any], base: Path | None = None, events: Path | None = None
) -> dict[str, Any]:
    """Apply or revert a fault through the supervisor; appends the record to `events`."""
    info = require_world(base)
    result: dict[str, Any] = control({"op": op, "args": args}, info=info)
    path = events or info.directory / "events.jsonl"
    records = result.get("records", [result]) if op == "revert-all" else [result]
    for record in records:
        if record:
            append_event(path, FaultRecord.from_dict(record))
    return result
