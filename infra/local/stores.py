"""The feature stores: loading entities, replication state and primary discovery.

Read-mostly helpers over redis-py, used by the supervisor (inside the world, where
every address of the backbone is reachable). Every call has a short timeout.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from infra.local import model as modelmod
from infra.local import plan

TIMEOUT = 0.5
FEATURE_PREFIX = "feat:"
# The replicas start beside the primary: a guarded primary accepts writes within a few
# seconds (connect, full sync of an empty store, first ACK, the next once-a-second check).
GUARD_WAIT = 30.0
GUARD_SETTINGS = ("min-replicas-to-write", "min-replicas-max-lag")


def client(address: str, password: str, port: int = plan.REDIS_PORT) -> redis.Redis:
    """A redis-py client with short timeouts (a dead region must not stall the caller)."""
    return redis.Redis(
        host=address,
        port=port,
        password=password,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        # redis-py retries with backoff by default: against a dead region that turns
        # a 0.5 s timeout into ~9 s. One try, and the caller decides.
        retry=Retry(NoBackoff(), 0),
    )


def load_entities(
    address: str, password: str, jurisdiction: str, count: int, guard_wait: float = GUARD_WAIT
) -> int:
    """Write the features of `<jurisdiction>-0…count-1` to a primary; returns keys written.

    A primary with a write guard (`min-replicas-to-write`) refuses writes until enough
    replicas have connected and acknowledged; the load waits up to `guard_wait` seconds
    for them (the writes are idempotent, so a refused batch is simply written again).
    """
    deadline = time.monotonic() + guard_wait
    while True:
        try:
            return _write_entities(address, password, jurisdiction, count)
        except redis.ResponseError as exc:
            if "NOREPLICAS" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _write_entities(address: str, password: str, jurisdiction: str, count: int) -> int:
    feats = modelmod.entity_features(jurisdiction, count)
    conn = client(address, password)
    try:
        pipe = conn.pipeline(transaction=False)
        for index, row in enumerate(feats):
            pipe.set(f"{FEATURE_PREFIX}{jurisdiction}-{index}", modelmod.feature_record(row))
            if index % 2000 == 1999:
                pipe.execute()
        pipe.execute()
    finally:
        conn.close()
    return len(feats)


def role(address: str, password: str) -> str:
    """'master', 'slave' (Redis's words) or 'down' when the store does not answer."""
    conn = client(address, password)
    try:
        raw = conn.execute_command("ROLE")[0]  # type: ignore[no-untyped-call]
        return raw.decode() if isinstance(raw, bytes) else str(raw)
    except (redis.RedisError, OSError):
        return "down"
    finally:
        conn.close()


def replication(address: str, password: str) -> dict[str, str]:
    """`INFO replication` of one store as strings; empty when it does not answer."""
    conn = client(address, password)
    try:
        info = conn.info("replication")
        return {str(k): str(v) for k, v in info.items()}
    except (redis.RedisError, OSError):
        return {}
    finally:
        conn.close()


def store_settings(address: str, password: str, port: int = plan.REDIS_PORT) -> dict[str, int]:
    """The write-guard settings a store runs with (CONFIG GET); empty when it does not answer.

    What the store itself reports, not what a file says: `testbed status` shows these,
    so a promoted replica or a restored region proves it carries them.
    """
    conn = client(address, password, port)
    try:
        answer = conn.config_get("min-replicas-*")
        found = {key: answer.get(key) for key in GUARD_SETTINGS}
        return {key: int(value) for key, value in found.items() if value is not None}
    except (redis.RedisError, OSError, ValueError):
        return {}
    finally:
        conn.close()


def sentinel_views(sentinels: Sequence[str], password: str, group: str) -> dict[str, str | None]:
    """What each sentinel names as `group`'s primary address (None: no answer)."""
    views: dict[str, str | None] = {}
    for address in sentinels:
        conn = client(address, password, port=plan.SENTINEL_PORT)
        try:
            answer = conn.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "get-master-addr-by-name", group
            )
            views[address] = answer[0].decode() if answer else None
        except (redis.RedisError, OSError):
            views[address] = None
        finally:
            conn.close()
    return views


def current_primary(sentinels: Sequence[str], password: str, group: str) -> str | None:
    """The address most sentinels name as `group`'s primary; None when none answers.

    During a partition the isolated side's sentinel may still name the old primary:
    the majority is what the platform will converge on.
    """
    votes = Counter(v for v in sentinel_views(sentinels, password, group).values() if v)
    if not votes:
        return None
    return votes.most_common(1)[0][0]


def good_replicas(address: str, password: str, group: str) -> set[str]:
    """Addresses of the replicas this sentinel could promote in `group` (known, up)."""
    conn = client(address, password, port=plan.SENTINEL_PORT)
    try:
        replicas = conn.sentinel_slaves(group)
        return {
            str(r.get("ip"))
            for r in replicas
            if isinstance(r, dict) and not r.get("is_sdown") and not r.get("is_disconnected")
        }
    except (redis.RedisError, OSError, ValueError):
        return set()
    finally:
        conn.close()


def sentinel_ready(address: str, password: str, groups: Mapping[str, int], peers: int) -> bool:
    """True when this sentinel monitors every group, has met `peers` other sentinels and
    knows each group's expected number of replicas.

    A sentinel learns a group's replicas from the primary's INFO (every 10 s): one that
    does not know them yet finds "no good replica" when the primary dies.
    """
    conn = client(address, password, port=plan.SENTINEL_PORT)
    try:
        for group, replicas in groups.items():
            info = conn.sentinel_master(group)
            if not isinstance(info, dict):
                return False
            others = int(info.get("num-other-sentinels", 0))
            if others < peers or info.get("is_sdown") or info.get("is_odown"):
                return False
            if len(good_replicas(address, password, group)) < replicas:
                return False
        return True
    except (redis.RedisError, OSError, ValueError):
        return False
    finally:
        conn.close()


def wait_until(predicate: object, timeout: float, interval: float = 0.1) -> bool:
    """Poll a zero-argument callable until it returns truthy or `timeout` seconds pass."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
