"""Configuration files of the world's real programs, rendered from the topology.

Each function returns the text of one file; the supervisor writes them under the
world's directory. Timings are chosen so the platform reacts within seconds:
HAProxy checks every 500 ms (2 failures down, 2 successes up), Sentinel declares a
primary down after 1 s, Prometheus scrapes every second.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from infra.local import plan
from infra.types import Region, StoreSettings, Topology

RULES_FILE = Path(__file__).resolve().parent.parent / "prometheus" / "rules.yml"
SENTINEL_DOWN_AFTER_MS = 1000
# A sentinel that lost a leader election (votes split) retries after twice this: short,
# so a split vote costs seconds, not most of a minute.
SENTINEL_FAILOVER_TIMEOUT_MS = 2000
SCRAPE_INTERVAL = "1s"
SCRAPE_TIMEOUT = "800ms"


def redis_conf(
    address: str,
    data_dir: Path,
    password: str,
    primary: str | None,
    settings: StoreSettings | None = None,
) -> str:
    """redis.conf for one region; `primary` is the address to replicate from, if any.

    `settings` (the data group's write guard) go into every store of the group, replica
    or not: a replica ignores them, and the one Sentinel promotes enforces them from
    the moment it becomes primary, with no one to re-apply them.
    """
    lines = [
        "bind 0.0.0.0",
        f"port {plan.REDIS_PORT}",
        "protected-mode no",
        "daemonize no",
        f'dir "{data_dir}"',
        f"requirepass {password}",
        f"masterauth {password}",
        # The store is a cache of the registry's features plus the write log; the
        # experiments are about replication, so nothing is persisted to disk.
        'save ""',
        "appendonly no",
        f"replica-announce-ip {address}",
        "repl-diskless-sync yes",
        "repl-diskless-sync-delay 0",
        "repl-timeout 5",
        "loglevel notice",
    ]
    if settings is not None:
        lines += [f"{key} {value}" for key, value in settings.as_redis().items()]
    if primary:
        lines.append(f"replicaof {primary} {plan.REDIS_PORT}")
    return "\n".join(lines) + "\n"


def sentinel_conf(topology: Topology, address: str, data_dir: Path, password: str) -> str:
    """sentinel.conf: every sentinel monitors every jurisdiction's data group.

    Quorum is 2 (or 1 with two regions); a failover still needs a majority of all
    sentinels to elect a leader, which is what makes it safe.
    """
    quorum = 2 if len(topology.regions) >= 3 else 1
    lines = [
        f"port {plan.SENTINEL_PORT}",
        "bind 0.0.0.0",
        "daemonize no",
        f'dir "{data_dir}"',
        f"sentinel announce-ip {address}",
        f"requirepass {password}",
        f"sentinel sentinel-pass {password}",
        "sentinel resolve-hostnames no",
    ]
    addresses = {n.name: n.address for n in plan.nodes(topology)}
    for jurisdiction in topology.jurisdictions:
        primary = topology.initial_primary(jurisdiction)
        lines += [
            f"sentinel monitor {jurisdiction} {addresses[primary.name]} {plan.REDIS_PORT} {quorum}",
            f"sentinel auth-pass {jurisdiction} {password}",
            f"sentinel down-after-milliseconds {jurisdiction} {SENTINEL_DOWN_AFTER_MS}",
            f"sentinel failover-timeout {jurisdiction} {SENTINEL_FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {jurisdiction} 1",
        ]
    return "\n".join(lines) + "\n"


def service_json(
    region: Region,
    topology: Topology,
    password: str,
    model_path: Path,
    registry: Path,
    verify_model_digest: bool,
    verify_features: bool = True,
) -> str:
    """The inference service's config; its own region's sentinel is asked first."""
    addresses = {n.name: n.address for n in plan.nodes(topology)}
    ordered = [region.name] + [r.name for r in topology.regions if r.name != region.name]
    return json.dumps(
        {
            "region": region.name,
            "jurisdiction": region.jurisdiction,
            "host": addresses[region.name],
            "port": plan.SERVICE_PORT,
            "redis_password": password,
            "sentinels": [[addresses[name], plan.SENTINEL_PORT] for name in ordered],
            "model_path": str(model_path),
            "registry": str(registry),
            "verify_model_digest": verify_model_digest,
            "verify_features": verify_features,
        },
        indent=2,
    )


def regional_prometheus(region: Region, address: str) -> str:
    """The regional Prometheus: scrapes the region's service and Redis exporter every second."""
    labels = {
        "region": region.name,
        "jurisdiction": region.jurisdiction,
        "provider": region.provider,
    }
    doc = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_TIMEOUT,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "scrape_configs": [
            {
                "job_name": "service",
                "static_configs": [
                    {"targets": [f"{address}:{plan.SERVICE_PORT}"], "labels": labels}
                ],
            },
            {
                "job_name": "redis",
                "static_configs": [
                    {"targets": [f"{address}:{plan.EXPORTER_PORT}"], "labels": labels}
                ],
            },
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def global_prometheus(topology: Topology, loadgen_sd_dir: Path) -> str:
    """The global Prometheus at the edge: federates the regions, scrapes HAProxy and load."""
    region_nodes = [n for n in plan.nodes(topology) if n.name != plan.EDGE]
    doc = {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_TIMEOUT,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [
            {
                "job_name": "federate",
                "honor_labels": True,
                "metrics_path": "/federate",
                "params": {"match[]": ['{job=~"service|redis"}']},
                "static_configs": [
                    {
                        "targets": [f"{n.address}:{plan.PROMETHEUS_PORT}"],
                        "labels": {"federated_from": n.name},
                    }
                    for n in region_nodes
                ],
            },
            {
                "job_name": "haproxy",
                "static_configs": [{"targets": [f"{plan.EDGE_ADDRESS}:{plan.HAPROXY_STATS_PORT}"]}],
            },
            {
                "job_name": "loadgen",
                "file_sd_configs": [
                    {"files": [str(loadgen_sd_dir / "*.json")], "refresh_interval": "1s"}
                ],
            },
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def haproxy_cfg(topology: Topology) -> str:
    """The global router: one frontend, one backend per jurisdiction, fail closed."""
    addresses = {n.name: n.address for n in plan.nodes(topology)}
    out = [
        "global",
        "    maxconn 4096",
        "",
        "defaults",
        "    mode http",
        # A dead region drops packets: each connection attempt to it costs the connect
        # timeout, and HAProxy retries. Short and few, so a failed request fails within
        # ~1 s: Prometheus counts a response when it completes, the clients when they
        # sent it, and long-hanging failures would push the two views apart.
        "    timeout connect 300ms",
        "    retries 2",
        "    timeout client 30s",
        # Below the drill clients' 2 s time-out: a request caught in flight by a region
        # kill is answered 504 by the router, so the clients record it ending when the
        # router counts it. With a longer one the clients give up first and the router
        # counts the failure seconds after the clients saw the last one.
        "    timeout server 1500ms",
        "    timeout check 400ms",
        "    option http-server-close",
        "",
        "frontend router",
        f"    bind {plan.EDGE_ADDRESS}:{plan.ROUTER_PORT}",
    ]
    for jurisdiction in topology.jurisdictions:
        out.append(f"    acl residency_{jurisdiction} req.hdr(X-Residency) -i {jurisdiction}")
    for jurisdiction in topology.jurisdictions:
        out.append(f"    use_backend jur_{jurisdiction} if residency_{jurisdiction}")
    known = " or ".join(f"residency_{j}" for j in topology.jurisdictions)
    out += [
        "    http-request return status 400 content-type application/json "
        'string \'{"error":"missing or unknown X-Residency header"}\' '
        f"unless {known}",
        "",
    ]
    for jurisdiction in topology.jurisdictions:
        out += [
            f"backend jur_{jurisdiction}",
            "    balance roundrobin",
            "    option httpchk GET /healthz",
            "    http-check expect status 200",
            "    default-server inter 500 fastinter 500 downinter 500 fall 2 rise 2",
        ]
        # Only this jurisdiction's regions: when all are down the backend answers
        # 503 (fail closed) instead of sending the data across the boundary.
        for region in topology.in_jurisdiction(jurisdiction):
            out.append(
                f"    server {region.name} {addresses[region.name]}:{plan.SERVICE_PORT} check"
            )
        out.append("")
    out += [
        "frontend stats",
        f"    bind {plan.EDGE_ADDRESS}:{plan.HAPROXY_STATS_PORT}",
        "    http-request use-service prometheus-exporter if { path /metrics }",
        "    stats enable",
        "    stats uri /stats",
        "    stats refresh 2s",
        "",
    ]
    return "\n".join(out)
