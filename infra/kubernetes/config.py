"""The Kubernetes sections of a platform file, validated into a frozen target config.

A region is a kube context and a namespace. The platform file says which pods belong
to the region (a non-empty label selector), which workloads a region kill scales to
zero, how to corrupt a replica in one pod, and, under `allow.kubernetes`, which
contexts, namespaces and API servers gameday may touch at all.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infra.errors import ConfigError
from infra.files import read_yaml

__all__ = [
    "KubernetesAllow",
    "KubernetesRegion",
    "KubernetesTarget",
    "ReplicaDamage",
    "load",
    "validate",
]

# RFC 1123 label (namespaces) and subdomain (object names), as the API server checks them.
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# A label key: optional DNS-subdomain prefix, then a name of at most 63 characters.
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")


def _selector(value: dict[str, str]) -> dict[str, str]:
    # An empty selector matches every pod of the namespace: chaostoolkit-kubernetes
    # then denies, scales or deletes everything. A fault always names its pods.
    if not value:
        raise ValueError("an empty selector would match every pod of the namespace")
    for key, label in value.items():
        if not _LABEL_KEY.match(key):
            raise ValueError(f"label key {key!r} is not a valid Kubernetes label key")
        if not _LABEL_VALUE.match(label):
            raise ValueError(f"label value {label!r} of {key!r} is not a valid label value")
    return value


def _names(values: list[str]) -> list[str]:
    for name in values:
        if not _SUBDOMAIN.match(name) or len(name) > 253:
            raise ValueError(f"{name!r} is not a valid Kubernetes object name")
    if len(set(values)) != len(values):
        raise ValueError(f"names are repeated: {values}")
    return values


class ReplicaDamage(BaseModel):
    """How to damage one replica (model copy or feature store) inside one pod.

    `command` runs in `container` of the first pod (by name) matching `selector`; the
    repair deletes that pod so its controller recreates it from clean sources.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    selector: dict[str, str]
    container: str
    command: list[str] = Field(min_length=1)

    @field_validator("selector")
    @classmethod
    def _check_selector(cls, value: dict[str, str]) -> dict[str, str]:
        return _selector(value)

    @field_validator("container")
    @classmethod
    def _container(cls, value: str) -> str:
        if not _LABEL.match(value):
            raise ValueError(f"{value!r} is not a valid container name")
        return value


class KubernetesRegion(BaseModel):
    """`regions.<name>.kubernetes`: where a region lives and what its faults touch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    context: str = Field(min_length=1)
    namespace: str
    selector: dict[str, str]
    deployments: list[str] = []
    statefulsets: list[str] = []
    cidrs: list[str] = []
    replicas: dict[Literal["model", "features"], ReplicaDamage] = {}

    @field_validator("selector")
    @classmethod
    def _check_selector(cls, value: dict[str, str]) -> dict[str, str]:
        return _selector(value)

    @field_validator("deployments", "statefulsets")
    @classmethod
    def _check_names(cls, value: list[str]) -> list[str]:
        return _names(value)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _LABEL.match(value):
            raise ValueError(f"{value!r} is not a valid namespace name (RFC 1123 label)")
        return value

    @field_validator("cidrs")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        for cidr in values:
            try:
                ipaddress.ip_network(cidr, strict=True)
            except ValueError as exc:
                raise ValueError(f"{cidr!r} is not a CIDR block: {exc}") from exc
        return values


class KubernetesAllow(BaseModel):
    """`allow.kubernetes`: the only contexts, namespaces and API servers that may be touched.

    `servers` is optional; when given, a context whose cluster server is not listed is
    refused before the first request (the contract tests list only 127.0.0.1).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    contexts: list[str] = Field(min_length=1)
    namespaces: list[str] = Field(min_length=1)
    servers: list[str] = []


class KubernetesTarget(BaseModel):
    """Every region's Kubernetes section and the allow-list, checked against each other."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str
    regions: dict[str, KubernetesRegion]
    jurisdictions: dict[str, str]
    allow: KubernetesAllow

    def region(self, name: str) -> KubernetesRegion:
        """The section of region `name`; ConfigError naming the known regions."""
        if name not in self.regions:
            known = ", ".join(sorted(self.regions))
            raise ConfigError(f"{self.source}: unknown region {name!r} (known: {known})")
        return self.regions[name]


def _where(source: str, prefix: str, exc: ValidationError) -> ConfigError:
    error = exc.errors()[0]
    path = ".".join(str(p) for p in (*prefix.split("."), *error["loc"]) if p != "")
    message = str(error["msg"]).removeprefix("Value error, ")
    return ConfigError(f"{source}: {path}: {message}")


def _mapping(value: Any, source: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {where}: expected a mapping, got {value!r}")
    return value


def validate(doc: dict[str, Any], source: Path) -> KubernetesTarget:
    """Validate the Kubernetes sections of a whole platform document.

    Reads `jurisdictions`, `regions.<r>.kubernetes` and `allow.kubernetes`; every other
    section belongs to someone else and is left alone. Every region needs a section,
    and its context and namespace must be in the allow-list. Raises ConfigError naming
    the file and the field.
    """
    name = source.name
    doc = _mapping(doc, name, "platform file")
    jurisdiction_of: dict[str, str] = {}
    for jurisdiction, spec in _mapping(
        doc.get("jurisdictions") or {}, name, "jurisdictions"
    ).items():
        for region in _mapping(spec, name, f"jurisdictions.{jurisdiction}").get("regions") or []:
            jurisdiction_of[str(region)] = str(jurisdiction)
    raw_regions = _mapping(doc.get("regions"), name, "regions")
    if not raw_regions:
        raise ConfigError(f"{name}: regions: at least one region is required")
    regions: dict[str, KubernetesRegion] = {}
    for region, spec in raw_regions.items():
        where = f"regions.{region}"
        section = _mapping(spec, name, where).get("kubernetes")
        if section is None:
            raise ConfigError(f"{name}: {where}.kubernetes: required for driver 'kubernetes'")
        try:
            regions[str(region)] = KubernetesRegion.model_validate(section)
        except ValidationError as exc:
            raise _where(name, f"{where}.kubernetes", exc) from exc
    allow_section = _mapping(doc.get("allow") or {}, name, "allow").get("kubernetes")
    if allow_section is None:
        raise ConfigError(
            f"{name}: allow.kubernetes: required: the contexts and namespaces that may be touched"
        )
    try:
        allow = KubernetesAllow.model_validate(allow_section)
    except ValidationError as exc:
        raise _where(name, "allow.kubernetes", exc) from exc
    _check_allowed(name, regions, allow)
    return KubernetesTarget(
        source=name, regions=regions, jurisdictions=jurisdiction_of, allow=allow
    )


def _check_allowed(name: str, regions: dict[str, KubernetesRegion], allow: KubernetesAllow) -> None:
    seen: dict[tuple[str, str], str] = {}
    for region, section in regions.items():
        where = f"regions.{region}.kubernetes"
        if section.context not in allow.contexts:
            raise ConfigError(
                f"{name}: {where}.context: {section.context!r} is not in "
                f"allow.kubernetes.contexts ({', '.join(allow.contexts)})"
            )
        if section.namespace not in allow.namespaces:
            raise ConfigError(
                f"{name}: {where}.namespace: {section.namespace!r} is not in "
                f"allow.kubernetes.namespaces ({', '.join(allow.namespaces)})"
            )
        place = (section.context, section.namespace)
        if place in seen:
            # Two regions in one namespace would share the deny-all policies: killing
            # one would kill both.
            raise ConfigError(
                f"{name}: {where}.namespace: {section.namespace!r} in context "
                f"{section.context!r} is already region {seen[place]!r}'s"
            )
        seen[place] = region


def load(path: Path) -> KubernetesTarget:
    """Read a platform file and validate its Kubernetes sections (see `validate`)."""
    doc = read_yaml(path, "platform file")
    driver = doc.get("driver") if isinstance(doc, dict) else None
    if driver != "kubernetes":
        raise ConfigError(f"{path.name}: driver: {driver!r} is not 'kubernetes'")
    return validate(doc, path)
