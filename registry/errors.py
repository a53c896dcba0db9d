"""Registry failures with messages meant for a person: the CLI prints them as one line."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.gate import GateReport


class RegistryError(Exception):
    """Unknown model, version or alias, an unreachable server, nothing to roll back to, ..."""


class GateRefusedError(RegistryError):
    """The gate refused the candidate; nothing was moved."""

    def __init__(self, report: GateReport):
        failed = ", ".join(f"{c.name} ({c.detail})" for c in report.failed_checks)
        super().__init__(f"gate refused version {report.candidate_version}: {failed}")
        self.report = report
