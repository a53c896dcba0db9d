"""The bulk histogram update gives exactly what one observe() per value gives, and refuses a changed library."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from serving.metrics import PROBABILITY_BUCKETS, BulkObserver


def histogram_samples(update) -> dict[str, float]:
    registry = CollectorRegistry()
    histogram = Histogram("p", "probability", ["variant"], buckets=PROBABILITY_BUCKETS, registry=registry)
    update(histogram.labels(variant="A"))
    lines = generate_latest(registry).decode().splitlines()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("p_")
            and "_created" not in line}  # fmt: skip


def test_bulk_observe_matches_one_observe_per_value() -> None:
    values = np.concatenate([np.random.default_rng(0).random(1000), PROBABILITY_BUCKETS, [0.0, 1.0]])  # bounds too

    def one_by_one(child) -> None:
        for value in values:
            child.observe(float(value))

    bulk, reference = (
        histogram_samples(lambda child: BulkObserver(child).observe(values)),
        histogram_samples(one_by_one),
    )
    total = 'p_sum{variant="A"}'
    assert bulk.pop(total) == pytest.approx(reference.pop(total), rel=1e-12)  # summation order differs
    assert bulk == reference and reference['p_count{variant="A"}'] == len(values)
    assert histogram_samples(lambda child: BulkObserver(child).observe(values[:3]))['p_count{variant="A"}'] == 3


def test_the_observer_fails_loudly_when_the_histogram_internals_are_not_there() -> None:
    class Renamed:  # what a prometheus_client release that renamed the per-bucket counters would hand over
        _upper_bounds = [0.5, float("inf")]

    with pytest.raises(RuntimeError, match="no longer keeps _buckets"):
        BulkObserver(Renamed())  # type: ignore[arg-type]
