"""Running commands inside the world's network namespaces, and firewall rules.

Used only inside a world (by the supervisor): every command here changes a namespace
the world owns and nothing on the host.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from infra.errors import FaultError

NETNS_DIR = "/run/netns"
FAULT_TABLE = "gameday_fault"
COMMAND_TIMEOUT = 10.0


def in_netns(netns: str | None, argv: Sequence[str]) -> list[str]:
    """`argv` prefixed so that it runs in `netns` (None: the world's root namespace)."""
    if netns is None:
        return list(argv)
    return ["nsenter", f"--net={NETNS_DIR}/{netns}", "--", *argv]


def run(argv: Sequence[str], netns: str | None = None, stdin: str | None = None) -> str:
    """Run a command to completion; raises FaultError with its stderr when it fails."""
    full = in_netns(netns, argv)
    try:
        done = subprocess.run(
            full,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FaultError(f"{' '.join(full)}: {exc}") from exc
    if done.returncode != 0:
        where = f" (in {netns})" if netns else ""
        raise FaultError(f"{' '.join(argv)}{where} failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


def drop_rules(netns: str, peers: Sequence[str], direction: str) -> None:
    """Install DROP rules in `netns` against `peers` (addresses).

    `direction` is "both", "in" (drop what arrives from the peers) or "out" (drop what
    is sent to them). The rules live in one table of their own, so healing is deleting
    that table and nothing else of the namespace's firewall is touched.
    """
    if not peers:
        return
    peer_set = "{ " + ", ".join(peers) + " }"
    lines = [
        f"table inet {FAULT_TABLE} {{",
        "  chain input { type filter hook input priority -10; policy accept;",
        f"    ip saddr {peer_set} drop" if direction in ("both", "in") else "",
        "  }",
        "  chain output { type filter hook output priority -10; policy accept;",
        f"    ip daddr {peer_set} drop" if direction in ("both", "out") else "",
        "  }",
        "}",
    ]
    run(["nft", "-f", "-"], netns=netns, stdin="\n".join(lines) + "\n")


def clear_rules(netns: str) -> bool:
    """Remove gameday's fault table from `netns`; False when there was none."""
    listing = run(["nft", "list", "tables"], netns=netns)
    if f"inet {FAULT_TABLE}" not in listing:
        return False
    run(["nft", "delete", "table", "inet", FAULT_TABLE], netns=netns)
    return True


def has_rules(netns: str) -> bool:
    """True when gameday's fault table exists in `netns`."""
    return f"inet {FAULT_TABLE}" in run(["nft", "list", "tables"], netns=netns)
