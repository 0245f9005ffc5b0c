"""The load generator's own Prometheus metrics, and the file_sd target file for them.

Counters (a private registry, served by the Locust master or single process):

- `gameday_load_requests_total{kind, outcome, residency, region}`: requests answered or
  failed, `outcome` ok (2xx) or fail, `region` from X-Region ("none" when absent);
- `gameday_load_wrong_answers_total{residency, region}`: canaries whose score was wrong.

Workers count locally and send their counts with each stats report to the master (every
3 s and once at the end), so a scrape of the master sees every worker.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["RequestCounts", "remove_sd_file", "write_sd_file"]

RequestKey = tuple[str, str, str, str]


class RequestCounts(Collector):
    """Counts by (kind, outcome, residency, region) and wrong answers by (residency, region);
    also a Prometheus collector that reports them at scrape time."""

    def __init__(self) -> None:
        self.requests: dict[RequestKey, int] = {}
        self.wrong: dict[tuple[str, str], int] = {}
        self._unsent: list[list[str | int]] = []

    def count(self, kind: str, ok: bool, residency: str, region: str | None, wrong: bool) -> None:
        """One request (the hot path: two dict updates)."""
        key = (kind, "ok" if ok else "fail", residency, region or "none")
        self.requests[key] = self.requests.get(key, 0) + 1
        if wrong:
            wkey = (residency, region or "none")
            self.wrong[wkey] = self.wrong.get(wkey, 0) + 1

    def drain(self) -> dict[str, list[list[str | int]]]:
        """The counts since the last drain, as plain lists (for a worker's report)."""
        out: dict[str, list[list[str | int]]] = {
            "requests": [[*key, n] for key, n in self.requests.items()],
            "wrong": [[*key, n] for key, n in self.wrong.items()],
        }
        self.requests = {}
        self.wrong = {}
        return out

    def add(self, drained: dict[str, list[list[str | int]]]) -> None:
        """Add counts a worker drained."""
        for *labels, n in drained.get("requests", []):
            key = (str(labels[0]), str(labels[1]), str(labels[2]), str(labels[3]))
            self.requests[key] = self.requests.get(key, 0) + int(n)
        for *labels, n in drained.get("wrong", []):
            wkey = (str(labels[0]), str(labels[1]))
            self.wrong[wkey] = self.wrong.get(wkey, 0) + int(n)

    def collect(self) -> Iterator[CounterMetricFamily]:
        requests = CounterMetricFamily(
            "gameday_load_requests",
            "Requests the load generator sent, by outcome (ok: 2xx).",
            labels=["kind", "outcome", "residency", "region"],
        )
        for key, n in sorted(self.requests.items()):
            requests.add_metric(list(key), float(n))
        yield requests
        wrong = CounterMetricFamily(
            "gameday_load_wrong_answers",
            "Canary predictions whose score differed from the golden score.",
            labels=["residency", "region"],
        )
        for wkey, n in sorted(self.wrong.items()):
            wrong.add_metric(list(wkey), float(n))
        yield wrong

    def registry(self) -> CollectorRegistry:
        """A private registry holding only these counters."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry


def write_sd_file(path: Path, target: str, labels: dict[str, str]) -> None:
    """Write a Prometheus file_sd target file (atomically: Prometheus watches the folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps([{"targets": [target], "labels": labels}], indent=2) + "\n")
    os.replace(tmp, path)


def remove_sd_file(path: Path) -> None:
    """Remove the target file (the generator is gone); no error when already absent."""
    path.unlink(missing_ok=True)
