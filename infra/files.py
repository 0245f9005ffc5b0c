"""Reading the YAML files gameday is configured with, with errors that name the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from infra.errors import ConfigError


def read_yaml(path: Path, what: str, error: type[Exception] = ConfigError) -> Any:
    """The parsed document of the YAML file `path` (any YAML value; callers check its shape).

    Raises `error` (ConfigError unless given) as "PATH: cannot read WHAT: reason" or
    "PATH: not valid YAML: detail".
    """
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
