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
from infra.types import WRITE_KEY_PREFIX, write_key
from probes.prometheus import PromClient, lag_estimate
from probes.result import failed, record, seconds
from probes.rundir import Fault, read_faults, read_json, read_topology, region_jurisdictions
from probes.timeline import read_timeline

__all__ = ["lost_writes"]

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
UNKNOWN_RESIDENCY = "unknown"
HOLES_LOOKED_UP = 100_000  # sequence holes looked up per residency; more is an error
SAMPLE_KEYS = 20  # keys quoted per kind of hole; the counts are complete


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


def _attributed_residency(writes: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Each write's residency, a null one taken from its client's other writes.

    A writer keeps one residency for its life (loadgen's WriterUser), so a row whose
    residency was lost still belongs to the jurisdiction its client's other rows name.
    When they name none, or several, it is `UNKNOWN_RESIDENCY`: kept, never dropped.
    Returns (residency, attributed-from-client flag).
    """
    residency = writes["residency"].astype("object").where(writes["residency"].notna())
    named = pd.DataFrame({"client": writes["client"].astype("object"), "res": residency})
    named = named[named["client"].notna() & named["res"].notna()]
    kinds = named.drop_duplicates().groupby("client")["res"]
    single = {c: r.iloc[0] for c, r in kinds if len(r) == 1}
    missing = residency.isna()
    guessed = writes["client"].astype("object").map(single)
    filled = residency.where(~missing, guessed)
    attributed = missing & filled.notna()
    return filled.fillna(UNKNOWN_RESIDENCY).astype(str), attributed


def ledger(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per written key (`key`, `client`, `seq`, `residency`, `acked`, `t_ack`,
    `t_start`, `ack_time_known`, `ambiguous_candidate`, `residency_from_client`).

    `t_ack` is the earliest acknowledgement of the key (null when never acknowledged);
    an acknowledged row without a latency has no known `t_ack`: its `t_start` (the
    earliest it can have been acknowledged) stands in and `ack_time_known` is False.
    An ambiguous candidate was never acknowledged and failed with a connection error
    (status 0) or a 5xx. Writes lacking `client` or `seq` get key null.
    """
    writes = frame.loc[
        frame["kind"] == "write",
        ["t_start", "latency_ms", "ok", "status", "residency", "client", "seq"],
    ]
    keyed = writes["client"].notna() & writes["seq"].notna()
    keys = pd.Series(pd.NA, index=writes.index, dtype="object")
    seq = pd.Series(pd.NA, index=writes.index, dtype="Int64")
    if keyed.any():
        seq.loc[keyed] = writes.loc[keyed, "seq"].astype("int64")
        text = seq.loc[keyed].astype("int64").astype(str)
        keys.loc[keyed] = WRITE_KEY_PREFIX + writes.loc[keyed, "client"].astype(str) + ":" + text
    ok = writes["ok"].astype(bool)
    known = writes["latency_ms"].notna()
    t_ack = (writes["t_start"] + writes["latency_ms"].fillna(0.0) / 1000.0).where(ok)
    status = writes["status"].fillna(0).astype("int64")
    residency, from_client = _attributed_residency(writes)
    out = pd.DataFrame(
        {
            "key": keys,
            "client": writes["client"].astype("object"),
            "seq": seq,
            "residency": residency,
            "acked": ok,
            "t_ack": t_ack,
            "t_start": writes["t_start"].where(ok),
            "ack_time_known": known | ~ok,
            "failed": (~ok) & ((status == 0) | (status >= 500)),
            "residency_from_client": from_client,
        }
    )
    keyed_rows = out[out["key"].notna()]
    # The earliest acknowledgement wins; sort so that `first` picks its row.
    keyed_rows = keyed_rows.sort_values("t_ack", kind="stable", na_position="last")
    grouped = keyed_rows.groupby(["residency", "key"], sort=False)
    book = grouped.agg(
        client=("client", "first"),
        seq=("seq", "first"),
        acked=("acked", "any"),
        t_ack=("t_ack", "first"),
        t_start=("t_start", "first"),
        ack_time_known=("ack_time_known", "first"),
        failed=("failed", "any"),
        residency_from_client=("residency_from_client", "any"),
    ).reset_index()
    book["ambiguous_candidate"] = ~book["acked"] & book["failed"]
    unkeyed = out[out["key"].isna()].assign(ambiguous_candidate=False)
    parts = [p for p in (book, unkeyed) if not p.empty]
    if not parts:
        return book.drop(columns="failed")
    return pd.concat(parts, ignore_index=True).drop(columns="failed")


def sequence_holes(rows: pd.DataFrame, limit: int = HOLES_LOOKED_UP) -> list[str]:
    """Keys of the sequence numbers missing inside each client's recorded range.

    A writer numbers its writes 1, 2, 3 … and never reuses one, so a number between a
    client's first and last recorded one that has no row is a write whose row was lost
    (a recorder batch lost in a crash). Holes before the first or after the last
    recorded number cannot be told from a client that started late or stopped.
    Raises ValueError when there are more than `limit` (a broken `seq`, not a hole).
    """
    keyed = rows[rows["key"].notna()]
    holes: list[str] = []
    for client, seqs in keyed.groupby("client", sort=True)["seq"]:
        have = np.unique(seqs.to_numpy(dtype=np.int64))
        if have.size < 2:
            continue
        missing = int(have[-1] - have[0] + 1) - have.size
        if len(holes) + missing > limit:
            raise ValueError(
                f"client {client!r}: {missing} sequence numbers missing between "
                f"{have[0]} and {have[-1]}: more than {limit} to look up"
            )
        if missing:
            full = np.arange(have[0], have[-1] + 1, dtype=np.int64)
            gone = np.setdiff1d(full, have, assume_unique=True)
            holes.extend(write_key(str(client), n) for n in gone.tolist())
    return holes


def rpo_of(
    rows: pd.DataFrame, present: set[str], fault_at: float | None, holes: Sequence[str] = ()
) -> dict[str, Any]:
    """Lost, lost-after-fault and ambiguous writes and the RPO of one ledger slice.

    `holes` are keys missing from the timeline (see `sequence_holes`); the ones the
    store does not hold either are `unaccounted`: they may be acknowledged writes that
    were lost, so the entry is `no-data` (its figures kept as evidence: they are those
    of the recorded ledger, and a loss they prove stays proven).
    """
    acked = rows[rows["acked"]]
    keys = acked["key"].to_numpy(dtype=object)
    t_ack = acked["t_ack"].to_numpy(dtype=np.float64)
    t_start = acked["t_start"].to_numpy(dtype=np.float64)
    known = acked["ack_time_known"].to_numpy(dtype=bool)
    here = np.fromiter((k in present for k in keys), dtype=bool, count=keys.size)
    lost_t = t_ack[~here]
    lost_keys = keys[~here]
    lost_known = known[~here]
    cand = rows.loc[rows["ambiguous_candidate"], "key"].to_numpy(dtype=object)
    ambiguous = sum(1 for k in cand if k in present)
    unaccounted = [k for k in holes if k not in present]
    fields: dict[str, Any] = {"lost_after_fault_reason": None}
    rpo: float | None = 0.0
    after: int | None = None
    acked_after: int | None = None
    undetermined = 0
    if fault_at is not None:
        # t_ack >= t_start: a write started at or after the fault was acknowledged after
        # it, even when its latency (so its t_ack) is unknown.
        proven_after = np.where(known, t_ack > fault_at, t_start >= fault_at)
        acked_after = int(proven_after.sum())
        after = int(proven_after[~here].sum())
        undetermined = int(np.sum(~lost_known & ~proven_after[~here]))
        if acked_after == 0:
            after = None
            fields["lost_after_fault_reason"] = (
                "no write acknowledged after the fault: nothing to lose after it"
            )
        elif after == 0 and undetermined:
            after = None
            fields["lost_after_fault_reason"] = (
                f"{undetermined} lost writes started before the fault have no latency: "
                "whether they were acknowledged after it is unknown"
            )
    if lost_t.size:
        latest = float(lost_t.max()) if fault_at is None else max(fault_at, float(lost_t.max()))
        rpo = latest - float(lost_t.min())
    order = np.argsort(lost_t, kind="stable")[:LOST_LISTED]
    status, reason = "ok", None
    if unaccounted:
        status = "no-data"
        shown = ", ".join(unaccounted[:3]) + (", …" if len(unaccounted) > 3 else "")
        reason = (
            f"{len(unaccounted)} sequence numbers are missing from both the timeline and "
            f"the store ({shown}): the ledger has a hole, lost writes may be uncounted"
        )
    return record(
        {
            "status": status,
            "reason": reason,
            "rpo_seconds": seconds(rpo),
            "acknowledged": int(keys.size),
            "acknowledged_after_fault": acked_after,
            "present": int(here.sum()),
            "lost": int(lost_t.size),
            "lost_after_fault": after,
            **fields,
            "lost_ack_time_unknown": int(np.sum(~lost_known)),
            "ambiguous": int(ambiguous),
            "failed_writes_checked": int(cand.size),
            "sequence_holes": len(holes),
            "unrecorded_present": len(holes) - len(unaccounted),
            "unaccounted": len(unaccounted),
            "unaccounted_keys": unaccounted[:SAMPLE_KEYS],
            "residency_from_client": int(rows["residency_from_client"].sum()),
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
    residencies: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """RPO per residency of the writes and of `residencies` (those with traffic). No
    store for a residency → "no-data"; no acknowledged write of it → "no-data".

    Writes whose residency is unknown (null, and their client names none) form an
    `unknown` entry with status "error": they are counted, never dropped.
    """
    book = ledger(frame)
    table: list[dict[str, Any]] = []
    for residency in sorted({*book["residency"].unique(), *residencies}):
        rows = book[book["residency"] == residency]
        fault = fault_for(residency, faults, region_jur or {})
        table.append(_rpo_entry(residency, rows, fault, stores, prometheus))
    return table


def _rpo_entry(
    residency: str,
    rows: pd.DataFrame,
    fault: Fault | None,
    stores: Mapping[str, WriteStore] | None,
    prometheus: PromClient | None,
) -> dict[str, Any]:
    head: dict[str, Any] = {"residency": residency, **NULL_RPO}
    head.update(fault.describe() if fault else {"fault_id": None, "fault_at": None})
    n_acked = int(rows["acked"].sum())
    counts = {"acknowledged": n_acked, "writes": len(rows)}
    unkeyed = int((rows["key"].isna() & rows["acked"]).sum())
    if residency == UNKNOWN_RESIDENCY:
        reason = (
            f"{len(rows)} writes ({n_acked} acknowledged) have no residency and their "
            "client's other writes name none (or several): their store is unknown"
        )
        return {**head, **failed("error", reason, **counts)}
    if unkeyed:
        reason = f"{unkeyed} acknowledged writes lack client or seq: they cannot be read back"
        return {**head, **failed("error", reason, **counts)}
    if fault is None:
        return {**head, **failed("no-data", "no fault recorded (events.jsonl)", **counts)}
    if n_acked == 0:
        reason = "no acknowledged write of this residency: nothing to check"
        return {**head, **failed("no-data", reason, **counts)}
    store = (stores or {}).get(residency)
    if store is None:
        return {**head, **failed("no-data", "no store to read the writes back from", **counts)}
    try:
        holes = sequence_holes(rows)
    except ValueError as exc:
        return {**head, **failed("error", f"timeline column 'seq': {exc}", **counts)}
    wanted = rows["key"].dropna().astype(str).tolist() + holes
    try:
        present = store.present(wanted)
    except StoreUnavailable as exc:
        return {**head, **failed("error", str(exc), **counts), "store": store.describe()}
    entry = {
        **head,
        **rpo_of(rows, present, fault.applied_at, holes),
        "writes": len(rows),
        "store": store.describe(),
    }
    entry["replication_lag_estimate"] = lag_estimate(prometheus, fault.applied_at, residency)
    return entry


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
