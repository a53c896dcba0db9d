"""The bounded seeded sample the stream is read into."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monitoring.sampling import BoundedSample


def pages(rows: int, page: int) -> list[pd.DataFrame]:
    return [pd.DataFrame({"row": np.arange(start, min(start + page, rows))}) for start in range(0, rows, page)]


def test_keeps_everything_up_to_the_size_in_order() -> None:
    sample = BoundedSample(size=100, seed=1)
    for frame in pages(80, 30):
        sample.add(frame)
    assert sample.frame()["row"].tolist() == list(range(80)) and sample.rows_seen == 80 and not sample.sampled


def test_beyond_the_size_keeps_a_seeded_sample_whatever_the_paging() -> None:
    samples = []
    for page in (7, 250, 10_000):
        sample = BoundedSample(size=500, seed=7)
        for frame in pages(10_000, page):
            sample.add(frame)
        samples.append(sample.frame()["row"].tolist())
        assert sample.rows_seen == 10_000 and sample.sampled
    assert samples[0] == samples[1] == samples[2]
    assert len(samples[0]) == 500 and samples[0] == sorted(samples[0]) and len(set(samples[0])) == 500
    other_seed = BoundedSample(size=500, seed=8)
    other_seed.add(pages(10_000, 10_000)[0])
    assert other_seed.frame()["row"].tolist() != samples[0]


def test_the_sample_is_uniform_over_the_pages() -> None:
    sample = BoundedSample(size=4000, seed=3)
    for frame in pages(40_000, 1000):
        sample.add(frame)
    per_quarter = np.bincount(sample.frame()["row"].to_numpy() // 10_000)
    assert all(900 < count < 1100 for count in per_quarter), per_quarter
