"""The HTTP read-back of the RPO ledger, and the write stores a platform file names.

A platform whose writes can be read back over HTTP declares a URL template in its
platform file (`writes.readback.http`, e.g. `/v1/events/{client}/{seq}`). For every
acknowledged write the ledger asks it: 200 means the write is present, 404 that it is
absent, anything else (a 5xx, a timeout, a redirect) is an error, and one error makes
the whole read-back unavailable (RPO `error`), never a guess. Without a read-back the
RPO is `no-data`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import requests

from infra.platform import Platform
from infra.types import WRITE_KEY_PREFIX
from probes.rpo import StoreUnavailable, WriteStore, stores_from_world

# Helpers of `probes.measure`, not Chaos Toolkit probes: only the class is exported.
__all__ = ["HttpWriteStore"]


def _client_seq(key: str) -> tuple[str, str]:
    """(client, seq) of a write key `ev:<client>:<seq>`."""
    client, _, seq = key.removeprefix(WRITE_KEY_PREFIX).rpartition(":")
    if not client or not seq.isdigit():
        raise ValueError(f"write key {key!r} is not {WRITE_KEY_PREFIX}<client>:<seq>")
    return client, seq


@dataclass
class HttpWriteStore:
    """Reads writes back with `GET url` (`{client}` and `{seq}` filled in).

    `headers` go with every request (e.g. the jurisdiction header). At most `workers`
    requests at once, each with `timeout` seconds.
    """

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 2.0
    workers: int = 8

    def _one(self, session: requests.Session, key: str) -> bool:
        client, seq = _client_seq(key)
        url = self.url.replace("{client}", client).replace("{seq}", seq)
        try:
            response = session.get(
                url, headers=self.headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise StoreUnavailable(f"read-back GET {url}: {exc}") from exc
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise StoreUnavailable(
            f"read-back GET {url}: http {response.status_code} (only 200 present and "
            "404 absent are answers)"
        )

    def present(self, keys: Sequence[str]) -> set[str]:
        with requests.Session() as session, ThreadPoolExecutor(self.workers) as pool:
            hits = list(pool.map(lambda k: self._one(session, k), keys))
        return {k for k, hit in zip(keys, hits, strict=True) if hit}

    def describe(self) -> dict[str, Any]:
        return {"store": "http read-back", "url": self.url}


def stores_from_platform(
    platform: Platform,
    jurisdictions: Iterable[str],
    world: Mapping[str, Any] | None = None,
    http_timeout: float = 2.0,
    store_timeout: float = 0.5,
) -> dict[str, WriteStore] | None:
    """The read-back the platform file declares, per jurisdiction; None without one.

    `redis_sentinel` needs the local world's `world.json` (addresses, password): without
    it there is no read-back either.
    """
    readback = platform.writes.readback if platform.writes else None
    if readback is None:
        return None
    names = list(jurisdictions)
    if readback.redis_sentinel:
        if world is None or "addresses" not in world:
            return None
        return stores_from_world(world, names, store_timeout)
    stores: dict[str, WriteStore] = {}
    header = platform.traffic.jurisdiction_header
    for jurisdiction in names:
        url = platform.readback_url(jurisdiction)
        if url is None:
            return None
        headers = {header: jurisdiction} if header else {}
        stores[jurisdiction] = HttpWriteStore(url, headers, http_timeout)
    return stores
