"""The reference platform's platform file for the topology a world runs.

`infra/local/platform.yaml` is the template; `platform_document` puts in the regions and
jurisdictions of a topology, the world's URLs, canaries and deployed model, so that a
three-jurisdiction world is described as such and every layer reads it like any other
platform file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from infra.platform import Platform, parse_platform
from infra.types import Topology

__all__ = ["REFERENCE_PLATFORM", "platform_document", "write_platform"]

REFERENCE_PLATFORM = Path(__file__).with_name("platform.yaml")


def platform_document(
    topology: Topology,
    router_url: str | None = None,
    prometheus_url: str | None = None,
    golden: Path | None = None,
    digest: str | None = None,
) -> dict[str, Any]:
    """The reference platform file's document for `topology` (URLs default to the
    world's inside addresses; `golden` is the world's golden-scores file)."""
    doc: dict[str, Any] = yaml.safe_load(REFERENCE_PLATFORM.read_text(encoding="utf-8"))
    doc["jurisdictions"] = {
        j: {"regions": [r.name for r in topology.in_jurisdiction(j)]}
        for j in topology.jurisdictions
    }
    doc["regions"] = {
        r.name: {"jurisdiction": r.jurisdiction, "provider": r.provider} for r in topology.regions
    }
    hosts = set(doc["allow"]["hosts"])
    for key, url in (("router", router_url), ("prometheus", prometheus_url)):
        if url:
            if key == "router":
                doc["traffic"]["base_url"] = url
            else:
                doc["prometheus"]["url"] = url
            hosts.add(urlsplit(url).hostname or "")
    doc["allow"]["hosts"] = sorted(h for h in hosts if h)
    if golden is not None:
        doc["canaries"] = {"file": str(golden)}
    if digest:
        doc["model"] = {"name": "gameday-reference", "digest": digest}
    return doc


def write_platform(path: Path, doc: dict[str, Any]) -> Platform:
    """Validate `doc` and write it as YAML to `path`; returns the validated platform."""
    platform = parse_platform(doc, path)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return platform
