"""What the tests against real Redis and Sentinel share: the skip and the wait for a state."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable

import pytest
import redis

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
