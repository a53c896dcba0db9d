"""Score points: the probability of default on a points-to-double-odds scale, and the decision bands named on it.

score = offset + factor · ln(good:bad odds), factor = PDO / ln 2, offset = base score − factor · ln(base odds): with the
defaults an applicant at 50:1 odds of repaying scores 600 and every 20 points double the odds. Higher is safer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.calibration import log_odds


@dataclass(frozen=True)
class Band:
    name: str
    min_score: float  # the band holds scores at or above this (and below the band above it)


@dataclass(frozen=True)
class ScoreScaling:
    base_score: float = 600.0
    base_odds: float = 50.0
    pdo: float = 20.0
    bands: tuple[Band, ...] = ()  # highest first; the last one's minimum is -inf

    def __post_init__(self) -> None:
        if not (self.base_odds > 0 and self.pdo > 0 and math.isfinite(self.base_score)):
            raise ValueError(
                f"score scaling needs base odds > 0 and PDO > 0, got base_odds={self.base_odds}, pdo={self.pdo}"
            )
        minimums = [band.min_score for band in self.bands]
        if minimums != sorted(minimums, reverse=True) or len(set(minimums)) != len(minimums):
            raise ValueError("score bands must be listed from the highest minimum score down, each minimum once")

    @property
    def factor(self) -> float:
        return self.pdo / math.log(2)

    @property
    def offset(self) -> float:
        return self.base_score - self.factor * math.log(self.base_odds)

    def points(self, probabilities: np.ndarray) -> np.ndarray:
        """Rounded points per probability of default (good:bad odds = (1 − p) / p, so −log-odds of default)."""
        scores: np.ndarray = np.rint(self.offset - self.factor * log_odds(probabilities))
        return scores

    def band_names(self, points: np.ndarray) -> list[str]:
        if not self.bands:
            return []
        minimums = np.array([band.min_score for band in self.bands])
        # Index of the first band whose minimum the score reaches; the last band takes everything below.
        reached = np.asarray(points)[:, None] >= minimums[None, :]
        index = np.where(reached.any(axis=1), reached.argmax(axis=1), len(self.bands) - 1)
        return [self.bands[i].name for i in index]

    def to_dict(self) -> dict[str, Any]:
        return {
            "base_score": self.base_score,
            "base_odds": self.base_odds,
            "pdo": self.pdo,
            # The last band's -inf as null: JSON has no infinity.
            "bands": [
                {"name": band.name, "min_score": band.min_score if math.isfinite(band.min_score) else None}
                for band in self.bands
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreScaling:
        bands = tuple(
            Band(str(b["name"]), -math.inf if b.get("min_score") is None else float(b["min_score"]))
            for b in data.get("bands") or ()
        )
        return cls(float(data["base_score"]), float(data["base_odds"]), float(data["pdo"]), bands)


def parse_bands(text: str) -> tuple[Band, ...]:
    """ "A:680,B:640,C:600,D" -> bands A (>= 680), B, C, then D for everything below 600; "" -> no bands."""
    entries = [entry.strip() for entry in text.split(",") if entry.strip()]
    bands = []
    for position, entry in enumerate(entries):
        name, _, minimum = entry.partition(":")
        name = name.strip()
        last = position == len(entries) - 1
        if not name or (not minimum.strip() and not last):
            raise ValueError(f"score band {entry!r}: write NAME:MIN_SCORE (only the last band may omit its minimum)")
        try:
            value = float(minimum) if minimum.strip() else -math.inf
        except ValueError:
            raise ValueError(f"score band {entry!r}: {minimum.strip()!r} is not a number") from None
        bands.append(Band(name, value))
    if bands and bands[-1].min_score != -math.inf:
        bands.append(Band("below " + bands[-1].name, -math.inf))
    return tuple(bands)
