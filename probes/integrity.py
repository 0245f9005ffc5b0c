"""Integrity: time to detect a corrupt replica, wrong answers served, replica divergence.

- **time to detect**: from a `corrupt-*` fault's `applied_at` to the corrupt region
  leaving service, read from the timeline: the end of the last answer carrying that
  region's `X-Region` after the fault. The region counts as having left service only
  when it served nothing in the last `settle_seconds` of the observation (the fault's
  revert, the next fault, or the end of the timeline); otherwise `detected: false`.
  `no-data` when leaving service cannot be seen: the region answered nothing before
  the fault, or its jurisdiction sent no request after it (or none in the last
  `settle_seconds`).
- **wrong answers**: canaries whose score was not the known correct one
  (`correct == false`, answered with a 2xx) and predictions whose `X-Model-Digest`
  is not the expected one (given, or else the digest the platform deployed, from its
  registry manifest via `world.json`; without either the check is `no-data`: the
  answers themselves never define what is right);
  a request that is both counts once.
- **anti-entropy**: per-key SHA-256 digests of the feature keys of a reference store
  (the primary) compared with each replica's: missing, extra and differing keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import redis

from infra.errors import ConfigError
from probes.result import failed, record, seconds
from probes.rpo import REDIS_PORT, SentinelWriteStore, StoreUnavailable, redis_client
from probes.rundir import Fault, read_faults, read_json, read_topology
from probes.timeline import Timeline

__all__ = ["feature_divergence", "time_to_detect", "wrong_answers"]

FEATURE_PREFIX = "feat:"
SAMPLE = 20  # keys listed per kind of divergence; the counts are complete


# ------------------------------------------------------------------ time to detect
def _jurisdiction_of(
    region: str, fault: Fault, region_jur: Mapping[str, str], served: Callable[[], list[str]]
) -> str | None:
    """The corrupted region's jurisdiction: topology, the fault's details, else the one
    residency of the requests it answered (`served()`: a region serves one jurisdiction)."""
    if region in region_jur:
        return region_jur[region]
    declared = fault.details.get("jurisdiction")
    if isinstance(declared, str) and declared:
        return declared
    names = served()
    return names[0] if len(names) == 1 else None


def _opening(
    fault: Fault, jurisdiction: str | None, end: float, settle_seconds: float
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The fields every time-to-detect entry starts with, and its `no-data` entry when
    the observation is shorter than `settle_seconds` (None when it is long enough)."""
    head = {
        "region": fault.target,
        "jurisdiction": jurisdiction,
        **fault.describe(),
        "observed_until": seconds(end),
        "inputs": {"settle_seconds": settle_seconds},
        "detected": None,
        "time_to_detect_seconds": None,
    }
    if end - fault.applied_at >= settle_seconds:
        return head, None
    return head, failed(
        "no-data",
        f"observation after the fault ({end - fault.applied_at:.3f} s) is shorter "
        f"than settle_seconds ({settle_seconds:g} s)",
        **head,
    )


def detection_of(
    frame: pd.DataFrame,
    fault: Fault,
    until: float,
    settle_seconds: float = 5.0,
    region_jur: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """How long the corrupt region `fault.target` kept serving after the fault.

    `no-data` unless leaving service can be seen: the region must have answered before
    the fault, and its jurisdiction must have requests after the fault and in the last
    `settle_seconds` of the observation (a region that serves nothing while nobody asks
    has not been detected, it is unobserved).
    """
    region = fault.target
    end = min(until, fault.reverted_at) if fault.reverted_at is not None else until

    def answered_for() -> list[str]:
        answered = frame.loc[(frame["region"].astype(str) == region).to_numpy(), "residency"]
        return [str(n) for n in answered.dropna().astype(str).unique()]

    jurisdiction = _jurisdiction_of(region, fault, region_jur or {}, answered_for)
    head, short = _opening(fault, jurisdiction, end, settle_seconds)
    if short is not None:
        return short
    starts = frame["t_start"].to_numpy(dtype=np.float64)
    answered = starts + frame["latency_ms"].to_numpy(dtype=np.float64) / 1000.0
    by_region = ((frame["region"].astype(str) == region) & frame["region"].notna()).to_numpy()
    served_before = int((by_region & (starts < fault.applied_at)).sum())
    mine = (frame["residency"].astype(str) == jurisdiction).to_numpy()
    window = (starts >= fault.applied_at) & (starts <= end)
    served = window & by_region
    n_served = int(served.sum())
    counts = _Sightings(
        served_before,
        int((mine & window).sum()),
        int((mine & window & (starts >= end - settle_seconds)).sum()),
        n_served,
        float(answered[served].max()) if n_served else None,
    )
    return _detection(head, fault, jurisdiction, end, settle_seconds, counts)


@dataclass(frozen=True)
class _Sightings:
    """What `detection_of` counts: answers of the region, requests of its jurisdiction."""

    served_before: int
    asked: int
    asked_late: int
    served: int
    last: float | None  # NaN when an answer after the fault has no latency


def _detection(
    head: dict[str, Any],
    fault: Fault,
    jurisdiction: str | None,
    end: float,
    settle_seconds: float,
    seen: _Sightings,
) -> dict[str, Any]:
    region = fault.target
    if not seen.served_before:
        reason = (
            f"region {region!r} answered nothing before the fault: leaving service cannot be seen"
        )
        return failed("no-data", reason, **head, served_before_fault=0)
    if jurisdiction is None:
        reason = f"jurisdiction of region {region!r} unknown (no topology, none in the fault)"
        return failed("no-data", reason, **head, served_before_fault=seen.served_before)
    counts = {"served_before_fault": seen.served_before, "requests_after_fault": seen.asked}
    if not seen.asked:
        reason = f"no {jurisdiction} request after the fault: whether {region} served is unseen"
        return failed("no-data", reason, **head, **counts)
    if not seen.asked_late:
        reason = (
            f"no {jurisdiction} request in the last {settle_seconds:g} s of the observation: "
            f"whether {region} still served is unseen"
        )
        return failed("no-data", reason, **head, **counts)
    last = seen.last
    left = last is None or last < end - settle_seconds
    detect = (0.0 if last is None else max(0.0, last - fault.applied_at)) if left else None
    return record(
        {
            **head,
            **counts,
            "status": "ok",
            "reason": None,
            "detected": left,
            "time_to_detect_seconds": seconds(detect),
            "served_after_fault": seen.served,
            "last_served_at": seconds(last),
        }
    )


def detection_scan(
    timeline: Timeline,
    fault: Fault,
    until: float,
    settle_seconds: float = 5.0,
    region_jur: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`detection_of` counted by the engine over the timeline in place: the same entry,
    nothing per row held."""
    region = fault.target
    end = min(until, fault.reverted_at) if fault.reverted_at is not None else until

    def answered_for() -> list[str]:
        names = timeline.query(
            "SELECT DISTINCT residency FROM tl WHERE region = ? AND residency IS NOT NULL",
            [region],
        )
        return [str(n[0]) for n in names]

    jurisdiction = _jurisdiction_of(region, fault, region_jur or {}, answered_for)
    head, short = _opening(fault, jurisdiction, end, settle_seconds)
    if short is not None:
        return short
    at = fault.applied_at
    row = timeline.query(
        "SELECT count(*) FILTER (WHERE region = ? AND t_start < ?), "
        "count(*) FILTER (WHERE residency = ? AND t_start >= ? AND t_start <= ?), "
        "count(*) FILTER (WHERE residency = ? AND t_start >= ? AND t_start <= ? "
        "AND t_start >= ?), "
        "count(*) FILTER (WHERE region = ? AND t_start >= ? AND t_start <= ?), "
        "count(*) FILTER (WHERE region = ? AND t_start >= ? AND t_start <= ? "
        "AND latency_ms IS NULL), "
        "max(t_start + latency_ms / 1000.0) FILTER (WHERE region = ? AND t_start >= ? "
        "AND t_start <= ?) FROM tl",
        [region, at, jurisdiction, at, end, jurisdiction, at, end, end - settle_seconds]
        + [region, at, end] * 3,
    )[0]
    n_served = int(row[3])
    # numpy's max of an answer without latency is NaN: kept, so the entry is the same.
    last = (float("nan") if row[4] else float(row[5])) if n_served else None
    seen = _Sightings(int(row[0]), int(row[1]), int(row[2]), n_served, last)
    return _detection(head, fault, jurisdiction, end, settle_seconds, seen)


# ------------------------------------------------------------------ wrong answers
DIGEST_SOURCES = ("given", "deployed", "unknown")


def expected_digest_of(
    given: str | None, world: Mapping[str, Any] | None
) -> tuple[str | None, str]:
    """The model digest every answer should carry, and where it comes from.

    `given` (`--expected-digest`) wins; else what the platform deployed: `world.json`'s
    `model.digest` (the registry manifest's SHA-256, written by the drill runner). None
    and "unknown" otherwise: the digest check is then `no-data`, never skipped. The
    answers are never asked what is right (a replica corrupt from the start would
    otherwise define the truth).
    """
    if given:
        return given, "given"
    model = (world or {}).get("model")
    digest = model.get("digest") if isinstance(model, dict) else None
    if isinstance(digest, str) and digest:
        return digest, "deployed"
    return None, "unknown"


def wrong_answers_of(
    frame: pd.DataFrame, expected_digest: str | None, since: float | None = None
) -> dict[str, Any]:
    """Canary mismatches and unexpected model digests among answers started >= `since`.

    Without an expected digest, answers that carry one cannot be checked: the entry is
    `no-data` and `wrong_answers` counts only the canary mismatches (a lower bound).
    """
    scope = frame if since is None else frame[frame["t_start"] >= since]
    canary = (scope["kind"] == "canary").to_numpy()
    correct = scope["correct"]
    # Only answers count: a failed canary (no 2xx) is an error, measured by the RTO.
    checked = canary & correct.notna().to_numpy() & scope["ok"].to_numpy()
    canary_wrong = checked & (correct.astype("boolean").fillna(True) == False).to_numpy()  # noqa: E712
    digest = scope["model_digest"]
    has_digest = (digest.notna() & scope["ok"]).to_numpy()
    digest_wrong = np.zeros(len(scope), dtype=bool)
    if expected_digest is not None:
        digest_wrong = has_digest & (digest.astype(str) != expected_digest).to_numpy()
    wrong = canary_wrong | digest_wrong
    regions = scope.loc[wrong, "region"].astype(str).value_counts()
    starts = scope["t_start"].to_numpy(dtype=np.float64)[wrong]
    counts = WrongAnswerCounts(
        checked=int(checked.sum()),
        with_digest=int(has_digest.sum()),
        canary_wrong=int(canary_wrong.sum()),
        digest_wrong=int(digest_wrong.sum()),
        wrong=int(wrong.sum()),
        first=float(starts.min()) if starts.size else None,
        last=float(starts.max()) if starts.size else None,
        by_region={str(k): int(v) for k, v in regions.items()},
    )
    return _wrong_answers_entry(counts, expected_digest, since)


@dataclass(frozen=True)
class WrongAnswerCounts:
    """What `wrong_answers_of` counts, however it was counted (in memory or in place)."""

    checked: int
    with_digest: int
    canary_wrong: int
    digest_wrong: int
    wrong: int
    first: float | None
    last: float | None
    by_region: dict[str, int]


def wrong_answers_scan(
    timeline: Timeline, residency: str, expected_digest: str | None
) -> dict[str, Any]:
    """`wrong_answers_of` for one residency of a timeline queried in place (same entry)."""
    canary_wrong = "kind = 'canary' AND correct IS NOT NULL AND ok AND NOT correct"
    digest_wrong = (
        "model_digest IS NOT NULL AND ok AND model_digest <> ?" if expected_digest else "false"
    )
    wrong = f"(({canary_wrong}) OR ({digest_wrong}))"
    digest_params = [expected_digest] if expected_digest else []
    row = timeline.query(
        "SELECT count(*) FILTER (WHERE kind = 'canary' AND correct IS NOT NULL AND ok), "
        "count(*) FILTER (WHERE model_digest IS NOT NULL AND ok), "
        f"count(*) FILTER (WHERE {canary_wrong}), count(*) FILTER (WHERE {digest_wrong}), "
        f"count(*) FILTER (WHERE {wrong}), min(t_start) FILTER (WHERE {wrong}), "
        f"max(t_start) FILTER (WHERE {wrong}) FROM tl WHERE residency = ?",
        [*digest_params, *digest_params, *digest_params, *digest_params, residency],
    )[0]
    # A wrong answer without a region counts under "nan", as pandas' astype(str) names it.
    regions = timeline.query(
        f"SELECT coalesce(region, 'nan'), count(*) FROM tl WHERE residency = ? AND {wrong} "
        "GROUP BY ALL ORDER BY count(*) DESC",
        [residency, *digest_params],
    )
    counts = WrongAnswerCounts(
        checked=int(row[0]),
        with_digest=int(row[1]),
        canary_wrong=int(row[2]),
        digest_wrong=int(row[3]),
        wrong=int(row[4]),
        first=None if row[5] is None else float(row[5]),
        last=None if row[6] is None else float(row[6]),
        by_region={str(k): int(v) for k, v in regions},
    )
    return _wrong_answers_entry(counts, expected_digest, None)


def _wrong_answers_entry(
    counts: WrongAnswerCounts, expected_digest: str | None, since: float | None
) -> dict[str, Any]:
    head = {
        "expected_digest": expected_digest,
        "since": seconds(since),
        "canaries_checked": counts.checked,
        "answers_with_digest": counts.with_digest,
    }
    if not counts.checked and not counts.with_digest:
        return failed("no-data", "no canary checked and no answer carried a model digest", **head)
    status, reason = "ok", None
    unexpected: int | None = counts.digest_wrong
    if expected_digest is None and counts.with_digest:
        status, unexpected = "no-data", None
        reason = (
            f"no expected model digest (none given, none deployed in world.json, "
            f"no answer before the fault): "
            f"{counts.with_digest} answers' digests cannot be checked"
        )
    return record(
        {
            **head,
            "status": status,
            "reason": reason,
            "wrong_answers": counts.wrong,
            "canary_mismatches": counts.canary_wrong,
            "unexpected_digests": unexpected,
            "first_wrong_at": seconds(counts.first),
            "last_wrong_at": seconds(counts.last),
            "by_region": counts.by_region,
        }
    )


def integrity_table(
    frame: pd.DataFrame,
    faults: list[Fault],
    until: float,
    expected_digest: str | None = None,
    settle_seconds: float = 5.0,
    digest_source: str | None = None,
    region_jur: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Wrong answers over the whole run, and time to detect every corrupt-* fault.

    `digest_source` says where `expected_digest` came from (see `expected_digest_of`).
    """
    residencies = sorted(str(r) for r in frame["residency"].dropna().unique())
    return _entries(
        residencies,
        faults,
        until,
        digest_source or ("given" if expected_digest else "unknown"),
        lambda res: wrong_answers_of(
            frame[(frame["residency"] == res).to_numpy()], expected_digest
        ),
        lambda fault, end: detection_of(frame, fault, end, settle_seconds, region_jur),
    )


def _entries(
    residencies: list[str],
    faults: list[Fault],
    until: float,
    source: str,
    wrong: Callable[[str], dict[str, Any]],
    detect: Callable[[Fault, float], dict[str, Any]],
) -> list[dict[str, Any]]:
    """The integrity table: `wrong(residency)` for each residency, then `detect(fault,
    until)` for each corrupt-* fault, observed until the next fault."""
    table: list[dict[str, Any]] = [
        {"check": "wrong-answers", "residency": res, "digest_source": source, **wrong(res)}
        for res in residencies
    ]
    for n, fault in enumerate(faults):
        if not fault.fault.startswith("corrupt"):
            continue
        fault_until = until if n + 1 == len(faults) else min(until, faults[n + 1].applied_at)
        table.append({"check": "time-to-detect", **detect(fault, fault_until)})
    return table


def integrity_table_scan(
    timeline: Timeline,
    faults: list[Fault],
    until: float,
    expected_digest: str | None = None,
    settle_seconds: float = 5.0,
    digest_source: str | None = None,
    region_jur: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """`integrity_table` over a timeline queried in place: the same entries.

    The wrong answers and time to detect are counted by the engine: nothing per row.
    """
    return _entries(
        timeline.residencies(),
        faults,
        until,
        digest_source or ("given" if expected_digest else "unknown"),
        lambda res: wrong_answers_scan(timeline, res, expected_digest),
        lambda fault, end: detection_scan(timeline, fault, end, settle_seconds, region_jur),
    )


# ------------------------------------------------------------------ anti-entropy
class FeatureStore(Protocol):
    """A replica of the feature store, read key by key."""

    def digests(self, prefix: str) -> dict[str, str]:
        """SHA-256 hex digest of every key starting with `prefix`; raises StoreUnavailable."""
        ...

    def describe(self) -> dict[str, Any]:
        """Where the digests came from."""
        ...


@dataclass
class RedisFeatureStore:
    """One Redis server (primary or replica), scanned with SCAN and read with MGET."""

    host: str
    port: int = REDIS_PORT
    password: str | None = None
    timeout: float = 0.5
    batch: int = 1000
    max_keys: int = 1_000_000  # bounds the scan: a keyspace larger than this is an error

    def digests(self, prefix: str) -> dict[str, str]:
        conn = redis_client(self.host, self.port, self.password, self.timeout)
        where = f"redis at {self.host}:{self.port}"
        try:
            keys: list[str] = []
            cursor = 0
            for _ in range(self.max_keys // max(self.batch, 1) + 2):
                cursor, page = conn.scan(cursor=cursor, match=f"{prefix}*", count=self.batch)
                keys.extend(k.decode() if isinstance(k, bytes) else str(k) for k in page)
                if cursor == 0:
                    break
            else:
                raise StoreUnavailable(f"{where}: more than {self.max_keys} keys under {prefix!r}")
            keys = sorted(set(keys))
            out: dict[str, str] = {}
            for lo in range(0, len(keys), self.batch):
                chunk = keys[lo : lo + self.batch]
                for key, value in zip(chunk, conn.mget(chunk), strict=True):
                    if value is not None:
                        raw = value if isinstance(value, bytes) else str(value).encode()
                        out[key] = hashlib.sha256(raw).hexdigest()
            return out
        except (redis.RedisError, OSError) as exc:
            raise StoreUnavailable(f"{where}: {exc}") from exc
        finally:
            conn.close()

    def describe(self) -> dict[str, Any]:
        return {"store": "redis", "address": f"{self.host}:{self.port}"}


def compare_digests(reference: Mapping[str, str], replica: Mapping[str, str]) -> dict[str, Any]:
    """Keys missing from the replica, extra in it, and present in both but different."""
    missing = sorted(set(reference) - set(replica))
    extra = sorted(set(replica) - set(reference))
    differing = sorted(k for k in set(reference) & set(replica) if reference[k] != replica[k])
    return {
        "compared": len(reference),
        "missing": len(missing),
        "extra": len(extra),
        "differing": len(differing),
        "diverged": len(missing) + len(extra) + len(differing),
        "sample": {
            "missing": missing[:SAMPLE],
            "extra": extra[:SAMPLE],
            "differing": differing[:SAMPLE],
        },
    }


def anti_entropy(
    stores: Mapping[str, FeatureStore], reference: str, prefix: str = FEATURE_PREFIX
) -> dict[str, Any]:
    """Every replica of `stores` compared with `stores[reference]`, key by key."""
    head = {"check": "anti-entropy", "reference": reference, "inputs": {"prefix": prefix}}
    try:
        ref = stores[reference].digests(prefix)
    except StoreUnavailable as exc:
        return failed("error", f"reference {reference}: {exc}", **head)
    if not ref:
        return failed("no-data", f"the reference holds no key under {prefix!r}", **head)
    replicas: list[dict[str, Any]] = []
    for name in sorted(stores):
        if name == reference:
            continue
        try:
            replicas.append(
                {
                    "replica": name,
                    "status": "ok",
                    **compare_digests(ref, stores[name].digests(prefix)),
                }
            )
        except StoreUnavailable as exc:
            replicas.append({"replica": name, "status": "error", "reason": str(exc)})
    if not replicas:
        return failed("no-data", "no replica to compare with", **head)
    bad = [r for r in replicas if r["status"] != "ok"]
    return record(
        {
            **head,
            "status": "error" if bad else "ok",
            "reason": "; ".join(f"{r['replica']}: {r['reason']}" for r in bad) or None,
            "diverged": sum(r.get("diverged", 0) for r in replicas),
            "replicas": replicas,
        }
    )


# ------------------------------------------------------------------ probes
def time_to_detect(
    timeline_path: str,
    events_path: str,
    region: str = "",
    settle_seconds: float = 5.0,
) -> dict[str, Any]:
    """Seconds from corrupting a replica to that region leaving service.

    Uses the first `corrupt-*` fault of `events_path` (on `region`, when given) and the
    answers' `X-Region` in the timeline: detection is the end of the last answer from
    that region after the fault, provided it served nothing during the last
    `settle_seconds` of the observation. `detected: false` when it kept serving;
    `status` "no-data" without such a fault, when the region answered nothing before
    the fault, or when its jurisdiction sent no request after it.
    """
    from probes.timeline import read_timeline

    try:
        frame = read_timeline(Path(timeline_path), columns=("region",))
        faults = read_faults(Path(events_path))
    except (ConfigError, ValueError) as exc:
        return failed("error", str(exc), region=region)
    chosen = [
        f for f in faults if f.fault.startswith("corrupt") and (not region or f.target == region)
    ]
    if not chosen:
        return failed("no-data", "no corrupt-* fault in the events", region=region)
    end = float(frame["t_start"].iloc[-1]) if len(frame) else chosen[0].applied_at
    return detection_of(frame, chosen[0], end, settle_seconds)


def wrong_answers(
    timeline_path: str,
    expected_digest: str = "",
    since: float | None = None,
    world_path: str = "",
) -> dict[str, Any]:
    """Wrong answers served: canary mismatches and unexpected model digests.

    A canary is wrong when its score differs from the golden one (`correct: false`);
    a prediction is wrong when its `X-Model-Digest` is not `expected_digest` (default:
    the digest the platform deployed, `model.digest` of the run's `world_path`). With
    neither, answers' digests cannot be checked: `status` "no-data". Counts answers
    started at or after `since` (default: all). Must be 0.
    """
    from probes.timeline import read_timeline

    try:
        frame = read_timeline(Path(timeline_path), columns=("region", "model_digest", "correct"))
        world = read_json(Path(world_path)) if world_path else None
    except (ConfigError, ValueError) as exc:
        return failed("error", str(exc))
    digest, source = expected_digest_of(expected_digest or None, world)
    return {"digest_source": source, **wrong_answers_of(frame, digest, since)}


def feature_divergence(
    world_path: str,
    jurisdiction: str,
    prefix: str = FEATURE_PREFIX,
    topology_path: str = "",
    timeout_seconds: float = 0.5,
) -> dict[str, Any]:
    """Feature keys that differ between a jurisdiction's primary and its replicas.

    Finds the current primary through the Sentinels of the local platform's
    `world_path` (run inside the world), then compares the SHA-256 of every key under
    `prefix` on each other region of the jurisdiction with the primary's. `diverged`
    must be 0 after a repair; `status` "error" when a store does not answer.
    """
    try:
        world = read_json(Path(world_path))
        topology = read_topology(Path(topology_path or str(world.get("topology") or "")))
        addresses = {str(k): str(v) for k, v in dict(world["addresses"]).items()}
        password = str(world.get("redis_password") or "") or None
    except (ValueError, KeyError, TypeError) as exc:
        return failed("error", f"world: {exc}", jurisdiction=jurisdiction)
    sentinels = [(a, 26379) for n, a in sorted(addresses.items()) if n != "edge"]
    try:
        host, _port = SentinelWriteStore(
            sentinels, jurisdiction, password, timeout_seconds
        ).discover()
    except StoreUnavailable as exc:
        return failed("error", str(exc), jurisdiction=jurisdiction)
    stores: dict[str, FeatureStore] = {}
    reference = host
    for region in topology.in_jurisdiction(jurisdiction):
        address = addresses.get(region.name)
        if address is None:
            continue
        stores[region.name] = RedisFeatureStore(address, REDIS_PORT, password, timeout_seconds)
        if address == host:
            reference = region.name
    return {"jurisdiction": jurisdiction, **anti_entropy(stores, reference, prefix)}
