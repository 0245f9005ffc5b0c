"""Recovery point (RPO) from the ledger of acknowledged writes (DESIGN 4).

The ledger is every `write` of the timeline that was acknowledged (`ok`), keyed
`ev:<client>:<seq>` as the service stores it, with `t_ack = t_start + latency`. After
recovery every key is read back from the jurisdiction's *current* primary, found
through the platform (Redis Sentinel for the local platform), never assumed:

- `lost`: acknowledged keys not present; `lost_after_fault`: those acknowledged after
  `t_f` (split brain: the isolated old primary kept acknowledging);
- `ambiguous`: writes that failed from the client's view (connection error, 5xx) but
  are present: fine, counted;
- `RPO = max(t_f, max t_ack(lost)) - min t_ack(lost)` seconds, 0 when nothing is lost.

The read-back goes through a `WriteStore` (anything with `present(keys)`), so the
maths is testable on its own and the Sentinel-backed reader against a real Redis.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.errors import ConfigError
from probes.prometheus import PromClient, lag_estimate
from probes.result import failed, record, seconds
from probes.rundir import Fault, read_faults, read_json, read_topology, region_jurisdictions
from probes.timeline import read_timeline

__all__ = ["lost_writes"]

EVENT_PREFIX = "ev:"
REDIS_PORT = 6379
SENTINEL_PORT = 26379
#: The figures every RPO entry carries; null when the status is not "ok".
NULL_RPO: dict[str, Any] = {
    "rpo_seconds": None,
    "lost": None,
    "lost_after_fault": None,
    "ambiguous": None,
}
LOST_LISTED = 1000  # lost writes listed one by one (for charts); the counts are complete


class StoreUnavailable(Exception):
    """The store (or every sentinel) did not answer; the message says which and why."""


class WriteStore(Protocol):
    """Where acknowledged writes are read back from."""

    def present(self, keys: Sequence[str]) -> set[str]:
        """The subset of `keys` the store holds; raises StoreUnavailable."""
        ...

    def describe(self) -> dict[str, Any]:
        """Where the keys were read from (quoted in the result)."""
        ...


@dataclass
class MemoryWriteStore:
    """A store held in memory (tests, benchmarks, offline re-computation)."""

    keys: set[str] = field(default_factory=set)

    def present(self, keys: Sequence[str]) -> set[str]:
        return self.keys.intersection(keys)

    def describe(self) -> dict[str, Any]:
        return {"store": "memory", "keys": len(self.keys)}


def redis_client(host: str, port: int, password: str | None, timeout: float) -> redis.Redis:
    """A redis-py client with short timeouts and one try (a dead region must not stall)."""
    return redis.Redis(
        host=host,
        port=port,
        password=password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


@dataclass
class RedisWriteStore:
    """One Redis server, which must answer as a primary (`ROLE` = master)."""

    host: str
    port: int = REDIS_PORT
    password: str | None = None
    timeout: float = 0.5
    batch: int = 1000

    def present(self, keys: Sequence[str]) -> set[str]:
        conn = redis_client(self.host, self.port, self.password, self.timeout)
        where = f"redis at {self.host}:{self.port}"
        try:
            raw = conn.execute_command("ROLE")[0]  # type: ignore[no-untyped-call]
            role = raw.decode() if isinstance(raw, bytes) else str(raw)
            if role != "master":
                raise StoreUnavailable(f"{where} answers as {role!r}, not as a primary")
            found: set[str] = set()
            for lo in range(0, len(keys), self.batch):
                chunk = keys[lo : lo + self.batch]
                pipe = conn.pipeline(transaction=False)
                for key in chunk:
                    pipe.exists(key)
                found.update(k for k, hit in zip(chunk, pipe.execute(), strict=True) if hit)
            return found
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(f"{where}: {exc}") from exc
        finally:
            conn.close()

    def describe(self) -> dict[str, Any]:
        return {"store": "redis", "primary": f"{self.host}:{self.port}"}


@dataclass
class SentinelWriteStore:
    """The current primary of `group`, as the majority of answering sentinels names it.

    During a partition the isolated side's sentinel may still name the old primary:
    the majority is what the platform converges on. Each sentinel is asked once with
    a short timeout.
    """

    sentinels: Sequence[tuple[str, int]]
    group: str
    password: str | None = None
    timeout: float = 0.5
    batch: int = 1000
    views: dict[str, str | None] = field(default_factory=dict)
    primary: tuple[str, int] | None = None

    def discover(self) -> tuple[str, int]:
        """Ask every sentinel; the address most of them name; raises StoreUnavailable."""
        self.views = {}
        for host, port in self.sentinels:
            conn = redis_client(host, port, self.password, self.timeout)
            try:
                answer = conn.execute_command(  # type: ignore[no-untyped-call]
                    "SENTINEL", "get-master-addr-by-name", self.group
                )
                if answer:
                    addr = [a.decode() if isinstance(a, bytes) else str(a) for a in answer]
                    self.views[f"{host}:{port}"] = f"{addr[0]}:{addr[1]}"
                else:
                    self.views[f"{host}:{port}"] = None
            except (redis.RedisError, OSError):
                self.views[f"{host}:{port}"] = None
            finally:
                conn.close()
        votes = Counter(v for v in self.views.values() if v)
        if not votes:
            raise StoreUnavailable(
                f"no sentinel named a primary for {self.group!r} "
                f"(asked {', '.join(self.views) or 'none'})"
            )
        host, port_text = votes.most_common(1)[0][0].rsplit(":", 1)
        self.primary = (host, int(port_text))
        return self.primary

    def present(self, keys: Sequence[str]) -> set[str]:
        host, port = self.discover()
        store = RedisWriteStore(host, port, self.password, self.timeout, self.batch)
        return store.present(keys)

    def describe(self) -> dict[str, Any]:
        primary = f"{self.primary[0]}:{self.primary[1]}" if self.primary else None
        return {
            "store": "redis via sentinel",
            "group": self.group,
            "primary": primary,
            "sentinel_views": dict(self.views),
        }


def stores_from_world(
    world: Mapping[str, Any], jurisdictions: Iterable[str], timeout: float = 0.5
) -> dict[str, WriteStore]:
    """Sentinel-backed stores of a local platform's `world.json` (every region's sentinel).

    The addresses are the world's own: reachable from inside it (`gameday testbed
    exec`); from elsewhere the read-back fails fast and says so.
    """
    addresses = world.get("addresses")
    if not isinstance(addresses, dict):
        raise ValueError("world.json has no 'addresses' mapping")
    port = int(world.get("sentinel_port", SENTINEL_PORT))
    sentinels = [(str(a), port) for name, a in sorted(addresses.items()) if name != "edge"]
    password = world.get("redis_password")
    pw = str(password) if password else None
    return {j: SentinelWriteStore(sentinels, j, pw, timeout) for j in jurisdictions}


def ledger(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per written key: `key`, `residency`, `acked`, `t_ack`, `ambiguous_candidate`.

    `t_ack` is the earliest acknowledgement of the key (null when never acknowledged);
    an ambiguous candidate was never acknowledged and failed with a connection error
    (status 0) or a 5xx. Writes lacking `client` or `seq` get key null.
    """
    writes = frame.loc[
        frame["kind"] == "write",
        ["t_start", "latency_ms", "ok", "status", "residency", "client", "seq"],
    ]
    keyed = writes["client"].notna() & writes["seq"].notna()
    keys = pd.Series(pd.NA, index=writes.index, dtype="object")
    if keyed.any():
        seq = writes.loc[keyed, "seq"].astype("int64").astype(str)
        keys.loc[keyed] = EVENT_PREFIX + writes.loc[keyed, "client"].astype(str) + ":" + seq
    t_ack = writes["t_start"] + writes["latency_ms"] / 1000.0
    status = writes["status"].fillna(0).astype("int64")
    out = pd.DataFrame(
        {
            "key": keys,
            "residency": writes["residency"].astype(str),
            "acked": writes["ok"].astype(bool),
            "t_ack": t_ack.where(writes["ok"]),
            "failed_5xx_or_conn": (~writes["ok"]) & ((status == 0) | (status >= 500)),
        }
    )
    grouped = out[out["key"].notna()].groupby(["residency", "key"], sort=False)
    keyed_rows = grouped.agg(
        acked=("acked", "any"), t_ack=("t_ack", "min"), failed=("failed_5xx_or_conn", "any")
    ).reset_index()
    keyed_rows["ambiguous_candidate"] = ~keyed_rows["acked"] & keyed_rows["failed"]
    unkeyed = out[out["key"].isna()]
    extra = pd.DataFrame(
        {
            "residency": unkeyed["residency"],
            "key": unkeyed["key"],
            "acked": unkeyed["acked"],
            "t_ack": unkeyed["t_ack"],
            "failed": unkeyed["failed_5xx_or_conn"],
            "ambiguous_candidate": False,
        }
    )
    parts = [p for p in (keyed_rows, extra) if not p.empty]
    if not parts:
        return keyed_rows.drop(columns="failed")
    return pd.concat(parts, ignore_index=True).drop(columns="failed")


def rpo_of(rows: pd.DataFrame, present: set[str], fault_at: float | None) -> dict[str, Any]:
    """Lost, lost-after-fault and ambiguous writes and the RPO of one ledger slice."""
    acked = rows[rows["acked"]]
    keys = acked["key"].to_numpy(dtype=object)
    t_ack = acked["t_ack"].to_numpy(dtype=np.float64)
    here = np.fromiter((k in present for k in keys), dtype=bool, count=keys.size)
    lost_t = t_ack[~here]
    lost_keys = keys[~here]
    cand = rows.loc[rows["ambiguous_candidate"], "key"].to_numpy(dtype=object)
    ambiguous = sum(1 for k in cand if k in present)
    rpo: float | None = 0.0
    after: int | None = None
    if fault_at is not None:
        after = int(np.sum(lost_t > fault_at))
    if lost_t.size:
        latest = float(lost_t.max()) if fault_at is None else max(fault_at, float(lost_t.max()))
        rpo = latest - float(lost_t.min())
    order = np.argsort(lost_t, kind="stable")[:LOST_LISTED]
    return record(
        {
            "status": "ok",
            "reason": None,
            "rpo_seconds": seconds(rpo),
            "acknowledged": int(keys.size),
            "present": int(here.sum()),
            "lost": int(lost_t.size),
            "lost_after_fault": after,
            "ambiguous": int(ambiguous),
            "failed_writes_checked": int(cand.size),
            "first_lost_ack_at": seconds(lost_t.min()) if lost_t.size else None,
            "last_lost_ack_at": seconds(lost_t.max()) if lost_t.size else None,
            "lost_writes": [{"key": str(lost_keys[i]), "t_ack": seconds(lost_t[i])} for i in order],
            "lost_writes_truncated": bool(lost_t.size > LOST_LISTED),
        }
    )


def fault_for(jurisdiction: str, faults: list[Fault], region_jur: dict[str, str]) -> Fault | None:
    """The first fault touching `jurisdiction`, else the first fault; None without faults."""
    for fault in faults:
        if jurisdiction in fault.jurisdictions(region_jur):
            return fault
    return faults[0] if faults else None


def rpo_table(
    frame: pd.DataFrame,
    faults: list[Fault],
    stores: Mapping[str, WriteStore] | None,
    region_jur: dict[str, str] | None = None,
    prometheus: PromClient | None = None,
) -> list[dict[str, Any]]:
    """RPO per residency of the writes. No store for a residency → "no-data"."""
    book = ledger(frame)
    table: list[dict[str, Any]] = []
    for residency in sorted(book["residency"].unique()):
        rows = book[book["residency"] == residency]
        fault = fault_for(residency, faults, region_jur or {})
        head: dict[str, Any] = {"residency": residency, **NULL_RPO}
        head.update(fault.describe() if fault else {"fault_id": None, "fault_at": None})
        n_acked = int(rows["acked"].sum())
        counts = {"acknowledged": n_acked, "writes": len(rows)}
        unkeyed = int((rows["key"].isna() & rows["acked"]).sum())
        if unkeyed:
            table.append(
                {
                    **head,
                    **failed(
                        "error",
                        f"{unkeyed} acknowledged writes lack client or seq: "
                        "they cannot be read back",
                        **counts,
                    ),
                }
            )
            continue
        if fault is None:
            table.append(
                {**head, **failed("no-data", "no fault recorded (events.jsonl)", **counts)}
            )
            continue
        store = (stores or {}).get(residency)
        if store is None:
            table.append(
                {**head, **failed("no-data", "no store to read the writes back from", **counts)}
            )
            continue
        wanted = rows["key"].dropna().astype(str).tolist()
        try:
            present = store.present(wanted)
        except StoreUnavailable as exc:
            table.append({**head, **failed("error", str(exc), **counts), "store": store.describe()})
            continue
        entry = {**head, **rpo_of(rows, present, fault.applied_at), "store": store.describe()}
        if prometheus is not None:
            entry["replication_lag_estimate"] = lag_estimate(
                prometheus, fault.applied_at, residency
            )
        table.append(entry)
    return table


def lost_writes(
    timeline_path: str,
    world_path: str,
    residency: str,
    events_path: str = "",
    fault_at: float | None = None,
    topology_path: str = "",
    timeout_seconds: float = 0.5,
) -> dict[str, Any]:
    """Acknowledged writes lost by a jurisdiction, and its RPO in seconds.

    Reads the acknowledged writes of `residency` (us, eu) from the timeline and looks
    every key up on the jurisdiction's *current* primary, found through the Sentinels
    listed in the local platform's `world_path` (run inside the world: `gameday
    testbed exec`). The fault time is `fault_at` or the first fault of `events_path`
    touching the jurisdiction. Returns `lost`, `lost_after_fault` (split brain),
    `ambiguous` (failed for the client but stored), `acknowledged` and `rpo_seconds`
    (0 when nothing is lost). `status` "error" when no primary answers: a store that
    cannot be read is never reported as "nothing lost".
    """
    try:
        frame = read_timeline(Path(timeline_path), columns=("client", "seq"))
        world = read_json(Path(world_path))
        region_jur: dict[str, str] = {}
        topo = topology_path or str(world.get("topology") or "")
        if topo:
            region_jur = region_jurisdictions(read_topology(Path(topo)))
        if fault_at is not None:
            faults = [Fault("", "", "", float(fault_at))]
        else:
            faults = read_faults(Path(events_path)) if events_path else []
        stores = stores_from_world(world, [residency], timeout_seconds)
    except (ConfigError, ValueError) as exc:
        return failed("error", str(exc), residency=residency)
    frame = frame[frame["residency"].astype(str) == residency]
    rows = rpo_table(frame, faults, stores, region_jur)
    if not rows:
        return failed("no-data", "no writes of this residency in the timeline", residency=residency)
    return rows[0]
