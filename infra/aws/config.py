"""The `aws` sections of a platform file: what each region is on AWS, what may be touched.

The platform file (see docs/platform.md) carries, for the aws driver::

    driver: aws
    regions:
      us-east:
        jurisdiction: us
        aws:
          region: us-east-1            # the AWS region the platform region lives in
          vpc_id: vpc-0abc...          # its VPC: blackhole ACL and partition CIDR
          tags: {gameday-region: us-east}   # selects its subnets and instances (all must match)
          target_groups: [shop-us-east]     # ALB/NLB target groups its instances serve
          auto_scaling_groups: [shop-us-east]
          db_clusters: [shop-us]            # Aurora clusters a failover drill may fail over
    allow:
      aws:
        account_id: "123456789012"     # the only account the drill may act in
        regions: [us-east-1, us-west-2]

Only `driver`, `regions.<r>.aws` and `allow.aws` are read; every other section belongs to
other parts of gameday and is left alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from infra.errors import ConfigError
from infra.files import read_yaml

__all__ = ["AwsAllow", "AwsRegion", "AwsTarget", "load", "validate"]

_ACCOUNT = re.compile(r"^\d{12}$")
_VPC = re.compile(r"^vpc-[0-9a-f]+$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")


class AwsRegion(BaseModel):
    """One platform region on AWS; `tags` must select at least one key (never everything)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: str
    vpc_id: str
    tags: dict[str, str]
    target_groups: tuple[str, ...] = ()
    auto_scaling_groups: tuple[str, ...] = ()
    db_clusters: tuple[str, ...] = ()

    @field_validator("region")
    @classmethod
    def _aws_region(cls, value: str) -> str:
        if not _AWS_REGION.match(value):
            raise ValueError(f"{value!r} is not an AWS region name (like 'us-east-1')")
        return value

    @field_validator("vpc_id")
    @classmethod
    def _vpc(cls, value: str) -> str:
        if not _VPC.match(value):
            raise ValueError(f"{value!r} is not a VPC id (like 'vpc-0abc1234')")
        return value

    @field_validator("tags")
    @classmethod
    def _some_tag(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("an empty filter would select every subnet and instance")
        if any(not k.strip() or not v.strip() for k, v in value.items()):
            raise ValueError("tag keys and values must be non-empty")
        return value

    def filters(self) -> list[dict[str, Any]]:
        """EC2 describe filters selecting this region's resources: its VPC and every tag."""
        found: list[dict[str, Any]] = [{"Name": "vpc-id", "Values": [self.vpc_id]}]
        found += [{"Name": f"tag:{k}", "Values": [v]} for k, v in sorted(self.tags.items())]
        return found


class AwsAllow(BaseModel):
    """What the drill may touch: one account, the listed regions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_id: str
    regions: tuple[str, ...]

    @field_validator("regions")
    @classmethod
    def _some_region(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one AWS region the drill may touch is required")
        return value

    @field_validator("account_id", mode="before")
    @classmethod
    def _account(cls, value: Any) -> str:
        text = str(value) if isinstance(value, int | str) else ""
        # YAML reads an unquoted account id as an int and drops its leading zeros.
        text = text.zfill(12) if isinstance(value, int) else text
        if not _ACCOUNT.match(text):
            raise ValueError(f"{value!r} is not a 12-digit AWS account id")
        return text


class AwsTarget(BaseModel):
    """The validated aws view of a platform file."""

    model_config = ConfigDict(frozen=True)

    source: Path
    regions: dict[str, AwsRegion]
    allow: AwsAllow

    def region(self, name: str) -> AwsRegion:
        """The aws section of platform region `name`; ConfigError naming the known ones."""
        if name not in self.regions:
            known = ", ".join(sorted(self.regions)) or "none"
            raise ConfigError(
                f"{self.source}: regions: no region {name!r} with an aws section (known: {known})"
            )
        return self.regions[name]


def _where(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _message(exc: ValidationError) -> tuple[tuple[int | str, ...], str]:
    error = exc.errors()[0]
    msg = str(error["msg"]).removeprefix("Value error, ")
    return tuple(error["loc"]), msg[:1].lower() + msg[1:]


def _section(doc: dict[str, Any], path: tuple[str, ...], source: Path) -> Any:
    value: Any = doc
    for depth, key in enumerate(path):
        if not isinstance(value, dict):
            where = ".".join(path[:depth]) or "document"
            raise ConfigError(f"{source}: {where}: expected a mapping, got {value!r}")
        value = value.get(key)
    return value


def validate(doc: dict[str, Any], source: Path) -> AwsTarget:
    """Validate the aws sections of a whole platform document.

    Refuses (ConfigError naming file and field) a driver other than `aws`, a missing
    `allow.aws`, a region section naming an AWS region `allow.aws.regions` does not list,
    and an empty tag filter. Sections of other drivers and parts are not looked at.
    """
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    driver = doc.get("driver")
    if driver != "aws":
        raise ConfigError(f"{source}: driver: {driver!r} is not 'aws'")
    raw_allow = _section(doc, ("allow", "aws"), source)
    if raw_allow is None:
        raise ConfigError(
            f"{source}: allow.aws: required (the account_id and regions the drill may touch)"
        )
    try:
        allow = AwsAllow.model_validate(raw_allow)
    except ValidationError as exc:
        loc, msg = _message(exc)
        raise ConfigError(f"{source}: {_where(('allow', 'aws', *loc))}: {msg}") from exc
    raw_regions = doc.get("regions") or {}
    if not isinstance(raw_regions, dict):
        raise ConfigError(f"{source}: regions: expected a mapping of region names")
    regions: dict[str, AwsRegion] = {}
    for name, entry in raw_regions.items():
        section = entry.get("aws") if isinstance(entry, dict) else None
        if section is None:
            continue
        try:
            regions[str(name)] = AwsRegion.model_validate(section)
        except ValidationError as exc:
            loc, msg = _message(exc)
            where = _where(("regions", str(name), "aws", *loc))
            raise ConfigError(f"{source}: {where}: {msg}") from exc
        aws_region = regions[str(name)].region
        if aws_region not in allow.regions:
            raise ConfigError(
                f"{source}: regions.{name}.aws.region: {aws_region!r} is not in "
                f"allow.aws.regions ({', '.join(allow.regions)})"
            )
    if not regions:
        raise ConfigError(f"{source}: regions: no region has an aws section")
    return AwsTarget(source=source, regions=regions, allow=allow)


def load(path: Path) -> AwsTarget:
    """Read a platform file and validate its aws sections (see `validate`)."""
    return validate(read_yaml(path, "platform file"), path)
