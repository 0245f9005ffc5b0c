"""Inference API shapes: request building, score and region extraction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.local.describe import REFERENCE_PLATFORM
from infra.platform import Platform, parse_platform
from infra.shapes import AnswerReader, ShapeError, find, predict_request


def _platform(api: dict[str, Any], answer: dict[str, Any] | None = None) -> Platform:
    doc = yaml.safe_load(REFERENCE_PLATFORM.read_text())
    doc["traffic"]["api"] = api
    if answer is not None:
        doc["traffic"]["answer"] = answer
    return parse_platform(doc, Path("platform.yaml"))


def test_reference_request_and_score() -> None:
    platform = _platform({"shape": "reference"})
    request = predict_request(platform, "eu", "eu-42")
    assert (request.method, request.path, request.body) == (
        "POST",
        "/v1/predict",
        {"entity_id": "eu-42"},
    )
    assert request.headers["X-Residency"] == "eu"
    assert AnswerReader.of(platform).score({"score": 0.75}) == 0.75


def test_oip_v2_request_and_score() -> None:
    platform = _platform({"shape": "oip-v2", "model": "fraud", "input": "id", "output": "p"})
    request = predict_request(platform, "us", "us-1")
    assert request.path == "/v2/models/fraud/infer"
    assert request.body == {
        "inputs": [{"name": "id", "shape": [1], "datatype": "BYTES", "data": ["us-1"]}]
    }
    answer = {
        "model_name": "fraud",
        "outputs": [
            {"name": "label", "shape": [1], "datatype": "INT64", "data": [1]},
            {"name": "p", "shape": [1], "datatype": "FP64", "data": [0.125]},
        ],
    }
    reader = AnswerReader.of(platform)
    assert reader.score(answer) == 0.125
    assert reader.score_of(json.dumps(answer).encode()) == 0.125
    with pytest.raises(ShapeError, match=r"no output named 'p' \(has \['label'\]\)"):
        reader.score({"outputs": [answer["outputs"][0]]})
    with pytest.raises(ShapeError, match="no `outputs` list"):
        reader.score({"predictions": [0.1]})


def test_template_request_fills_placeholders_and_reads_the_pointer() -> None:
    platform = _platform(
        {
            "shape": "template",
            "method": "POST",
            "path": "/score/{jurisdiction}",
            "body": {"instances": [{"id": "{entity_id}", "tags": ["{jurisdiction}", 3]}]},
            "score": "/predictions/0/probability",
        }
    )
    request = predict_request(platform, "eu", "eu-7")
    assert request.path == "/score/eu"
    assert request.body == {"instances": [{"id": "eu-7", "tags": ["eu", 3]}]}
    reader = AnswerReader.of(platform)
    assert reader.score({"predictions": [{"probability": 0.5}]}) == 0.5
    with pytest.raises(ShapeError, match=r"no 'probability' at '/predictions/0/probability'"):
        reader.score({"predictions": [{"prob": 0.5}]})
    with pytest.raises(ShapeError, match="not a number"):
        reader.score({"predictions": [{"probability": "high"}]})
    assert reader.score_of(b'{"predictions": []}') is None
    assert reader.score_of(b"<html>") is None


def test_dotted_paths_and_pointers_agree() -> None:
    doc = {"a": [{"b/c": 1, "d": {"e": 2}}]}
    assert find(doc, "a.0.d.e") == find(doc, "/a/0/d/e") == 2
    assert find(doc, "/a/0/b~1c") == 1
    with pytest.raises(ShapeError):
        find(doc, "a.1")


def test_region_from_a_header_or_a_field_and_none_without() -> None:
    header = AnswerReader.of(_platform({"shape": "reference"}))
    assert header.region({"X-Region": "us-east"}, None) == "us-east"
    assert header.region({}, b'{"region": "us-east"}') is None
    field = AnswerReader.of(
        _platform({"shape": "reference"}, {"region_header": None, "region_field": "meta.region"})
    )
    assert field.region({"X-Region": "x"}, b'{"meta": {"region": "eu-west"}}') == "eu-west"
    assert field.region(None, b'{"meta": {}}') is None
    assert field.region(None, b"not json") is None
    assert field.digest({"X-Model-Digest": "abc"}) == "abc"


def test_answers_that_do_not_name_their_region_give_residency_no_data() -> None:
    import pandas as pd

    from loadgen.timeline import row_from_request
    from probes.residency import residency_table

    platform = _platform(
        {"shape": "oip-v2", "model": "m"}, {"region_header": None, "digest_header": None}
    )
    reader = AnswerReader.of(platform)
    body = b'{"outputs": [{"name": "score", "data": [0.5]}]}'
    row = row_from_request(
        1.0,
        5.0,
        200,
        None,
        {"X-Region": "us-east"},  # present, but the platform does not say to read it
        body,
        {"kind": "canary", "residency": "us", "reader": reader, "expected": 0.5},
    )
    assert (row[7], row[8], row[9], row[13]) == (None, None, 0.5, True)
    frame = pd.DataFrame([{"residency": row[6], "region": row[7]}])
    (entry,) = residency_table(frame, platform.region_jurisdictions())
    assert entry["status"] == "no-data"
