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
from probes.timeline import Timeline, read_timeline

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


def _attributed_residency(
    writes: pd.DataFrame, single: Mapping[str, str] | None = None
) -> tuple[pd.Series, pd.Series]:
    """Each write's residency, a null one taken from its client's other writes.

    A writer keeps one residency for its life (loadgen's WriterUser), so a row whose
    residency was lost still belongs to the jurisdiction its client's other rows name.
    When they name none, or several, it is `UNKNOWN_RESIDENCY`: kept, never dropped.
    `single` (client → its one residency) stands for the other writes when `writes`
    is a slice of them. Returns (residency, attributed-from-client flag).
    """
    residency = writes["residency"].astype("object").where(writes["residency"].notna())
    attribution: Mapping[Any, str] | None = single
    if attribution is None:
        named = pd.DataFrame({"client": writes["client"].astype("object"), "res": residency})
        named = named[named["client"].notna() & named["res"].notna()]
        kinds = named.drop_duplicates().groupby("client")["res"]
        attribution = {c: r.iloc[0] for c, r in kinds if len(r) == 1}
    missing = residency.isna()
    guessed = writes["client"].astype("object").map(attribution)
    filled = residency.where(~missing, guessed)
    attributed = missing & filled.notna()
    return filled.fillna(UNKNOWN_RESIDENCY).astype(str), attributed


def ledger(frame: pd.DataFrame, single: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per written key (`key`, `client`, `seq`, `residency`, `acked`, `t_ack`,
    `t_start`, `ack_time_known`, `ambiguous_candidate`, `residency_from_client`).

    `t_ack` is the earliest acknowledgement of the key (null when never acknowledged);
    an acknowledged row without a latency has no known `t_ack`: its `t_start` (the
    earliest it can have been acknowledged) stands in and `ack_time_known` is False.
    An ambiguous candidate was never acknowledged and failed with a connection error
    (status 0) or a 5xx. Writes lacking `client` or `seq` get key null.
    """
    columns = ["t_start", "latency_ms", "ok", "status", "residency", "client", "seq"]
    ranked = "row_n" in frame.columns
    writes = frame.loc[frame["kind"] == "write", columns + (["row_n"] if ranked else [])]
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
    residency, from_client = _attributed_residency(writes, single)
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
    if ranked:
        out["row_n"] = writes["row_n"].astype("int64")
    keyed_rows = out[out["key"].notna()]
    # The earliest acknowledgement wins; sort so that `first` picks its row.
    keyed_rows = keyed_rows.sort_values("t_ack", kind="stable", na_position="last")
    grouped = keyed_rows.groupby(["residency", "key"], sort=False)
    rank = {"row_n": ("row_n", "first")} if ranked else {}
    book = grouped.agg(
        **rank,
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
    tally = RpoTally(fault_at)
    tally.add(rows, present, holes)
    return tally.entry()


@dataclass
class RpoTally:
    """The figures of `rpo_of` summed over slices of one residency's ledger.

    Slices must not share a key (split the ledger by client) and must come in client
    order (the unaccounted keys are quoted in that order). What grows with the writes
    is bounded: the lost-write list keeps its first `LOST_LISTED` by (t_ack, then the
    position of the acknowledging row: `t_start`, then `row_n` when the slices carry it).
    """

    fault_at: float | None
    acknowledged: int = 0
    present: int = 0
    lost: int = 0
    lost_unknown: int = 0
    acked_after: int = 0
    lost_after: int = 0
    undetermined: int = 0
    ambiguous: int = 0
    checked: int = 0
    holes: int = 0
    unaccounted: int = 0
    unaccounted_keys: list[str] = field(default_factory=list)
    from_client: int = 0
    first_lost: float | None = None
    last_lost: float | None = None
    listed: list[tuple[float, float, int, str]] = field(default_factory=list)

    def add(self, rows: pd.DataFrame, present: set[str], holes: Sequence[str] = ()) -> None:
        """Count one slice (`ledger` rows, the keys the store holds, its sequence holes)."""
        acked = rows[rows["acked"]]
        keys = acked["key"].to_numpy(dtype=object)
        t_ack = acked["t_ack"].to_numpy(dtype=np.float64)
        t_start = acked["t_start"].to_numpy(dtype=np.float64)
        known = acked["ack_time_known"].to_numpy(dtype=bool)
        here = np.fromiter((k in present for k in keys), dtype=bool, count=keys.size)
        lost_t = t_ack[~here]
        self.acknowledged += int(keys.size)
        self.present += int(here.sum())
        self.lost += int(lost_t.size)
        self.lost_unknown += int(np.sum(~known[~here]))
        cand = rows.loc[rows["ambiguous_candidate"], "key"].to_numpy(dtype=object)
        self.ambiguous += sum(1 for k in cand if k in present)
        self.checked += int(cand.size)
        unaccounted = [k for k in holes if k not in present]
        self.holes += len(holes)
        self.unaccounted += len(unaccounted)
        room = SAMPLE_KEYS - len(self.unaccounted_keys)
        self.unaccounted_keys.extend(unaccounted[: max(room, 0)])
        self.from_client += int(rows["residency_from_client"].sum())
        if self.fault_at is not None:
            # t_ack >= t_start: a write started at or after the fault was acknowledged
            # after it, even when its latency (so its t_ack) is unknown.
            proven_after = np.where(known, t_ack > self.fault_at, t_start >= self.fault_at)
            self.acked_after += int(proven_after.sum())
            self.lost_after += int(proven_after[~here].sum())
            self.undetermined += int(np.sum(~known[~here] & ~proven_after[~here]))
        if not lost_t.size:
            return
        low, high = float(lost_t.min()), float(lost_t.max())
        self.first_lost = low if self.first_lost is None else min(self.first_lost, low)
        self.last_lost = high if self.last_lost is None else max(self.last_lost, high)
        # Without `row_n` the slice's own order breaks ties (a single slice: exact).
        if "row_n" in acked.columns:
            rank = acked["row_n"].to_numpy(dtype=np.int64)[~here]
            starts = t_start[~here]
        else:
            rank = np.arange(lost_t.size, dtype=np.int64)
            starts = np.zeros(lost_t.size)
        order = np.lexsort((rank, starts, lost_t))[:LOST_LISTED]
        lost_keys = keys[~here]
        self.listed.extend(
            (float(lost_t[i]), float(starts[i]), int(rank[i]), str(lost_keys[i])) for i in order
        )
        self.listed.sort()
        del self.listed[LOST_LISTED:]

    def entry(self) -> dict[str, Any]:
        """The RPO entry's figures, as `rpo_of` gives them on the whole ledger."""
        fields: dict[str, Any] = {"lost_after_fault_reason": None}
        after: int | None = None
        acked_after: int | None = None
        if self.fault_at is not None:
            acked_after, after = self.acked_after, self.lost_after
            if acked_after == 0:
                after = None
                fields["lost_after_fault_reason"] = (
                    "no write acknowledged after the fault: nothing to lose after it"
                )
            elif after == 0 and self.undetermined:
                after = None
                fields["lost_after_fault_reason"] = (
                    f"{self.undetermined} lost writes started before the fault have no "
                    "latency: whether they were acknowledged after it is unknown"
                )
        rpo: float | None = 0.0
        if self.first_lost is not None and self.last_lost is not None:
            latest = self.last_lost if self.fault_at is None else max(self.fault_at, self.last_lost)
            rpo = latest - self.first_lost
        status, reason = "ok", None
        if self.unaccounted:
            status = "no-data"
            shown = ", ".join(self.unaccounted_keys[:3]) + (", …" if self.unaccounted > 3 else "")
            reason = (
                f"{self.unaccounted} sequence numbers are missing from both the timeline "
                f"and the store ({shown}): the ledger has a hole, lost writes may be uncounted"
            )
        return record(
            {
                "status": status,
                "reason": reason,
                "rpo_seconds": seconds(rpo),
                "acknowledged": self.acknowledged,
                "acknowledged_after_fault": acked_after,
                "present": self.present,
                "lost": self.lost,
                "lost_after_fault": after,
                **fields,
                "lost_ack_time_unknown": self.lost_unknown,
                "ambiguous": self.ambiguous,
                "failed_writes_checked": self.checked,
                "sequence_holes": self.holes,
                "unrecorded_present": self.holes - self.unaccounted,
                "unaccounted": self.unaccounted,
                "unaccounted_keys": list(self.unaccounted_keys),
                "residency_from_client": self.from_client,
                "first_lost_ack_at": seconds(self.first_lost),
                "last_lost_ack_at": seconds(self.last_lost),
                "lost_writes": [{"key": k, "t_ack": seconds(t)} for t, _, _, k in self.listed],
                "lost_writes_truncated": self.lost > LOST_LISTED,
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


def _refusal(
    residency: str,
    fault: Fault | None,
    store: WriteStore | None,
    writes: int,
    acked: int,
    unkeyed: int,
) -> dict[str, Any] | None:
    """The entry of a residency whose writes cannot be checked, else None."""
    head: dict[str, Any] = {"residency": residency, **NULL_RPO}
    head.update(fault.describe() if fault else {"fault_id": None, "fault_at": None})
    counts = {"acknowledged": acked, "writes": writes}
    if residency == UNKNOWN_RESIDENCY:
        reason = (
            f"{writes} writes ({acked} acknowledged) have no residency and their "
            "client's other writes name none (or several): their store is unknown"
        )
        return {**head, **failed("error", reason, **counts)}
    if unkeyed:
        reason = f"{unkeyed} acknowledged writes lack client or seq: they cannot be read back"
        return {**head, **failed("error", reason, **counts)}
    if fault is None:
        return {**head, **failed("no-data", "no fault recorded (events.jsonl)", **counts)}
    if acked == 0:
        reason = "no acknowledged write of this residency: nothing to check"
        return {**head, **failed("no-data", reason, **counts)}
    if store is None:
        return {**head, **failed("no-data", "no store to read the writes back from", **counts)}
    return None


def _checked(
    residency: str,
    fault: Fault,
    store: WriteStore,
    prometheus: PromClient | None,
    writes: int,
    acked: int,
    holes_error: str | None,
    store_error: str | None,
    tally: RpoTally,
) -> dict[str, Any]:
    """The entry of a residency whose writes were read back (or failed to be)."""
    head: dict[str, Any] = {"residency": residency, **NULL_RPO, **fault.describe()}
    counts = {"acknowledged": acked, "writes": writes}
    if holes_error is not None:
        return {**head, **failed("error", f"timeline column 'seq': {holes_error}", **counts)}
    if store_error is not None:
        return {**head, **failed("error", store_error, **counts), "store": store.describe()}
    entry = {**head, **tally.entry(), "writes": writes, "store": store.describe()}
    entry["replication_lag_estimate"] = lag_estimate(prometheus, fault.applied_at, residency)
    return entry


def _rpo_entry(
    residency: str,
    rows: pd.DataFrame,
    fault: Fault | None,
    stores: Mapping[str, WriteStore] | None,
    prometheus: PromClient | None,
) -> dict[str, Any]:
    store = (stores or {}).get(residency)
    acked = int(rows["acked"].sum())
    unkeyed = int((rows["key"].isna() & rows["acked"]).sum())
    refused = _refusal(residency, fault, store, len(rows), acked, unkeyed)
    if refused is not None or fault is None or store is None:
        return refused or {}
    tally = RpoTally(fault.applied_at)
    holes_error = store_error = None
    try:
        holes = sequence_holes(rows)
    except ValueError as exc:
        holes_error = str(exc)
    else:
        wanted = rows["key"].dropna().astype(str).tolist() + holes
        try:
            tally.add(rows, store.present(wanted), holes)
        except StoreUnavailable as exc:
            store_error = str(exc)
    return _checked(
        residency, fault, store, prometheus, len(rows), acked, holes_error, store_error, tally
    )


# ------------------------------------------------------------------ bounded memory
#: Writes per ledger slice of `rpo_table_scan` (~500 bytes each while a slice is built).
LEDGER_GROUP_ROWS = 500_000
_SLICE_COLUMNS = "kind, t_start, latency_ms, ok, status, residency, client, seq"
_SLICE_SQL = "SELECT {columns}, row_n FROM {view} WHERE {where} ORDER BY t_start, row_n"


@dataclass
class _Holes:
    """`sequence_holes` of one residency's ledger fed a slice at a time.

    Slices come in (client, seq) order and never share a key, so a client's holes are
    those inside each slice plus those between its last number of the slices before
    and its first of this one. Per client only its first and last number, its numbers
    and its missing ones are kept. After `limit` the keys are no longer listed, only
    the client that went over is followed (for `sequence_holes`' message).
    """

    limit: int
    found: int = 0
    first: dict[str, int] = field(default_factory=dict)
    last: dict[str, int] = field(default_factory=dict)
    numbers: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    over: str | None = None

    def add(self, rows: pd.DataFrame) -> list[str]:
        """The hole keys of this slice (none once over the limit)."""
        keyed = rows[rows["key"].notna()]
        holes: list[str] = []
        for name, seqs in keyed.groupby("client", sort=True)["seq"]:
            client = str(name)
            if self.over is not None and client != self.over:
                continue
            have = np.unique(seqs.to_numpy(dtype=np.int64))
            prev = self.last.get(client)
            start = int(have[0]) if prev is None else prev + 1
            missing = int(have[-1]) - start + 1 - have.size
            self.first.setdefault(client, int(have[0]))
            self.last[client] = int(have[-1])
            self.numbers[client] = self.numbers.get(client, 0) + have.size
            self.missing[client] = self.missing.get(client, 0) + missing
            if self.over is not None:
                continue
            if self.found + len(holes) + missing > self.limit:
                self.over = client
                continue
            if missing:
                full = np.arange(start, int(have[-1]) + 1, dtype=np.int64)
                gone = np.setdiff1d(full, have, assume_unique=True)
                holes.extend(write_key(client, n) for n in gone.tolist())
        self.found += len(holes)
        return holes if self.over is None else []

    def error(self) -> str | None:
        """`sequence_holes`' ValueError message, when over the limit."""
        if self.over is None:
            return None
        c = self.over
        return (
            f"client {c!r}: {self.missing[c]} sequence numbers missing between "
            f"{self.first[c]} and {self.last[c]}: more than {self.limit} to look up"
        )


@dataclass
class _Book:
    """One residency's ledger, counted slice by slice (nothing per write is kept)."""

    fault: Fault | None
    store: WriteStore | None
    tally: RpoTally
    holes: _Holes = field(default_factory=lambda: _Holes(HOLES_LOOKED_UP))
    writes: int = 0
    acked: int = 0
    unkeyed: int = 0
    store_error: str | None = None

    def add(self, residency: str, rows: pd.DataFrame) -> None:
        """Count one slice; read its keys back unless the entry is already decided."""
        self.writes += len(rows)
        self.acked += int(rows["acked"].sum())
        self.unkeyed += int((rows["key"].isna() & rows["acked"]).sum())
        if residency == UNKNOWN_RESIDENCY or self.fault is None or self.store is None:
            return
        holes = self.holes.add(rows)
        wanted = rows["key"].dropna().astype(str).tolist() + holes
        if self.unkeyed or self.holes.over is not None or self.store_error is not None:
            return
        if not wanted:
            return
        try:
            present = self.store.present(wanted)
        except StoreUnavailable as exc:
            self.store_error = str(exc)
            return
        self.tally.add(rows, present, holes)


def ledger_slices(timeline: Timeline, group_rows: int) -> list[tuple[str, list[Any]]]:
    """(SQL condition, parameters) of the write slices, in (client, seq) order.

    Clients are packed whole into slices of at most `group_rows` writes; a client with
    more is cut into ranges of `seq` (numbers are consecutive, so the ranges are about
    even). The writes lacking client or seq come last, in one slice (they cannot be
    read back; an acknowledged one makes its entry an error).
    """
    counts = timeline.query(
        "SELECT client, count(*), min(seq), max(seq) FROM tl "
        "WHERE kind = 'write' AND client IS NOT NULL AND seq IS NOT NULL "
        "GROUP BY client ORDER BY client"
    )
    slices: list[tuple[str, list[Any]]] = []
    pack: list[str] = []
    size = 0

    def flush() -> None:
        if pack:
            slices.append(("seq IS NOT NULL AND client >= ? AND client <= ?", [pack[0], pack[-1]]))
            pack.clear()

    for client, n, low, high in counts:
        if n > group_rows:
            flush()
            size = 0
            pieces = -(-int(n) // group_rows)
            width = -(-(int(high) - int(low) + 1) // pieces)
            for lo in range(int(low), int(high) + 1, width):
                slices.append(("client = ? AND seq >= ? AND seq < ?", [client, lo, lo + width]))
            continue
        if size + n > group_rows:
            flush()
            size = 0
        pack.append(client)
        size += int(n)
    flush()
    unkeyed = timeline.query(
        "SELECT count(*) FROM tl WHERE kind = 'write' AND (client IS NULL OR seq IS NULL)"
    )
    if unkeyed[0][0]:
        slices.append(("client IS NULL OR seq IS NULL", []))
    return slices


def rpo_table_scan(
    timeline: Timeline,
    faults: list[Fault],
    stores: Mapping[str, WriteStore] | None,
    region_jur: dict[str, str] | None = None,
    prometheus: PromClient | None = None,
    residencies: Iterable[str] = (),
    group_rows: int | None = None,
) -> list[dict[str, Any]]:
    """`rpo_table` over the timeline queried in place, a slice of the writes at a time.

    Gives the same entries: every figure is a sum, a minimum or a maximum over the
    slices, the lost-write list keeps its order and truncation, a residency attributed
    from a client's other writes is taken from all of them. Memory is one slice's
    ledger, whatever the number of writes (`group_rows`, default `LEDGER_GROUP_ROWS`).
    """
    named = timeline.query(
        "SELECT client, min(residency), count(DISTINCT residency) FROM tl "
        "WHERE kind = 'write' AND client IS NOT NULL AND residency IS NOT NULL GROUP BY client"
    )
    single = {str(c): str(r) for c, r, n in named if n == 1}
    books: dict[str, _Book] = {}

    def book_of(residency: str) -> _Book:
        if residency not in books:
            fault = fault_for(residency, faults, region_jur or {})
            tally = RpoTally(fault.applied_at if fault else None)
            books[residency] = _Book(fault, (stores or {}).get(residency), tally)
        return books[residency]

    for residency in residencies:
        book_of(residency)
    slices = ledger_slices(timeline, group_rows or LEDGER_GROUP_ROWS)
    view = timeline.writes(_SLICE_COLUMNS) if slices else ""
    for where, params in slices:
        sql = _SLICE_SQL.format(columns=_SLICE_COLUMNS, view=view, where=where)
        book = ledger(timeline.table(sql, params), single)
        for name, rows in book.groupby("residency", sort=True):
            book_of(str(name)).add(str(name), rows)
        del book
    table: list[dict[str, Any]] = []
    for residency in sorted(books):
        b = books[residency]
        refused = _refusal(residency, b.fault, b.store, b.writes, b.acked, b.unkeyed)
        if refused is not None or b.fault is None or b.store is None:
            table.append(refused or {})
            continue
        table.append(
            _checked(
                residency,
                b.fault,
                b.store,
                prometheus,
                b.writes,
                b.acked,
                b.holes.error(),
                b.store_error,
                b.tally,
            )
        )
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
