"""A seeded uniform sample of bounded size over frames that arrive one page at a time (the stream is read in pages)."""

from __future__ import annotations

import numpy as np
import pandas as pd


class BoundedSample:
    """Keeps at most `size` rows, a uniform sample without replacement of every row added, in the order added.

    Each row gets a random key from a generator seeded with `seed`; the `size` rows with the smallest keys are kept
    (bottom-k sampling). The same rows added in the same order give the same sample, and memory never holds more than
    `size` rows plus one page.
    """

    def __init__(self, size: int, seed: int):
        if size < 1:
            raise ValueError(f"sample size must be at least 1, got {size}")
        self.size, self.seed = size, seed
        self.rows_seen = 0
        self._random = np.random.default_rng(seed)
        self._kept: pd.DataFrame | None = None
        self._keys = np.empty(0)
        self._largest_kept_key = 1.0

    def add(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        self.rows_seen += len(frame)
        keys = self._random.random(len(frame))  # one key per row seen, kept or not: the sample depends on the seed only
        if len(self._keys) >= self.size:
            # Full: only a row whose key is below the largest kept key can enter, so a page is merged only for the
            # few rows that do (merging every page into the whole sample made reading cost grow with the pages).
            entering = keys < self._largest_kept_key
            if not entering.any():
                return
            frame, keys = frame[entering], keys[entering]
        frame = frame.reset_index(drop=True)
        if self._kept is None:
            combined, combined_keys = frame, keys
        else:
            combined = pd.concat([self._kept, frame], ignore_index=True)
            combined_keys = np.concatenate([self._keys, keys])
        if len(combined) > self.size:
            chosen = np.sort(np.argpartition(combined_keys, self.size - 1)[: self.size])
            combined, combined_keys = combined.iloc[chosen].reset_index(drop=True), combined_keys[chosen]
        self._kept, self._keys = combined, combined_keys
        self._largest_kept_key = float(combined_keys.max())

    @property
    def sampled(self) -> bool:
        """Whether rows were left out."""
        return self.rows_seen > self.size

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame() if self._kept is None else self._kept
