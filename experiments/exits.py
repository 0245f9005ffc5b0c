"""Exit codes of the `gameday` command line, and the one place exceptions become them.

0 pass, 1 fail (or an operation that failed), 2 usage or configuration error,
3 inconclusive. Its own module so that every command module can use it without
importing the composition root (`experiments.cli` imports the command modules).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from infra.errors import ConfigError, GamedayError

__all__ = [
    "EXIT_FAIL",
    "EXIT_INCONCLUSIVE",
    "EXIT_PASS",
    "EXIT_USAGE",
    "errors_to_exit_codes",
    "fail",
]

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_INCONCLUSIVE = 0, 1, 2, 3
F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int) -> None:
    """One line on stderr, then exit with `code`."""
    click.echo(f"gameday: error: {message}", err=True)
    sys.exit(code)


def errors_to_exit_codes(func: F) -> F:
    """Map gameday's exceptions to one clear line on stderr and the exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc), EXIT_USAGE)
        except GamedayError as exc:
            fail(str(exc), EXIT_FAIL)
        return None

    return wrapper  # type: ignore[return-value]
