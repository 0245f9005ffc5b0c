"""Errors the load generator raises; the CLI maps them to exit codes."""

from __future__ import annotations

__all__ = ["LoadConfigError", "LoadRunError"]


class LoadConfigError(ValueError):
    """Bad input found before any load was sent: a malformed profile, an unreachable host,
    users or duration not positive (the CLI exits 2)."""


class LoadRunError(RuntimeError):
    """Locust itself failed during a run (bad exit code, no answer in time); the message
    quotes the end of its log (the CLI exits 1)."""
