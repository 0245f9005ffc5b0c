"""Errors raised by the platform layer; the CLI maps them to exit codes."""

from __future__ import annotations


class GamedayError(Exception):
    """Base of every error gameday raises on purpose."""


class ConfigError(GamedayError):
    """Bad input: a malformed file, an unknown name, a missing prerequisite (exit 2)."""


class MalformedInput(ConfigError, ValueError):
    """A run-directory file that cannot be read as its contract says (exit 2).

    The message names the file, the line (or column) and the field. A ValueError too,
    so that callers that guard a parse with `except ValueError` still see it.
    """


class WorldNotUp(ConfigError):
    """A command needs the local platform and none is running."""


class WorldBusy(ConfigError):
    """Another command holds the state folder's world lock (starting or stopping a world)."""


class PrerequisiteError(ConfigError):
    """A program, package or privilege the platform needs is missing."""


class FaultError(GamedayError):
    """A fault could not be applied or reverted."""


class UnsupportedFault(ConfigError):
    """The fault cannot be injected on this machine (e.g. the kernel lacks sch_netem)."""
