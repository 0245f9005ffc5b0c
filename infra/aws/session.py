"""What every aws op works with: the platform, credentials, where records and state go."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from infra.aws import config as aws_config
from infra.aws.config import AwsTarget
from infra.errors import ConfigError, FaultError
from infra.types import FaultRecord, JsonValue, append_event

STATE_FILE = "aws-state.json"

_NO_EVENTS = (
    "configuration gameday_events (or $GAMEDAY_EVENTS) is required for the aws driver: "
    "its revert state is kept next to the events file"
)

Config = dict[str, Any]
Secrets = dict[str, Any] | None


@dataclass(frozen=True)
class Session:
    """What one op works with: the platform, the configuration, where records go."""

    target: AwsTarget
    configuration: Config
    secrets: Secrets
    events: Path | None

    @property
    def events_file(self) -> Path:
        """The run's events file; ConfigError when the configuration names none."""
        if self.events is None:
            raise ConfigError(_NO_EVENTS)
        return self.events

    @property
    def state_path(self) -> Path:
        """`aws-state.json` next to the events file: what the active faults changed."""
        return self.events_file.parent / STATE_FILE

    def client(self, service: str, aws_region: str) -> Any:
        """A chaosaws client for one AWS region (chaosaws's region is experiment-wide)."""
        from chaosaws import aws_client

        return aws_client(service, self.per_region(aws_region), self.secrets)

    def per_region(self, aws_region: str) -> Config:
        return {**self.configuration, "aws_region": aws_region}


def open_session(
    configuration: Config, secrets: Secrets, *, events_required: bool = True
) -> Session:
    """Read the platform file the configuration names; ConfigError naming what is missing.

    `events_required=False` (a read-only plan) accepts a configuration without events.
    """
    raw_file = configuration.get("gameday_platform_file")
    if not raw_file:
        raise ConfigError(
            "configuration gameday_platform_file is required for gameday_platform aws"
        )
    target = aws_config.load(Path(str(raw_file)))
    events = configuration.get("gameday_events") or os.environ.get("GAMEDAY_EVENTS")
    if not events and events_required:
        raise ConfigError(_NO_EVENTS)
    return Session(target, configuration, secrets, Path(str(events)) if events else None)


def region_arg(run: Session, args: dict[str, Any], key: str = "region") -> str:
    """The platform region `args[key]` names; ConfigError when empty or without aws."""
    name = args.get(key)
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{key} is required: an action never targets everything")
    run.target.region(name.strip())
    return name.strip()


def identity(run: Session, aws_regions: list[str]) -> str:
    """Check the caller's account and the regions against `allow.aws`; the caller's ARN.

    Called before the first change of every op: another account or an unlisted region
    is refused here, so nothing is touched.
    """
    allow = run.target.allow
    for aws_region in aws_regions:
        if aws_region not in allow.regions:
            raise ConfigError(
                f"{run.target.source}: allow.aws.regions: {aws_region!r} is not listed "
                f"({', '.join(allow.regions)}); refusing to touch it"
            )
    identity = run.client("sts", aws_regions[0]).get_caller_identity()
    account = str(identity.get("Account", ""))
    if account != allow.account_id:
        raise ConfigError(
            f"{run.target.source}: allow.aws.account_id: the credentials act in account "
            f"{account!r}, not {allow.account_id!r}; refusing to touch it"
        )
    return str(identity.get("Arn", ""))


@contextmanager
def step(what: str) -> Iterator[None]:
    """Turn an AWS refusal into a FaultError naming the step."""
    from botocore.exceptions import BotoCoreError, ClientError
    from chaoslib.exceptions import ActivityFailed

    try:
        yield
    except (ClientError, BotoCoreError, ActivityFailed) as exc:
        raise FaultError(f"{what}: {exc}") from exc


@contextmanager
def described(run: Session, field: str) -> Iterator[None]:
    """Turn AWS's "not found" for a name the platform file gives into a ConfigError.

    The error names the file and `field` (`regions.us-east.aws.target_groups`); any other
    refusal of a describe call is a FaultError. Nothing has been changed at that point.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if "NotFound" in code or code.startswith("InvalidVpcID"):
            message = str(error.get("Message") or code)
            raise ConfigError(f"{run.target.source}: {field}: {message}") from exc
        raise FaultError(f"{field}: {exc}") from exc
    except BotoCoreError as exc:
        raise FaultError(f"{field}: {exc}") from exc


def record(run: Session, record: FaultRecord) -> dict[str, Any]:
    """Append `record` to the run's events file; the record as a dict."""
    append_event(run.events_file, record)
    return asdict(record)


def strs(values: list[str]) -> list[JsonValue]:
    """`values` typed as a JSON list (lists are invariant)."""
    return list(values)


def new_id() -> str:
    """A fresh fault or revert id, as the local platform makes them."""
    return uuid.uuid4().hex[:12]
