"""What the tests against real Redis and Sentinel share: the skip and the wait for a state."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from infra.local import configs

needs_redis = pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-sentinel")),
    reason="redis-server and redis-sentinel are needed",
)


def wait_for(predicate: Callable[..., object], timeout: float) -> bool:
    """Whether `predicate` turned true within `timeout` seconds.

    A Redis or socket error counts as not yet: a store that is starting or failing over
    refuses connections for a while.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    return False


def sentinel_conf(path: Path, port: int, primary_port: int, password: str) -> Path:
    """Write at `path` the configuration of one Sentinel on loopback watching the data
    group "eu" whose primary listens on `primary_port`, with the platform's own
    timings (a quorum of 1: the tests run a single Sentinel)."""
    path.write_text(
        f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {path.parent}\n"
        f"requirepass {password}\nsentinel announce-ip 127.0.0.1\n"
        f"sentinel monitor eu 127.0.0.1 {primary_port} 1\n"
        f"sentinel auth-pass eu {password}\n"
        f"sentinel down-after-milliseconds eu {configs.SENTINEL_DOWN_AFTER_MS}\n"
        f"sentinel failover-timeout eu {configs.SENTINEL_FAILOVER_TIMEOUT_MS}\n"
    )
    return path
