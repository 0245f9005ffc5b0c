"""Integrity and residency counts on constructed timelines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from probes.integrity import (
    anti_entropy,
    compare_digests,
    detection_of,
    expected_digest_of,
    integrity_table,
    wrong_answers,
    wrong_answers_of,
)
from probes.residency import residency_table, residency_violations
from probes.rpo import StoreUnavailable
from probes.rundir import Fault
from probes.timeline import normalise

T0 = 1_700_000_000.0
GOOD, BAD = "sha256:good", "sha256:bad"
REGIONS = {"us-east": "us", "us-west": "us", "eu-west": "eu", "eu-central": "eu"}


def rows(
    n: int,
    start: float,
    region: str | None,
    kind: str = "predict",
    residency: str = "us",
    digest: str | None = GOOD,
    correct: bool | None = None,
    ok: bool = True,
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "t_start": T0 + start + 0.25 * np.arange(n),
            "latency_ms": 10.0,
            "kind": kind,
            "ok": ok,
            "status": 200 if ok else 503,
            "residency": residency,
            "region": region,
            "model_digest": digest if ok else None,
            "correct": pd.array([correct] * n, dtype="boolean"),
        }
    )


def frame(*parts: pd.DataFrame) -> pd.DataFrame:
    columns = ("region", "model_digest", "correct")
    return normalise(pd.concat(parts, ignore_index=True), columns=columns)


CORRUPT = Fault("c1", "corrupt-model", "us-west", T0 + 10.0, reverted_at=T0 + 40.0)


@pytest.mark.parametrize(
    ("served_until", "detected", "seconds"),
    [(13.0, True, 3.01), (None, True, 0.0), (39.0, False, None)],
    ids=["leaves-service-after-3s", "never-served-after-the-fault", "keeps-serving"],
)
def test_time_to_detect(served_until: float | None, detected: bool, seconds: float | None) -> None:
    parts = [rows(240, 0.0, "us-east"), rows(40, 0.0, "us-west")]  # 0 … 10 s
    if served_until is not None:  # us-west serves from 10 s to `served_until` (last start)
        parts.append(rows(int((served_until - 10.0) / 0.25) + 1, 10.0, "us-west"))
    result = detection_of(frame(*parts), CORRUPT, until=T0 + 59.75)
    assert result["status"] == "ok"
    assert result["detected"] is detected
    assert result["time_to_detect_seconds"] == (
        None if seconds is None else pytest.approx(seconds, abs=1e-6)
    )
    assert result["observed_until"] == T0 + 40.0  # the revert ends the observation


def test_time_to_detect_needs_a_long_enough_observation() -> None:
    result = detection_of(frame(rows(40, 0.0, "us-east")), CORRUPT, until=T0 + 12.0)
    assert result["status"] == "no-data"
    assert "settle_seconds" in result["reason"]


def test_wrong_answers_count_canaries_and_digests_once() -> None:
    data = frame(
        rows(40, 0.0, "us-east"),  # before the fault: the majority digest is GOOD
        rows(3, 10.0, "us-west", digest=BAD),
        rows(2, 11.0, "us-west", kind="canary", digest=BAD, correct=False),  # both wrong
        rows(1, 12.0, "us-east", kind="canary", correct=False),
        rows(5, 13.0, "us-east", kind="canary", correct=True),
        rows(4, 14.0, "us-east", ok=False),  # failed: no digest, not an answer
        rows(2, 15.0, "us-east", kind="canary", correct=False, ok=False),  # an error, not wrong
    )
    result = wrong_answers_of(data, GOOD)
    assert result["status"] == "ok"
    assert (result["wrong_answers"], result["canary_mismatches"], result["unexpected_digests"]) == (
        6,
        3,
        5,
    )
    assert result["by_region"] == {"us-west": 5, "us-east": 1}
    assert result["canaries_checked"] == 8
    assert result["first_wrong_at"] == T0 + 10.0


def test_no_canary_and_no_digest_is_no_data() -> None:
    result = wrong_answers_of(frame(rows(4, 0.0, "us-east", digest=None)), None)
    assert result["status"] == "no-data"


def test_integrity_table_measures_every_corrupt_fault() -> None:
    data = frame(rows(240, 0.0, "us-east"), rows(44, 0.0, "us-west"))
    kill = Fault("k", "kill-region", "us-east", T0 + 5.0)
    table = integrity_table(data, [kill, CORRUPT], T0 + 59.75, GOOD, digest_source="deployed")
    assert [e["check"] for e in table] == ["wrong-answers", "time-to-detect"]
    assert table[0]["wrong_answers"] == 0
    assert (table[0]["expected_digest"], table[0]["digest_source"]) == (GOOD, "deployed")
    assert table[1]["time_to_detect_seconds"] == pytest.approx(0.76, abs=1e-6)  # 10.75 + 0.01


def test_wrong_answers_probe(tmp_path: Path) -> None:
    path = tmp_path / "timeline.parquet"
    frame(rows(8, 0.0, "us-east"), rows(2, 3.0, "us-west", digest=BAD)).to_parquet(path)
    world = tmp_path / "world.json"
    world.write_text(json.dumps({"model": {"digest": GOOD}}))
    deployed = wrong_answers(str(path), world_path=str(world))
    assert (deployed["unexpected_digests"], deployed["digest_source"]) == (2, "deployed")
    given = wrong_answers(str(path), expected_digest=BAD, world_path=str(world))
    assert (given["unexpected_digests"], given["digest_source"]) == (8, "given")
    unknown = wrong_answers(str(path))
    assert (unknown["status"], unknown["unexpected_digests"]) == ("no-data", None)
    assert wrong_answers(str(tmp_path / "absent.parquet"))["status"] == "error"


class MemoryFeatures:
    def __init__(self, values: dict[str, str] | None) -> None:
        self.values = values

    def digests(self, prefix: str) -> dict[str, str]:
        if self.values is None:
            raise StoreUnavailable("redis at 10.0.0.9:6379: timed out")
        return {k: v for k, v in self.values.items() if k.startswith(prefix)}

    def describe(self) -> dict[str, Any]:
        return {"store": "memory"}


def test_anti_entropy_counts_missing_extra_and_differing_keys() -> None:
    primary = {f"feat:us-{i}": f"d{i}" for i in range(10)}
    replica = {**primary, "feat:us-3": "corrupt", "feat:us-99": "x"}
    del replica["feat:us-7"]
    stores = {
        "us-east": MemoryFeatures(primary),
        "us-west": MemoryFeatures(replica),
        "us-south": MemoryFeatures(dict(primary)),
    }
    result = anti_entropy(stores, "us-east")
    assert (result["status"], result["diverged"]) == ("ok", 3)
    west = next(r for r in result["replicas"] if r["replica"] == "us-west")
    assert (west["missing"], west["extra"], west["differing"]) == (1, 1, 1)
    assert west["sample"]["differing"] == ["feat:us-3"]
    down = anti_entropy({**stores, "us-west": MemoryFeatures(None)}, "us-east")
    assert down["status"] == "error"
    assert "timed out" in down["reason"]
    assert anti_entropy({"us-east": MemoryFeatures({})}, "us-east")["status"] == "no-data"


def test_compare_digests_of_identical_stores() -> None:
    same = {"feat:a": "1", "feat:b": "2"}
    assert compare_digests(same, dict(same))["diverged"] == 0


def test_residency_counts_both_directions() -> None:
    data = frame(
        rows(10, 0.0, "us-east"),
        rows(2, 0.0, "eu-west"),  # us request served in the eu: violation
        rows(7, 0.0, "eu-central", residency="eu"),
        rows(1, 0.0, "us-west", residency="eu", ok=False),  # a 503 from the us: still crossed
        rows(3, 0.0, None, residency="eu", ok=False),  # no answer: not counted
    )
    by = {e["residency"]: e for e in residency_table(data, REGIONS)}
    assert (by["us"]["violations"], by["us"]["answered"]) == (2, 12)
    assert (by["eu"]["violations"], by["eu"]["answered"]) == (1, 8)
    assert by["eu"]["violations_by_region"] == {"us-west": 1}
    assert by["us"]["status"] == by["eu"]["status"] == "ok"


def test_residency_with_an_unknown_region_is_an_error() -> None:
    data = frame(rows(3, 0.0, "ap-south"), rows(3, 0.0, None, residency="eu"))
    by = {e["residency"]: e for e in residency_table(data, REGIONS)}
    assert by["us"]["status"] == "error"
    assert "ap-south" in by["us"]["reason"]
    assert by["eu"]["status"] == "no-data"


def test_residency_probe_reads_the_topology(tmp_path: Path) -> None:
    path = tmp_path / "timeline.parquet"
    frame(rows(3, 0.0, "eu-west")).to_parquet(path)
    topology = tmp_path / "topology.yaml"
    topology.write_text(
        "regions:\n"
        "  - {name: us-east, provider: aws, jurisdiction: us, role: primary}\n"
        "  - {name: eu-west, provider: aws, jurisdiction: eu, role: primary}\n"
    )
    result = residency_violations(str(path), str(topology))
    assert (result["status"], result["violations"]) == ("ok", 3)
    assert residency_violations(str(path))["violations"] == 3  # default: the local topology
    bad = residency_violations(str(path), str(tmp_path / "none.yaml"))
    assert bad["status"] == "error"


# -- class 6: integrity with nothing to compare is no-data
@pytest.mark.parametrize(
    ("given", "world", "expected"),
    [
        ("sha-x", {"model": {"digest": GOOD}}, ("sha-x", "given")),
        (None, {"model": {"digest": GOOD}}, (GOOD, "deployed")),
        (None, {"model": {"digest": None, "reason": "unreadable manifest"}}, (None, "unknown")),
        (None, {}, (None, "unknown")),
        (None, None, (None, "unknown")),
    ],
    ids=["given-wins", "deployed", "manifest-unreadable", "no-model", "no-world"],
)
def test_expected_digest_sources(
    given: str | None, world: dict[str, Any] | None, expected: tuple[str | None, str]
) -> None:
    # The answers never say what is right: without a deployed digest, it is unknown.
    assert expected_digest_of(given, world) == expected


def test_without_a_deployed_digest_the_digest_check_is_no_data() -> None:
    # 40 answers from GOOD before the fault at 10 s, then 10 from BAD: a majority would
    # call GOOD right, but a replica corrupt from the start would be the majority too.
    data = frame(rows(40, 0.0, "us-east"), rows(10, 10.0, "us-west", digest=BAD))
    result = wrong_answers_of(data, None)
    assert result["status"] == "no-data"
    assert result["unexpected_digests"] is None


def test_without_an_expected_digest_the_digest_check_is_no_data_not_skipped() -> None:
    # No answer before the fault, canaries checked: the digests of the 3 predictions
    # from BAD cannot be called wrong or right without knowing what was deployed.
    data = frame(
        rows(3, 10.0, "us-west", digest=BAD),
        rows(2, 11.0, "us-east", kind="canary", correct=False),
        rows(4, 12.0, "us-east", kind="canary", correct=True),
    )
    result = wrong_answers_of(data, None)
    assert result["status"] == "no-data"
    assert result["reason"] == (
        "no expected model digest (none given, none deployed in world.json, "
        "no answer before the fault): 9 answers' digests cannot be checked"
    )
    assert (result["wrong_answers"], result["canary_mismatches"]) == (2, 2)
    assert result["unexpected_digests"] is None


def test_answers_without_digests_are_checked_by_canaries_alone() -> None:
    data = frame(rows(4, 0.0, "us-east", kind="canary", digest=None, correct=True))
    result = wrong_answers_of(data, None)
    assert (result["status"], result["wrong_answers"], result["answers_with_digest"]) == (
        "ok",
        0,
        0,
    )


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        # us-west answered nothing before the corruption at 10 s.
        ([rows(240, 0.0, "us-east")], "region 'us-west' answered nothing before the fault"),
        # us-west answered before; then no us request at all after the fault.
        ([rows(40, 0.0, "us-west"), rows(200, 10.0, "eu-west", residency="eu")],
         "no us request after the fault"),
        # us requests stop at 30 s; the observation runs to the revert at 40 s.
        ([rows(40, 0.0, "us-west"), rows(80, 10.0, "us-east")],
         "no us request in the last 5 s of the observation"),
    ],
    ids=["never-served-before", "no-traffic-after", "no-traffic-at-the-end"],
)  # fmt: skip
def test_time_to_detect_with_nothing_to_observe_is_no_data(
    parts: list[pd.DataFrame], reason: str
) -> None:
    result = detection_of(frame(*parts), CORRUPT, until=T0 + 59.75, region_jur=REGIONS)
    assert result["status"] == "no-data"
    assert result["reason"].startswith(reason)
    assert result["time_to_detect_seconds"] is None
    assert result["jurisdiction"] == "us"


def test_time_to_detect_counts_what_it_observed() -> None:
    parts = [rows(240, 0.0, "us-east"), rows(40, 0.0, "us-west"), rows(9, 10.0, "us-west")]
    result = detection_of(frame(*parts), CORRUPT, until=T0 + 59.75, region_jur=REGIONS)
    assert result["status"] == "ok"
    # us-east answers 10.0 … 40.0 s (the revert ends the observation): 121; us-west: 9.
    assert (result["served_before_fault"], result["requests_after_fault"]) == (40, 121 + 9)
    assert result["time_to_detect_seconds"] == pytest.approx(2.01, abs=1e-6)  # 12.0 + 0.01
