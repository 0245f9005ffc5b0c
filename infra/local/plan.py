"""The network plan of a local world: who lives where, on which address and port.

Shared by the host side (`world.py`) and the supervisor inside the world, and
published in `world.json` so that probes and tools find every component without
guessing. All addresses live on the world's private backbone, which exists only
inside the world's own network namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.types import Topology

BACKBONE = "10.200.0"
BRIDGE = "gd0"
CONTROL_ADDRESS = f"{BACKBONE}.1"  # the supervisor's own address on the backbone
EDGE = "edge"
EDGE_ADDRESS = f"{BACKBONE}.2"

SERVICE_PORT = 8000
REDIS_PORT = 6379
SENTINEL_PORT = 26379
EXPORTER_PORT = 9121
PROMETHEUS_PORT = 9090
ROUTER_PORT = 8080
HAPROXY_STATS_PORT = 8404


@dataclass(frozen=True)
class Node:
    """A network namespace of the world: a region or the edge."""

    name: str
    address: str
    veth: str  # the backbone side of its link, in the world's root namespace

    @property
    def netns(self) -> str:
        return f"gd-{self.name}"


def nodes(topology: Topology) -> tuple[Node, ...]:
    """The edge followed by every region, each with its address and link name."""
    result = [Node(EDGE, EDGE_ADDRESS, "gd-edge")]
    for index, region in enumerate(topology.regions):
        result.append(Node(region.name, f"{BACKBONE}.{11 + index}", f"gd-r{index}"))
    return tuple(result)


def node(topology: Topology, name: str) -> Node:
    """The node called `name` (a region or "edge"); KeyError if unknown."""
    for candidate in nodes(topology):
        if candidate.name == name:
            return candidate
    raise KeyError(name)
