"""What a model input value may be, whichever way rows arrive (the gateway's JSON rows, the portfolio job's Arrow
columns): one statement of the request contract, so a row the gateway refuses is a row the batch job rejects.

- A numeric feature is a finite number within float32's range (the graph takes float32: beyond it the model would
  see infinity); missing (null, NaN) is allowed and imputed inside the graph.
- A categorical feature is text; where every category seen in training is an integer code (EDUCATION "1".."6"),
  an integer is taken as its code, as `prepare` labels them. Missing is allowed: `MISSING_CATEGORY` inside the graph.
"""

from __future__ import annotations

import numpy as np

FLOAT32_MAX = float(np.finfo(np.float32).max)
OUT_OF_RANGE = f"out of range: the model takes numbers up to ±{FLOAT32_MAX:.3g}"
NOT_FINITE = "must be finite"
EXPECTED_NUMBER = "expected a number"
EXPECTED_TEXT = "expected a string"
EXPECTED_TEXT_OR_CODE = "expected a string or an integer code"


def integer_coded(categories: list[str]) -> bool:
    """Whether a categorical feature's known categories are all integer codes (then an integer is its code)."""
    return bool(categories) and all(category.lstrip("-").isdigit() for category in categories)
