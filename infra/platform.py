"""The platform file: what gameday drills, described once, read by every layer.

A platform file (YAML) names the jurisdictions and regions (any names, any number),
the fault driver (`local`, `kubernetes`, `aws` or `none`), how traffic reaches the
platform and what its answers look like, how writes are read back, where Prometheus is
and which counters give the Prometheus-side RTO, the golden canaries, the deployed
model, and what gameday may touch (`allow`). `infra/local/platform.yaml` describes the
reference platform; `infra/examples/` has a KServe one; docs/platforms.md walks
through every field.

`load_platform` validates it with pydantic (unknown fields are refused) and raises
`ConfigError` naming the file and the field, e.g.
`platform.yaml: traffic.api.score: ...`. The sections of the Kubernetes and AWS drivers
(`regions.<r>.kubernetes`, `regions.<r>.aws`, `allow.kubernetes`, `allow.aws`) are
opaque here and validated by `infra.<driver>.config.validate` when `driver` names it.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.errors import ConfigError
from infra.files import read_yaml

__all__ = [
    "DRIVERS",
    "AllowSpec",
    "AnswerSpec",
    "ApiSpec",
    "Canary",
    "Platform",
    "load_platform",
    "parse_platform",
]

DRIVERS = ("local", "kubernetes", "aws", "none")
Shape = Literal["reference", "oip-v2", "template"]
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JurisdictionSpec(_Strict):
    """A jurisdiction: the regions whose data must stay inside it."""

    regions: list[str] = Field(min_length=1)


class RegionSpec(_Strict):
    """One region; `kubernetes`/`aws` are the drivers' own sections (validated there)."""

    jurisdiction: str
    provider: str | None = None
    kubernetes: dict[str, Any] | None = None
    aws: dict[str, Any] | None = None


class ApiSpec(_Strict):
    """The inference API: how a prediction is asked and where its score is in the answer.

    - `reference`: `POST /v1/predict {"entity_id": ...}`, score at `score`;
    - `oip-v2`: the Open Inference Protocol v2 (KServe, Triton, MLServer):
      `POST /v2/models/{model}/infer` with one BYTES input named `input` holding the
      entity id; the score is `data[0]` of the output named `output`;
    - `template`: `method` `path` with `body` (any JSON; strings may hold
      `{entity_id}` and `{jurisdiction}`), the score at `score`.

    `score` is a JSON pointer (`/outputs/0/data/0`) or a dotted path (`result.score`);
    it overrides the shape's default.
    """

    shape: Shape = "reference"
    model: str | None = None
    input: str = "entity_id"
    output: str = "score"
    method: Literal["POST", "GET"] = "POST"
    path: str | None = None
    body: Any = None
    score: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> ApiSpec:
        if self.shape == "oip-v2" and not self.model:
            raise ValueError("shape oip-v2 needs `model` (the name in /v2/models/{model}/infer)")
        if self.shape == "template":
            if not self.path:
                raise ValueError("shape template needs `path` (e.g. /score)")
            if not self.score:
                raise ValueError(
                    "shape template needs `score`: where the answer holds the score "
                    "(a JSON pointer such as /result/score or a dotted path)"
                )
        for name in _PLACEHOLDER.findall(self.path or "") + _strings_placeholders(self.body):
            if name not in ("entity_id", "jurisdiction"):
                raise ValueError(
                    f"unknown placeholder {{{name}}} (known: {{entity_id}}, {{jurisdiction}})"
                )
        return self


def _strings_placeholders(value: Any) -> list[str]:
    if isinstance(value, str):
        return _PLACEHOLDER.findall(value)
    if isinstance(value, dict):
        return [n for v in value.values() for n in _strings_placeholders(v)]
    if isinstance(value, list):
        return [n for v in value for n in _strings_placeholders(v)]
    return []


class AnswerSpec(_Strict):
    """Where an answer names the region and the model that served it.

    `region_header` or `region_field` (a JSON pointer or dotted path in the body);
    without either, residency is `no-data`. `digest_header`: the model digest (without
    it the digest check is `no-data`; canaries still count).
    """

    region_header: str | None = "X-Region"
    region_field: str | None = None
    digest_header: str | None = "X-Model-Digest"


class EntitiesSpec(_Strict):
    """The entity ids predictions ask for: `template` with `{jurisdiction}` and `{n}`,
    n from 0 to `count - 1`."""

    template: str = "{jurisdiction}-{n}"
    count: int = Field(default=10_000, ge=1)

    @model_validator(mode="after")
    def _placeholders(self) -> EntitiesSpec:
        names = _PLACEHOLDER.findall(self.template)
        if "n" not in names or "jurisdiction" not in names:
            raise ValueError(
                f"template {self.template!r} needs both {{jurisdiction}} and {{n}}: the "
                "jurisdiction of an entity is read back from its id"
            )
        return self


class TrafficSpec(_Strict):
    """How requests reach the platform.

    `base_url`: the router; `urls`: per-jurisdiction base URLs that override it.
    `jurisdiction_header`: the header whose value names the request's jurisdiction
    (null when the URL alone says it).
    """

    base_url: str
    urls: dict[str, str] = Field(default_factory=dict)
    jurisdiction_header: str | None = "X-Residency"
    api: ApiSpec = Field(default_factory=ApiSpec)
    answer: AnswerSpec = Field(default_factory=AnswerSpec)
    entities: EntitiesSpec = Field(default_factory=EntitiesSpec)


class ReadBackSpec(_Strict):
    """How the RPO ledger reads writes back: exactly one of

    - `http`: a URL template with `{client}` and `{seq}` (relative to the write's base
      URL or absolute): 200 present, 404 absent, anything else an error;
    - `redis_sentinel: true`: the jurisdiction's current primary through Sentinel (the
      reference platform; addresses from the run's `world.json`).
    """

    http: str | None = None
    redis_sentinel: bool = False

    @model_validator(mode="after")
    def _one(self) -> ReadBackSpec:
        if (self.http is None) == (not self.redis_sentinel):
            raise ValueError("give exactly one of http or redis_sentinel: true")
        if self.http is not None:
            names = set(_PLACEHOLDER.findall(self.http))
            if names != {"client", "seq"}:
                raise ValueError(
                    f"http {self.http!r} must hold exactly the placeholders {{client}} and {{seq}}"
                )
        return self


class WritesSpec(_Strict):
    """Writes (`POST path` with `{client, seq, payload}`) and their read-back."""

    path: str = "/v1/events"
    readback: ReadBackSpec | None = None


class RouterCounters(_Strict):
    """The router's response counters for the Prometheus-side RTO: `metric` with a
    label `group_label` whose value is `group_prefix` + jurisdiction and a `code`
    label whose value is `success_code` for a success."""

    metric: str = "haproxy_backend_http_responses_total"
    group_label: str = "proxy"
    group_prefix: str = "jur_"
    success_code: str = "2xx"


class PrometheusSpec(_Strict):
    """The Prometheus that sees the router (global, federated, Thanos: any query API)."""

    url: str
    router: RouterCounters = Field(default_factory=RouterCounters)


class Canary(_Strict):
    """A golden entity and the score a correct model gives it."""

    entity_id: str
    jurisdiction: str
    score: float


class CanariesSpec(_Strict):
    """Golden canaries inline, or a JSON file `{entity_id: score}` (relative to the
    platform file)."""

    file: str | None = None
    entities: list[Canary] = Field(default_factory=list)


class ModelSpec(_Strict):
    """The model the platform deployed: `digest` is what every answer's digest header
    must equal (without it the digest check is `no-data`)."""

    name: str | None = None
    digest: str | None = None


class AllowSpec(_Strict):
    """What gameday may touch; anything else is refused before the first action."""

    hosts: list[str] = Field(default_factory=list)
    kubernetes: dict[str, Any] | None = None
    aws: dict[str, Any] | None = None


class Platform(_Strict):
    """A validated platform file (see the module docstring)."""

    version: Literal[1]
    name: str = Field(min_length=1)
    driver: Literal["local", "kubernetes", "aws", "none"]
    jurisdictions: dict[str, JurisdictionSpec] = Field(min_length=1)
    regions: dict[str, RegionSpec] = Field(min_length=1)
    traffic: TrafficSpec
    writes: WritesSpec | None = None
    prometheus: PrometheusSpec | None = None
    canaries: CanariesSpec = Field(default_factory=CanariesSpec)
    model: ModelSpec | None = None
    allow: AllowSpec = Field(default_factory=AllowSpec)

    @model_validator(mode="after")
    def _consistent(self) -> Platform:
        seen: dict[str, str] = {}
        for name, spec in self.jurisdictions.items():
            for region in spec.regions:
                if region in seen:
                    raise ValueError(
                        f"jurisdictions.{name}.regions: region {region!r} is already in "
                        f"jurisdiction {seen[region]!r}; a region belongs to exactly one"
                    )
                if region not in self.regions:
                    raise ValueError(
                        f"jurisdictions.{name}.regions: unknown region {region!r} "
                        f"(regions: {', '.join(self.regions)})"
                    )
                seen[region] = name
        for region, entry in self.regions.items():
            if region not in seen:
                raise ValueError(f"regions.{region}: not listed in any jurisdiction")
            if entry.jurisdiction != seen[region]:
                raise ValueError(
                    f"regions.{region}.jurisdiction: {entry.jurisdiction!r} but "
                    f"jurisdictions.{seen[region]} lists it"
                )
        for name in self.traffic.urls:
            if name not in self.jurisdictions:
                raise ValueError(f"traffic.urls.{name}: unknown jurisdiction {name!r}")
        for index, canary in enumerate(self.canaries.entities):
            if canary.jurisdiction not in self.jurisdictions:
                raise ValueError(
                    f"canaries.entities.{index}.jurisdiction: unknown jurisdiction "
                    f"{canary.jurisdiction!r}"
                )
        for where, url in self.urls_touched():
            if not allowed_host(url, self.allow.hosts):
                raise ValueError(
                    f"{where}: host of {url!r} is not in allow.hosts "
                    f"({', '.join(self.allow.hosts) or 'empty'})"
                )
        return self

    # ------------------------------------------------------------------ queries
    def urls_touched(self) -> list[tuple[str, str]]:
        """(field, URL) of every URL gameday sends requests to (load, probes, read-back)."""
        urls = [("traffic.base_url", self.traffic.base_url)]
        urls += [(f"traffic.urls.{j}", u) for j, u in self.traffic.urls.items()]
        if self.prometheus is not None:
            urls.append(("prometheus.url", self.prometheus.url))
        readback = self.writes.readback if self.writes else None
        if readback is not None and readback.http and urlsplit(readback.http).scheme:
            urls.append(("writes.readback.http", readback.http))
        return urls

    def jurisdiction_of(self, region: str) -> str | None:
        """The jurisdiction of `region`, None for a name the platform does not have."""
        spec = self.regions.get(region)
        return spec.jurisdiction if spec else None

    def region_jurisdictions(self) -> dict[str, str]:
        """Region name → jurisdiction."""
        return {name: spec.jurisdiction for name, spec in self.regions.items()}

    def url_for(self, jurisdiction: str) -> str:
        """The base URL requests of `jurisdiction` go to."""
        return self.traffic.urls.get(jurisdiction, self.traffic.base_url).rstrip("/")

    def entity(self, jurisdiction: str, n: int) -> str:
        """The id of entity number `n` of `jurisdiction`."""
        return self.traffic.entities.template.format(jurisdiction=jurisdiction, n=n)

    def entity_jurisdiction(self, entity_id: str) -> str | None:
        """The jurisdiction an entity id names (inline canaries first), else None."""
        for canary in self.canaries.entities:
            if canary.entity_id == entity_id:
                return canary.jurisdiction
        pattern = re.escape(self.traffic.entities.template)
        pattern = pattern.replace(re.escape("{jurisdiction}"), "(?P<j>.+?)")
        pattern = pattern.replace(re.escape("{n}"), r"\d+")
        match = re.fullmatch(pattern, entity_id)
        if match and match.group("j") in self.jurisdictions:
            return match.group("j")
        return None

    def readback_url(self, jurisdiction: str) -> str | None:
        """The HTTP read-back URL template for `jurisdiction`'s writes, None without one."""
        readback = self.writes.readback if self.writes else None
        if readback is None or readback.http is None:
            return None
        return urljoin(self.url_for(jurisdiction) + "/", readback.http.lstrip("/"))


def allowed_host(url: str, hosts: list[str]) -> bool:
    """Whether `url`'s host (or host:port) is in `hosts`."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port
    return host in hosts or (port is not None and f"{host}:{port}" in hosts)


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        given = error.get("input")
        shown = (
            ""
            if isinstance(given, dict | list) or error["type"] == "value_error"
            else (f" (got {given!r})")
        )
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        text = f"{message[:1].lower()}{message[1:]}{shown}"
        parts.append(f"{field}: {text}" if field else text)
    return "; ".join(parts)


def parse_platform(raw: Any, source: Path) -> Platform:
    """Validate an already-parsed platform document; `source` names it in errors.

    With `driver: kubernetes|aws`, the driver's own sections are validated by
    `infra.<driver>.config.validate(raw, source)` (imported only then).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping (a platform file), got {raw!r:.60}")
    try:
        platform = Platform.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from exc
    if platform.driver in ("kubernetes", "aws"):
        try:
            config = importlib.import_module(f"infra.{platform.driver}.config")
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"{source}: driver: {platform.driver!r} is not installed ({exc})"
            ) from exc
        config.validate(raw, source)
    return platform


def load_platform(path: Path) -> Platform:
    """Read and validate a platform file; raises ConfigError naming file and field."""
    return parse_platform(read_yaml(path, "platform file"), path)


def golden_scores(platform: Platform, source: Path) -> dict[str, float]:
    """The canaries' entity → score: the inline ones and those of `canaries.file`
    (relative to the platform file `source`). Raises ConfigError on a bad file."""
    import json

    scores = {c.entity_id: c.score for c in platform.canaries.entities}
    if platform.canaries.file:
        path = Path(platform.canaries.file)
        path = path if path.is_absolute() else source.parent / path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"{source}: canaries.file: cannot read {path}: {exc.strerror}"
            ) from exc
        except ValueError as exc:
            raise ConfigError(f"{source}: canaries.file: {path}: not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in data.values()
        ):
            raise ConfigError(
                f"{source}: canaries.file: {path}: expected an object of entity id to score"
            )
        scores.update({str(k): float(v) for k, v in data.items()})
    return scores
