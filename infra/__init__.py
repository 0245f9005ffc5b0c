"""Platforms under test and everything that changes them (faults, actions)."""
