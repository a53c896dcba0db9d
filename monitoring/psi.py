"""The population stability index as credit risk teams compute it: bins from the reference's deciles for numbers,
category shares for categories, missing values in a bin of their own, a small floor for empty bins."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

MISSING_BIN = "(missing)"
# A bin empty on one side would make ln(current / reference) infinite; 0.0001 is the floor most scorecard teams use.
EMPTY_BIN_FLOOR = 1e-4
DECILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class DecileBins:
    """Right-closed bins (-inf, q1], (q1, q2], ..., (q9, inf) cut at the reference's distinct deciles.

    A column with few distinct values (loan terms of 12/24/36/48/60 months) has repeated deciles and so fewer bins.
    """

    edges: tuple[float, ...]

    @classmethod
    def of(cls, reference: pd.Series | np.ndarray) -> DecileBins:
        values = np.asarray(reference, dtype=np.float64)
        values = values[~np.isnan(values)]
        if values.size == 0:
            return cls(())
        # inverted_cdf: each edge is a value the reference holds, so discrete columns get clean cuts.
        return cls(tuple(float(edge) for edge in np.unique(np.quantile(values, DECILES, method="inverted_cdf"))))

    @cached_property  # counted a batch at a time by the portfolio job: named once
    def names(self) -> list[str]:
        bounds = [-np.inf, *self.edges, np.inf]
        return [
            f"{i + 1:02d} ({low:.6g}, {high:.6g}]"
            for i, (low, high) in enumerate(zip(bounds, bounds[1:], strict=False))
        ]

    def assign(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """Each value's bin name (object array); NaN goes to MISSING_BIN."""
        numbers = np.asarray(values, dtype=np.float64)
        # side="left": the first edge >= value, so a value equal to an edge falls in the bin that edge closes.
        index = np.searchsorted(np.asarray(self.edges, dtype=np.float64), numbers, side="left")
        named = np.asarray(self.names, dtype=object)[index]
        named[np.isnan(numbers)] = MISSING_BIN
        return named

    def counts(self, values: np.ndarray) -> Counter[str]:
        """How many values fall in each bin (as `assign` names them), without naming every value: what a population
        too large to hold is counted with, a batch at a time."""
        numbers = np.asarray(values, dtype=np.float64)
        missing = np.isnan(numbers)
        present = numbers[~missing] if missing.any() else numbers
        # Values above each edge (one vectorised count per edge: faster than searchsorted for <= 9 edges); bin i
        # holds those above edge i-1 but not above edge i, as `assign`'s right-closed bins.
        above = [present.size, *(int(np.count_nonzero(present > edge)) for edge in self.edges), 0]
        counted = Counter(
            {name: above[i] - above[i + 1] for i, name in enumerate(self.names) if above[i] - above[i + 1]}
        )
        if missing.any():
            counted[MISSING_BIN] = int(missing.sum())
        return counted


def category_bins(values: pd.Series | Sequence[object]) -> np.ndarray:
    """Categories as their own bins; None, NaN and the empty string (the model's missing marker) go to MISSING_BIN."""
    series = pd.Series(values, dtype=object)
    missing = series.isna() | (series == "")
    named: np.ndarray = series.astype(str).where(~missing, MISSING_BIN).to_numpy(dtype=object)
    return named


def category_counts(value_counts: Mapping[Any, int]) -> Counter[str]:
    """Counts per distinct value -> counts per PSI bin, by `category_bins`' rule (missing values together)."""
    values = list(value_counts)
    counted: Counter[str] = Counter()
    for name, value in zip(category_bins(values), values, strict=True):
        counted[str(name)] += int(value_counts[value])
    return counted


def psi_of_counts(
    reference_counts: Mapping[str, float], current_counts: Mapping[str, float], floor: float = EMPTY_BIN_FLOOR
) -> float:
    """PSI from how many values each side has per bin: the formula of `psi_of_bins`, for populations counted a batch
    at a time (the portfolio job) rather than held whole."""
    reference = pd.Series(reference_counts, dtype=np.float64)
    current = pd.Series(current_counts, dtype=np.float64)
    if reference.sum() <= 0 or current.sum() <= 0:
        raise ValueError("PSI needs at least one value on each side")
    return _psi_of_shares(reference / reference.sum(), current / current.sum(), floor)


def _psi_of_shares(reference: pd.Series, current: pd.Series, floor: float) -> float:
    every_bin = reference.index.union(current.index)
    expected = reference.reindex(every_bin, fill_value=0.0).to_numpy(dtype=np.float64).clip(min=floor)
    actual = current.reindex(every_bin, fill_value=0.0).to_numpy(dtype=np.float64).clip(min=floor)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def psi_of_bins(
    reference_bins: Sequence[object] | np.ndarray,
    current_bins: Sequence[object] | np.ndarray,
    floor: float = EMPTY_BIN_FLOOR,
) -> float:
    """PSI = sum over bins of (current share - reference share) * ln(current share / reference share).

    Shares below `floor` (a category only one side has) are raised to it, without renormalising: the usual
    convention, and the one docs/monitoring.md states.
    """
    reference = pd.Series(np.asarray(reference_bins, dtype=object)).value_counts(normalize=True)
    current = pd.Series(np.asarray(current_bins, dtype=object)).value_counts(normalize=True)
    if reference.empty or current.empty:
        raise ValueError("PSI needs at least one value on each side")
    return _psi_of_shares(reference, current, floor)


def bin_pair(reference: pd.Series, current: pd.Series, numeric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both samples' PSI bins, cut on the reference: its deciles if `numeric`, else the categories (missing values in
    a bin of their own either way). What the report's `credit_psi` test and `population_stability_index` compare."""
    if numeric:
        bins = DecileBins.of(reference)
        return bins.assign(reference), bins.assign(current)
    return category_bins(reference), category_bins(current)


def population_stability_index(
    reference: pd.Series, current: pd.Series, numeric: bool, floor: float = EMPTY_BIN_FLOOR
) -> float:
    """Credit PSI of one column."""
    return psi_of_bins(*bin_pair(reference, current, numeric), floor)


def reading(psi: float, watch: float, act: float) -> str:
    """`stable` below `watch`, `watch` up to `act`, `act` above it."""
    if psi > act:
        return "act"
    if psi >= watch:
        return "watch"
    return "stable"
