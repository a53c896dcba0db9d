"""A/B assignment: variant A = production, B = staging.

Rows with an applicant id are assigned by a hash of the id (the same applicant always lands on the same side while
the share is unchanged); rows without one by weighted random. No staging model means everything goes to A.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

VARIANT_A = "A"
VARIANT_B = "B"
_SCALE = float(2**64)


def sticky_fraction(applicant_id: str) -> float:
    """A stable, uniform number in [0, 1) for an applicant id."""
    digest = hashlib.sha256(applicant_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


class ABRouter:
    def __init__(self, staging_share: float, rng: random.Random | None = None):
        if not 0.0 <= staging_share <= 1.0:
            raise ValueError(f"staging share must be within [0, 1], got {staging_share}")
        self.staging_share = staging_share
        self._rng = rng or random.Random()

    def assign(self, applicant_ids: Sequence[str | None], staging_available: bool) -> list[str]:
        if not staging_available or self.staging_share == 0.0:
            return [VARIANT_A] * len(applicant_ids)
        return [
            VARIANT_B
            if (sticky_fraction(applicant) if applicant is not None else self._rng.random()) < self.staging_share
            else VARIANT_A
            for applicant in applicant_ids
        ]
