"""A/B assignment: sticky by applicant id, weighted random otherwise, all A without staging."""

from __future__ import annotations

import random

import pytest

from serving.router import VARIANT_A, VARIANT_B, ABRouter


def test_the_staging_share_holds_within_two_points_over_10000_ids() -> None:
    router = ABRouter(0.10)
    variants = router.assign([f"applicant-{i}" for i in range(10_000)], staging_available=True)
    share = variants.count(VARIANT_B) / len(variants)
    assert abs(share - 0.10) <= 0.02


def test_assignment_is_sticky_per_applicant() -> None:
    ids = [f"applicant-{i}" for i in range(500)]
    first = ABRouter(0.3).assign(ids, staging_available=True)
    again = ABRouter(0.3, rng=random.Random(99)).assign(ids, staging_available=True)
    assert first == again


def test_rows_without_an_id_are_weighted_random() -> None:
    variants = ABRouter(0.5, rng=random.Random(1)).assign([None] * 4000, staging_available=True)
    assert 0.45 < variants.count(VARIANT_B) / 4000 < 0.55


def test_no_staging_model_sends_everything_to_a() -> None:
    assert set(ABRouter(0.9).assign(["x", None, "y"], staging_available=False)) == {VARIANT_A}


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_share_out_of_range_is_refused(share: float) -> None:
    with pytest.raises(ValueError, match="staging share"):
        ABRouter(share)
