"""Inference API shapes: build a prediction request, read the score and region of an answer.

Three shapes (`infra.platform.ApiSpec`): the reference API, the Open Inference Protocol
v2 (KServe, Triton, MLServer) and a custom template. Pure functions: the load users,
the steady-state probes and the timeline recorder call them, so a canary compares the
score wherever the shape puts it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra.platform import AnswerSpec, ApiSpec, Platform

__all__ = ["AnswerReader", "PredictRequest", "ShapeError", "find", "predict_request"]


class ShapeError(ValueError):
    """An answer does not hold what its shape says (no score at the path, not JSON)."""


@dataclass(frozen=True)
class PredictRequest:
    """One prediction request: `method` `path` with JSON `body` and `headers`."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]


def _fill(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        for key, text in names.items():
            value = value.replace("{" + key + "}", text)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value


def predict_request(platform: Platform, jurisdiction: str, entity_id: str) -> PredictRequest:
    """The request that asks `platform` for `entity_id`'s score in `jurisdiction`."""
    api = platform.traffic.api
    headers = {"Content-Type": "application/json"}
    if platform.traffic.jurisdiction_header:
        headers[platform.traffic.jurisdiction_header] = jurisdiction
    if api.shape == "reference":
        return PredictRequest("POST", "/v1/predict", {"entity_id": entity_id}, headers)
    if api.shape == "oip-v2":
        body = {
            "inputs": [{"name": api.input, "shape": [1], "datatype": "BYTES", "data": [entity_id]}]
        }
        return PredictRequest("POST", f"/v2/models/{api.model}/infer", body, headers)
    names = {"entity_id": entity_id, "jurisdiction": jurisdiction}
    assert api.path is not None  # the model's validator requires it for templates
    return PredictRequest(api.method, _fill(api.path, names), _fill(api.body, names), headers)


def find(doc: Any, path: str) -> Any:
    """The value at `path` in `doc`: a JSON pointer (`/a/0/b`) or a dotted path (`a.0.b`).

    Raises ShapeError naming the first step that is missing.
    """
    if path.startswith("/"):
        steps = [s.replace("~1", "/").replace("~0", "~") for s in path[1:].split("/")]
    else:
        steps = path.split(".")
    value = doc
    for step in steps:
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            raise ShapeError(f"the answer has no {step!r} at {path!r}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ShapeError(f"the answer's {where} is {value!r}, not a number")
    return float(value)


@dataclass(frozen=True)
class AnswerReader:
    """Reads score, region and model digest from an answer, as the platform says."""

    api: ApiSpec
    answer: AnswerSpec

    @classmethod
    def of(cls, platform: Platform) -> AnswerReader:
        return cls(platform.traffic.api, platform.traffic.answer)

    def score(self, doc: Any) -> float:
        """The score in a decoded JSON answer; raises ShapeError when it is not there."""
        if self.api.score:
            return _number(find(doc, self.api.score), self.api.score)
        if self.api.shape == "oip-v2":
            outputs = doc.get("outputs") if isinstance(doc, dict) else None
            if not isinstance(outputs, list):
                raise ShapeError("the answer has no `outputs` list (Open Inference Protocol v2)")
            for output in outputs:
                if isinstance(output, dict) and output.get("name") == self.api.output:
                    data = output.get("data")
                    if isinstance(data, list) and data:
                        return _number(data[0], f"outputs[{self.api.output}].data[0]")
                    raise ShapeError(f"the answer's output {self.api.output!r} has no data")
            names = [o.get("name") for o in outputs if isinstance(o, dict)]
            raise ShapeError(f"the answer has no output named {self.api.output!r} (has {names})")
        return _number(find(doc, "score"), "score")

    def score_of(self, content: bytes) -> float | None:
        """The score of a raw answer body, None when it is not there (the hot path)."""
        try:
            return self.score(json.loads(content))
        except (ValueError, TypeError, AttributeError):
            return None

    def region(self, headers: Mapping[str, Any] | None, content: bytes | None) -> str | None:
        """The region that served the answer, None when the answer does not say."""
        if self.answer.region_header and headers is not None:
            value = headers.get(self.answer.region_header)
            if value:
                return str(value)
        if self.answer.region_field and content:
            try:
                value = find(json.loads(content), self.answer.region_field)
            except (ValueError, TypeError):
                return None
            return str(value) if isinstance(value, str) and value else None
        return None

    def digest(self, headers: Mapping[str, Any] | None) -> str | None:
        """The model digest the answer carries, None without one."""
        if self.answer.digest_header and headers is not None:
            value = headers.get(self.answer.digest_header)
            return str(value) if value else None
        return None
