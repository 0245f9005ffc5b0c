"""The world's supervisor: it builds the private network, runs every service, applies faults.

It runs inside the world's namespaces (network, mount, PID and, when not root, user),
started by `world.up` through `unshare`. Process 1 of the PID namespace is a tiny
reaper that forks the supervisor and exits as soon as the supervisor does; when
process 1 exits the kernel kills every process of the world and frees its namespaces,
links and firewall rules, whatever the reason (SIGKILL included).

No service daemonizes: each runs in the foreground as a child of the supervisor, which
restarts nothing by itself (a killed region stays dead until restored).

An owned world (`--lifeline FD`) watches the read end of a pipe whose write end only its
owner holds. EOF there means the owner is gone, whatever killed it: from that moment the
supervisor refuses every fault, kills every process that entered the world from outside
(the drill first), removes `world.json` and the control socket, and exits, which takes
the whole world with it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import socketserver
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from infra.errors import FaultError, GamedayError
from infra.local import configs, netns, plan, stores
from infra.local import model as modelmod
from infra.local.topology import load_topology
from infra.types import Region, Topology

ENTITIES_DEFAULT = 10_000
READY_TIMEOUT = 90.0


@dataclass
class Service:
    """One foreground program of the world."""

    name: str
    node: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: Any = None  # subprocess.Popen[bytes] | None
    starts: int = 0

    @property
    def key(self) -> str:
        return f"{self.node}/{self.name}"

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class Supervisor:
    """Owns the world: its network, its programs and its faults."""

    def __init__(
        self,
        world_dir: Path,
        topology: Topology,
        forwards: list[tuple[int, str, int]],
        entities: int,
        verify_model_digest: bool,
        verify_features: bool = True,
        owner_pid: int | None = None,
    ) -> None:
        self.world_dir = world_dir
        self.topology = topology
        self.forwards = forwards
        self.entities = entities
        self.verify_model_digest = verify_model_digest
        self.verify_features = verify_features
        self.password = secrets.token_hex(16)
        self.nodes = {n.name: n for n in plan.nodes(topology)}
        self.services: dict[str, Service] = {}
        self.lock = threading.RLock()
        self.shutdown = threading.Event()
        self.phase = "starting"
        self.error = ""
        self.ready = False
        self.registry = world_dir / "registry"
        self.started_at = time.time()
        self.owner_pid = owner_pid
        self.owner_gone = threading.Event()

    # ----------------------------------------------------------------- plumbing
    def address(self, node: str) -> str:
        return self.nodes[node].address

    def region_dir(self, node: str) -> Path:
        return self.world_dir / "nodes" / node

    def set_phase(self, phase: str) -> None:
        self.phase = phase
        print(f"[{time.time() - self.started_at:6.2f}s] {phase}", flush=True)

    def _open_log(self, path: Path) -> IO[bytes]:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("ab")

    def spawn(self, service: Service) -> None:
        """Start (or restart) a service in its node's network namespace."""
        import subprocess

        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(self.world_dir),
            "LANG": "C.UTF-8",
        }
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        env.update(service.env)
        with self._open_log(service.log) as log:
            service.popen = subprocess.Popen(
                netns.in_netns(self.nodes[service.node].netns, service.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.region_dir(service.node),
            )
        service.starts += 1
        self.services[service.key] = service

    def service_list(self) -> list[Service]:
        """A snapshot of the services, safe to iterate from any thread.

        The start-up thread adds services while control-socket threads read them (a
        `testbed status` polled during start-up): iterating the dict itself there
        raised "dictionary changed size during iteration".
        """
        return list(self.services.values())

    def kill_node_processes(self, node: str) -> list[int]:
        """SIGKILL every process whose network namespace is `node`'s; returns their pids.

        Goes by namespace, not by the supervisor's own table, so a stray process (an
        operator's `testbed exec` into the region) dies with the region too.
        """
        target = os.stat(f"{netns.NETNS_DIR}/{self.nodes[node].netns}").st_ino
        killed = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            try:
                if os.stat(f"/proc/{pid}/ns/net").st_ino == target and pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        for service in self.service_list():
            if service.node == node and service.popen is not None:
                with contextlib.suppress(Exception):
                    service.popen.wait(timeout=5)
        return killed

    # ----------------------------------------------------------------- network
    def build_network(self) -> None:
        self.set_phase("building the private network")
        run = netns.run
        Path(netns.NETNS_DIR).mkdir(parents=True, exist_ok=True)
        run(["ip", "link", "set", "lo", "up"])
        run(["ip", "link", "add", plan.BRIDGE, "type", "bridge"])
        run(["ip", "addr", "add", f"{plan.CONTROL_ADDRESS}/24", "dev", plan.BRIDGE])
        run(["ip", "link", "set", plan.BRIDGE, "up"])
        for node in self.nodes.values():
            run(["ip", "netns", "add", node.netns])
            run(
                [
                    "ip",
                    "link",
                    "add",
                    node.veth,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    node.netns,
                ]
            )
            run(["ip", "link", "set", node.veth, "master", plan.BRIDGE])
            run(["ip", "link", "set", node.veth, "up"])
            run(["ip", "link", "set", "lo", "up"], netns=node.netns)
            run(["ip", "addr", "add", f"{node.address}/24", "dev", "eth0"], netns=node.netns)
            run(["ip", "link", "set", "eth0", "up"], netns=node.netns)

    def set_link(self, node: str, up: bool) -> None:
        """Cut or restore a node's only link to the backbone."""
        netns.run(["ip", "link", "set", self.nodes[node].veth, "up" if up else "down"])

    # ----------------------------------------------------------------- services
    def write_store_config(self, region: Region, replica_of: str | None) -> None:
        """redis.conf of a region; `replica_of` is the primary's address (None: primary)."""
        d = self.region_dir(region.name)
        (d / "redis.conf").write_text(
            configs.redis_conf(
                self.address(region.name),
                d / "redis",
                self.password,
                replica_of,
                self.topology.store_settings(region.jurisdiction),
            )
        )

    def write_region_configs(self, region: Region, replica_of: str | None) -> None:
        d = self.region_dir(region.name)
        addr = self.address(region.name)
        for sub in ("redis", "sentinel", "models", "prometheus", "logs"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        self.write_store_config(region, replica_of)
        sentinel_conf = d / "sentinel.conf"
        if not sentinel_conf.exists():  # Sentinel rewrites its own file: keep its state
            sentinel_conf.write_text(
                configs.sentinel_conf(self.topology, addr, d / "sentinel", self.password)
            )
        (d / "service.json").write_text(
            configs.service_json(
                region,
                self.topology,
                self.password,
                d / "models" / modelmod.MODEL_FILE,
                self.registry,
                self.verify_model_digest,
                self.verify_features,
            )
        )
        (d / "prometheus.yml").write_text(configs.regional_prometheus(region, addr))

    def region_services(self, region: Region) -> list[Service]:
        """A region's programs, in start order (the store first)."""
        d = self.region_dir(region.name)
        addr = self.address(region.name)
        sentinel_conf = d / "sentinel.conf"
        logs = d / "logs"
        return [
            Service(
                "redis", region.name, ["redis-server", str(d / "redis.conf")], logs / "redis.log"
            ),
            Service(
                "sentinel",
                region.name,
                ["redis-sentinel", str(sentinel_conf)],
                logs / "sentinel.log",
            ),
            Service(
                "exporter",
                region.name,
                [
                    "prometheus-redis-exporter",
                    "-redis.addr",
                    f"redis://127.0.0.1:{plan.REDIS_PORT}",
                    "-web.listen-address",
                    f"{addr}:{plan.EXPORTER_PORT}",
                ],
                logs / "exporter.log",
                env={"REDIS_PASSWORD": self.password},
            ),
            Service(
                "service",
                region.name,
                [sys.executable, "-m", "infra.local.service", "--config", str(d / "service.json")],
                logs / "service.log",
            ),
            Service(
                "prometheus", region.name, self._prometheus_argv(d, addr), logs / "prometheus.log"
            ),
        ]

    def _prometheus_argv(self, d: Path, addr: str) -> list[str]:
        return [
            "prometheus",
            f"--config.file={d / 'prometheus.yml'}",
            f"--storage.tsdb.path={d / 'prometheus'}",
            f"--web.listen-address={addr}:{plan.PROMETHEUS_PORT}",
            "--storage.tsdb.retention.time=1d",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def _edge_services(self) -> list[Service]:
        d = self.region_dir(plan.EDGE)
        sd = d / "loadgen-targets"
        for sub in ("prometheus", "logs", "loadgen-targets"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "haproxy.cfg").write_text(configs.haproxy_cfg(self.topology))
        (d / "prometheus.yml").write_text(configs.global_prometheus(self.topology, sd))
        return [
            Service(
                "haproxy",
                plan.EDGE,
                ["haproxy", "-db", "-f", str(d / "haproxy.cfg")],
                d / "logs" / "haproxy.log",
            ),
            Service(
                "prometheus",
                plan.EDGE,
                self._prometheus_argv(d, plan.EDGE_ADDRESS),
                d / "logs" / "prometheus.log",
            ),
        ]

    def primary_of(self, jurisdiction: str) -> str | None:
        """Current primary address of a jurisdiction, by the sentinels' majority."""
        sentinels = [self.address(r.name) for r in self.topology.regions]
        return stores.current_primary(sentinels, self.password, jurisdiction)

    def replica_source(self, region: Region) -> str | None:
        """Whom a (re)starting store should replicate from: the current primary.

        A returning old primary comes back as a replica of whoever the sentinels
        promoted, as an operator restarting it with Sentinel's rewritten view would.
        """
        primary = self.primary_of(region.jurisdiction)
        if primary is None:
            raise FaultError(f"no sentinel names a primary for {region.jurisdiction!r}")
        return None if primary == self.address(region.name) else primary

    def start_region(self, region: Region) -> None:
        """(Re)start every program of a region; its store replicates from the primary."""
        self.write_region_configs(region, self.replica_source(region))
        for service in self.region_services(region):
            self.spawn(service)

    def restart_service(self, node: str, name: str) -> None:
        """Stop one service (SIGTERM, then SIGKILL after 3 s) and start it again."""
        service = self.services[f"{node}/{name}"]
        if service.running():
            service.popen.terminate()
            try:
                service.popen.wait(timeout=3)
            except Exception:
                service.popen.kill()
                service.popen.wait(timeout=3)
        self.spawn(service)

    def _wait(self, what: str, predicate: Any, timeout: float = 30.0) -> None:
        if not stores.wait_until(predicate, timeout):
            raise GamedayError(f"timed out after {timeout:.0f} s waiting for {what}")

    def http_ok(self, url: str, timeout: float = 0.5) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def bring_up(self) -> None:
        self.set_phase("training and publishing the model")
        manifest = modelmod.publish(self.registry, self.topology.jurisdictions, self.entities)
        for region in self.topology.regions:
            modelmod.replicate(self.registry, self.region_dir(region.name) / "models")
        self.set_phase(f"model {manifest.model_digest[:12]} replicated; starting stores")
        for region in self.topology.regions:
            primary = self.topology.initial_primary(region.jurisdiction)
            self.write_region_configs(
                region, None if region.role == "primary" else self.address(primary.name)
            )
            self.spawn(self.region_services(region)[0])
        for region in self.topology.regions:
            addr = self.address(region.name)
            self._wait(
                f"redis in {region.name}", lambda a=addr: stores.role(a, self.password) != "down"
            )
        self.set_phase(f"loading {self.entities} entities per jurisdiction")
        for jurisdiction in self.topology.jurisdictions:
            address = self.address(self.topology.initial_primary(jurisdiction).name)
            stores.load_entities(address, self.password, jurisdiction, self.entities)
        # Replicas first: a sentinel learns them from the primary's INFO, which it reads
        # as it starts and then only every 10 s.
        self.set_phase("waiting for replicas to sync")
        for region in self.topology.regions:
            if region.role == "replica":
                addr = self.address(region.name)
                self._wait(
                    f"replica {region.name} to sync",
                    lambda a=addr: (
                        stores.replication(a, self.password).get("master_link_status") == "up"
                    ),
                )
        self.set_phase("starting sentinels, services, exporters, Prometheus, HAProxy")
        for region in self.topology.regions:
            for service in self.region_services(region)[1:]:
                self.spawn(service)
        for service in self._edge_services():
            self.spawn(service)
        self.set_phase("waiting for every service to be ready")
        for region in self.topology.regions:
            url = f"http://{self.address(region.name)}:{plan.SERVICE_PORT}/healthz"
            self._wait(f"the service in {region.name}", lambda u=url: self.http_ok(u), 60)
        self.set_phase("waiting for sentinels to meet")
        peers = len(self.topology.regions) - 1
        replicas = {
            j: len(self.topology.in_jurisdiction(j)) - 1 for j in self.topology.jurisdictions
        }
        for region in self.topology.regions:
            addr = self.address(region.name)
            self._wait(
                f"sentinel in {region.name}",
                lambda a=addr: stores.sentinel_ready(a, self.password, replicas, peers),
                30,
            )
        self.set_phase("waiting for the router and Prometheus")
        self._wait("HAProxy to see every region up", self.router_all_up, 30)
        for node in self.nodes.values():
            url = f"http://{node.address}:{plan.PROMETHEUS_PORT}/-/ready"
            self._wait(f"Prometheus in {node.name}", lambda u=url: self.http_ok(u), 30)

    def router_servers(self) -> dict[str, str]:
        """HAProxy's view: region -> UP/DOWN/…, from the stats CSV."""
        url = f"http://{plan.EDGE_ADDRESS}:{plan.HAPROXY_STATS_PORT}/stats;csv"
        try:
            with urllib.request.urlopen(url, timeout=0.5) as response:
                text = response.read().decode()
        except (urllib.error.URLError, OSError):
            return {}
        states = {}
        for line in text.splitlines():
            cells = line.split(",")
            if (
                len(cells) > 17
                and cells[0].startswith("jur_")
                and cells[1] not in ("FRONTEND", "BACKEND")
            ):
                states[cells[1]] = cells[17]
        return states

    def router_all_up(self) -> bool:
        states = self.router_servers()
        return bool(states) and all(
            states.get(r.name, "").startswith("UP") for r in self.topology.regions
        )

    # ----------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """Everything `testbed status` shows; cheap enough to poll."""
        regions = []
        router = self.router_servers() if self.ready else {}
        for region in self.topology.regions:
            addr = self.address(region.name)
            procs = {
                s.name: (
                    "running"
                    if s.running()
                    else f"exited({s.popen.returncode})"
                    if s.popen
                    else "not started"
                )
                for s in self.service_list()
                if s.node == region.name
            }
            role = stores.role(addr, self.password) if self.ready else "starting"
            regions.append(
                {
                    "name": region.name,
                    "provider": region.provider,
                    "jurisdiction": region.jurisdiction,
                    "address": addr,
                    "role": {"master": "primary", "slave": "replica"}.get(role, role),
                    "router": router.get(region.name, "unknown"),
                    "processes": procs,
                    # As the store reports them: proves a promoted or restored store has
                    # them. A store that did not answer ROLE is not asked again (timeout).
                    "store_settings": (
                        stores.store_settings(addr, self.password)
                        if self.ready and role != "down"
                        else {}
                    ),
                }
            )
        primaries = {}
        if self.ready:
            for jurisdiction in self.topology.jurisdictions:
                primary = self.primary_of(jurisdiction)
                primaries[jurisdiction] = next(
                    (n.name for n in self.nodes.values() if n.address == primary), None
                )
        edge = {
            s.name: ("running" if s.running() else "exited")
            for s in self.service_list()
            if s.node == plan.EDGE
        }
        return {
            "phase": self.phase,
            "ready": self.ready,
            "error": self.error,
            "started_at": self.started_at,
            "regions": regions,
            "primaries": primaries,
            "data_groups": {
                group: settings.as_redis() for group, settings in self.topology.data_groups
            },
            "edge": edge,
            "faults": self.active_faults(),
        }

    def active_faults(self) -> list[dict[str, Any]]:
        from infra.local import faults

        return faults.active(self)

    # ----------------------------------------------------------------- control
    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        from infra.local import faults

        op = request.get("op")
        if op == "status":
            return self.status()
        if op == "secrets":
            return {"redis_password": self.password}
        if op == "shutdown":
            self.shutdown.set()
            return {"ok": True}
        if op in faults.OPERATIONS:
            self._refuse_without_owner(op)
            if not self.ready:
                raise FaultError(f"the world is not ready (phase: {self.phase})")
            with self.lock:
                # Checked again: the owner may have gone while this waited for the lock.
                self._refuse_without_owner(op)
                return faults.OPERATIONS[op](self, **request.get("args", {}))
        raise FaultError(f"unknown operation {op!r}")

    def _refuse_without_owner(self, op: str) -> None:
        if self.owner_gone.is_set():
            raise FaultError(
                f"{op} refused: the world's owner (pid {self.owner_pid}) is gone and the "
                "world is being removed"
            )

    # ----------------------------------------------------------------- lifeline
    def watch_owner(self, fd: int) -> None:
        """Block on the lifeline; at its EOF (the owner is gone) remove the world."""
        with contextlib.suppress(OSError):
            while os.read(fd, 4096):
                pass
        self.abandon()

    def abandon(self) -> None:
        """The owner is gone: refuse faults, stop the drill first, remove the world.

        Never waits for the control lock: a fault in progress dies with the world, and
        the kernel takes every link, rule and process of it, which is the complete
        revert of every active fault.
        """
        self.owner_gone.set()
        try:
            self.set_phase(f"the owner (pid {self.owner_pid}) is gone: removing the world")
            intruders = self.kill_outsiders()
            if intruders:
                print(f"  killed {len(intruders)} process(es) entered from outside: {intruders}")
            for record in faults_active(self):
                print(f"  active fault ends with the world: {record['fault']} {record['target']}")
            for name in ("world.json", "control.sock"):
                with contextlib.suppress(OSError):
                    (self.world_dir / name).unlink()
            self.set_phase("gone")
        except BaseException:
            # Nothing here may keep the world alive: report and go all the same.
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            # Process 1 exits with us, and the kernel kills whatever is left of the world.
            os._exit(0)

    def kill_outsiders(self) -> list[int]:
        """SIGKILL every process of the world that is not this supervisor's or process 1.

        They entered through nsenter (a drill, its load generator, an operator's
        `testbed exec`): the ones that could still ask for a fault.
        """
        mine = {os.getpid(), 1}
        killed: list[int] = []
        for _ in range(3):  # a killed parent's children are reparented, not killed
            table = _process_table()
            ours = set(mine)
            changed = True
            while changed:
                grown = {pid for pid, parent in table.items() if parent in ours} - ours
                ours |= grown
                changed = bool(grown)
            targets = [pid for pid in table if pid not in ours]
            if not targets:
                break
            for pid in targets:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            killed += targets
        return killed

    def serve_control(self) -> socketserver.ThreadingUnixStreamServer:
        supervisor = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline()
                try:
                    result = {"ok": True, "result": supervisor.handle(json.loads(line))}
                except GamedayError as exc:
                    result = {"ok": False, "error": str(exc), "kind": type(exc).__name__}
                except Exception as exc:
                    traceback.print_exc()
                    result = {
                        "ok": False,
                        "error": f"{type(exc).__name__}: {exc}",
                        "kind": "internal",
                    }
                self.wfile.write((json.dumps(result) + "\n").encode())

        path = self.world_dir / "control.sock"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True, name="control").start()
        return server

    # ----------------------------------------------------------------- forwarding
    def forward(self, fd: int, address: str, port: int) -> None:
        """Accept on a host socket (bound on 127.0.0.1 before the world existed) and
        relay each connection to `address:port` inside the world."""
        listener = socket.socket(fileno=fd)

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

        def serve(conn: socket.socket) -> None:
            try:
                upstream = socket.create_connection((address, port), timeout=2)
            except OSError:
                conn.close()
                return
            upstream.settimeout(None)
            back = threading.Thread(target=pipe, args=(upstream, conn), daemon=True)
            back.start()
            pipe(conn, upstream)
            back.join()
            conn.close()
            upstream.close()

        while not self.shutdown.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    # ----------------------------------------------------------------- lifecycle
    def stop_all(self) -> None:
        for service in self.service_list():
            if service.running():
                with contextlib.suppress(ProcessLookupError):
                    service.popen.terminate()
        deadline = time.monotonic() + 1.5
        for service in self.service_list():
            if service.popen is None:
                continue
            try:
                service.popen.wait(timeout=max(0.05, deadline - time.monotonic()))
            except Exception:
                with contextlib.suppress(ProcessLookupError):
                    service.popen.kill()

    def run(self, lifeline: int | None = None) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.shutdown.set())
        if lifeline is not None:
            # First of all: an owner killed while the world starts removes it too.
            threading.Thread(
                target=self.watch_owner, args=(lifeline,), daemon=True, name="lifeline"
            ).start()
        self.world_dir.mkdir(parents=True, exist_ok=True)
        server = self.serve_control()
        try:
            self.build_network()
            for fd, address, port in self.forwards:
                threading.Thread(
                    target=self.forward,
                    args=(fd, address, port),
                    daemon=True,
                    name=f"forward-{port}",
                ).start()
            self.bring_up()
            self.ready = True
            self.set_phase("ready")
        except Exception as exc:
            self.error = str(exc)
            self.set_phase(f"failed: {exc}")
            traceback.print_exc()
            # Stay up briefly so `testbed up` can read the error, then go away.
            self.shutdown.wait(5)
            self.stop_all()
            server.server_close()
            return 1
        while not self.shutdown.wait(0.5):
            pass
        self.set_phase("stopping")
        self.stop_all()
        server.server_close()
        return 0


def faults_active(sup: Supervisor) -> list[dict[str, Any]]:
    """The active faults, read without the control lock (a fault may be in progress)."""
    from infra.local import faults

    for _ in range(3):
        with contextlib.suppress(RuntimeError):  # the table changed while being read
            return faults.active(sup)
    return []


def _process_table() -> dict[int, int]:
    """pid -> parent pid of every process this /proc shows (the world's own)."""
    table: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z":
            table[int(entry)] = int(fields[1])
    return table


def _reaper_init(child: int) -> int:
    """Process 1 of the world: reap every orphan, exit when the supervisor exits."""

    def forward_signal(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward_signal)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == child:
            return os.waitstatus_to_exitcode(status)


def _mount_private_run() -> None:
    """Give the world its own /run/netns, so `ip netns` never touches the host's."""
    try:
        Path(netns.NETNS_DIR).mkdir(parents=True, exist_ok=True)
    except PermissionError:
        # Unprivileged: /run belongs to the host's root; a tmpfs of our own takes its place.
        netns.run(["mount", "-t", "tmpfs", "-o", "mode=755", "gameday-run", "/run"])
        Path(netns.NETNS_DIR).mkdir(parents=True, exist_ok=True)
    netns.run(["mount", "-t", "tmpfs", "-o", "mode=755", "gameday-netns", netns.NETNS_DIR])


def main(argv: list[str] | None = None) -> int:
    """`python -m infra.local.supervisor`: only ever started by `world.up` under unshare."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--world-dir", type=Path, required=True)
    parser.add_argument("--topology", type=Path, required=True)
    parser.add_argument(
        "--forward",
        action="append",
        default=[],
        help="FD:ADDRESS:PORT, a host listening socket to relay",
    )
    parser.add_argument("--entities", type=int, default=ENTITIES_DEFAULT)
    parser.add_argument("--no-verify-model-digest", action="store_true")
    parser.add_argument("--no-verify-features", action="store_true")
    parser.add_argument(
        "--lifeline", type=int, default=None, help="FD whose EOF means the owner is gone"
    )
    parser.add_argument("--owner-pid", type=int, default=None)
    args = parser.parse_args(argv)
    if os.getpid() != 1:
        print("the supervisor must run as process 1 of a new PID namespace", file=sys.stderr)
        return 2
    child = os.fork()
    if child:
        return _reaper_init(child)
    os.setsid()
    _mount_private_run()
    forwards = []
    for spec in args.forward:
        fd, address, port = spec.split(":")
        forwards.append((int(fd), address, int(port)))
    topology = load_topology(args.topology)
    supervisor = Supervisor(
        args.world_dir,
        topology,
        forwards,
        args.entities,
        not args.no_verify_model_digest,
        not args.no_verify_features,
        args.owner_pid,
    )
    code = supervisor.run(args.lifeline)
    sys.stdout.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
