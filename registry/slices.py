"""Fairness slices as configured: which columns, cut how, and which gaps the gate may bound. Plain Python (the
settings of every package import it; the computation with pandas and fairlearn is `registry.fairness`)."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SLICES = "Age:25/35/50/65,Marital"
MIN_GROUP_ROWS = 30
# metric column -> the gate setting that bounds its gap
GAP_METRICS = {
    "approval_rate": "max_approval_rate_gap",
    "roc_auc": "max_auc_gap",
    "default_rate_approved": "max_default_rate_approved_gap",
    "calibration_bias": "max_calibration_bias_gap",
}


@dataclass(frozen=True)
class SliceSpec:
    column: str
    edges: tuple[float, ...] = ()  # numbers: band edges; empty: the column's values are the groups

    def describe(self) -> str:
        return f"{self.column}:{'/'.join(f'{e:g}' for e in self.edges)}" if self.edges else self.column


def parse_slices(text: str) -> list[SliceSpec]:
    """ "Age:25/35/50/65,Marital" -> Age cut into <25, 25-34, 35-49, 50-64, 65+ and Marital as it is."""
    specs = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        column, _, edges = entry.partition(":")
        try:
            values = tuple(float(edge) for edge in edges.split("/") if edge.strip())
        except ValueError:
            raise ValueError(f"fairness slice {entry!r}: band edges must be numbers like Age:25/35/50") from None
        if list(values) != sorted(set(values)):
            raise ValueError(f"fairness slice {entry!r}: band edges must increase")
        specs.append(SliceSpec(column.strip(), values))
    return specs
