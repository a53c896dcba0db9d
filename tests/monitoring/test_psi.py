"""Credit PSI against values computed by hand: decile bins, categories, missing as a bin, the floor, the reading."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from monitoring.psi import MISSING_BIN, DecileBins, category_bins, population_stability_index, psi_of_bins, reading


def test_reference_deciles_cut_one_to_ten_into_ten_right_closed_bins_at_its_own_values() -> None:
    bins = DecileBins.of(pd.Series(range(1, 11), dtype=float))
    assert bins.edges == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)  # each edge a value of the reference
    assert list(bins.assign(np.array([1.0, 1.5, 2.0, 10.0, np.nan]))) == [
        bins.names[0], bins.names[1], bins.names[1], bins.names[9], MISSING_BIN,
    ]  # fmt: skip
    assert bins.names[0] == "01 (-inf, 1]" and bins.names[-1] == "10 (9, inf]"


def test_repeated_deciles_give_fewer_bins() -> None:
    terms = pd.Series([12, 24, 36, 48, 60] * 20, dtype=float)
    assert DecileBins.of(terms).edges == (12.0, 24.0, 36.0, 48.0, 60.0)  # six bins, the last one empty


def test_numeric_psi_by_hand() -> None:
    # Reference 1..10: one value per decile bin, 0.1 each. Current: five 1s, then 2..6: bin 1 holds 0.5, bins 2-6
    # 0.1 each, bins 7-10 nothing (floored at 0.0001):
    # (0.5 - 0.1) ln(0.5 / 0.1) + 4 (0.0001 - 0.1) ln(0.0001 / 0.1) = 0.643775 + 2.760339 = 3.404114
    reference = pd.Series(range(1, 11), dtype=float)
    current = pd.Series([1, 1, 1, 1, 1, 2, 3, 4, 5, 6], dtype=float)
    assert population_stability_index(reference, current, numeric=True) == pytest.approx(3.404114, abs=1e-6)


def test_numeric_missing_values_are_a_bin_of_their_own() -> None:
    # Reference 1..9 and one missing: 0.1 in each of nine decile bins and in the missing bin (the bin above 9 is
    # empty on both sides: 0). Current has no missing value
    # and two 1s: (0.2 - 0.1) ln 2 + (0.0001 - 0.1) ln(0.0001 / 0.1) = 0.069315 + 0.690085 = 0.759399
    reference = pd.Series([*range(1, 10), np.nan], dtype=float)
    current = pd.Series([1, 1, 2, 3, 4, 5, 6, 7, 8, 9], dtype=float)
    assert population_stability_index(reference, current, numeric=True) == pytest.approx(0.759399, abs=1e-6)


def test_categorical_psi_by_hand_with_a_new_category_and_missing_values() -> None:
    # Reference: owner 0.5, rent 0.3, missing 0.2 (None and "" alike). Current: owner 0.4, rent 0.3, a new category
    # 0.3, no missing value:
    # (0.4-0.5) ln(0.4/0.5) + 0 + (0.3-0.0001) ln(0.3/0.0001) + (0.0001-0.2) ln(0.0001/0.2)
    # = 0.022314 + 2.401110 + 1.519420 = 3.942844
    reference = pd.Series(["owner"] * 5 + ["rent"] * 3 + [None, ""], dtype=object)
    current = pd.Series(["owner"] * 4 + ["rent"] * 3 + ["caravan"] * 3, dtype=object)
    assert population_stability_index(reference, current, numeric=False) == pytest.approx(3.942844, abs=1e-6)
    assert list(category_bins(["a", "", None, np.nan])) == ["a", MISSING_BIN, MISSING_BIN, MISSING_BIN]


def test_same_distribution_is_zero_and_a_small_shift_is_small() -> None:
    assert psi_of_bins(["a", "b", "b"], ["b", "a", "b"]) == 0.0
    # (0.6 - 0.5) ln(0.6/0.5) + (0.4 - 0.5) ln(0.4/0.5) = 0.018232 + 0.022314 = 0.040546
    assert psi_of_bins(["a", "b"] * 5, ["a"] * 6 + ["b"] * 4) == pytest.approx(0.040546, abs=1e-6)
    assert math.isfinite(psi_of_bins(["a"], ["b"]))


def test_psi_needs_values_on_both_sides() -> None:
    with pytest.raises(ValueError, match="at least one value"):
        psi_of_bins([], ["a"])


@pytest.mark.parametrize(
    ("psi", "expected"), [(0.0, "stable"), (0.0999, "stable"), (0.10, "watch"), (0.25, "watch"), (0.2501, "act")]
)
def test_the_usual_reading(psi: float, expected: str) -> None:
    assert reading(psi, watch=0.10, act=0.25) == expected
