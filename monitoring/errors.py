"""Drift-job failures meant for a person (a bad file, columns that do not match, an unknown version): one line."""

from __future__ import annotations


class MonitoringInputError(Exception):
    """A user mistake or a lineage the job cannot follow; the CLI prints it as `error: ...` and exits with 2."""
