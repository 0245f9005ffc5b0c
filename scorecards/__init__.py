"""Scorecards: gates, evaluation, verdicts, rendering, evidence, history and the report.

Measurements arrive as the JSON documents `gameday measure` writes (no import of the
probes' code); a run directory is scored by `scorecards.scoring.score`, which writes
scorecard.json / .md / .html, junit.xml, PNG charts and manifest.json into it.
"""
