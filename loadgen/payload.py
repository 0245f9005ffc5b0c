"""What a `WriterUser` sends, so that a reader of the store can verify every write.

Body of `POST /v1/events`::

    {"client": "w-3f2a9c1e0b7d", "seq": 17,
     "payload": {"client": "w-3f2a9c1e0b7d", "seq": 17, "digest": "<16 hex>"}}

`digest` is the first 16 hex digits of SHA-256 over `"<client>:<seq>"` (UTF-8): a stored
payload whose digest differs from `payload_digest(client, seq)` is corrupt.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = ["payload_digest", "write_body"]


def payload_digest(client: str, seq: int) -> str:
    """The digest a write's payload carries (16 hex digits of SHA-256 of "client:seq")."""
    return hashlib.sha256(f"{client}:{seq}".encode()).hexdigest()[:16]


def write_body(client: str, seq: int) -> dict[str, Any]:
    """The JSON body of write number `seq` of `client`."""
    return {
        "client": client,
        "seq": seq,
        "payload": {"client": client, "seq": seq, "digest": payload_digest(client, seq)},
    }
