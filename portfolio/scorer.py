"""Scoring one Arrow batch with a registered version, as every engine does it: feeds from Arrow, one ONNX Runtime
call, the decision at the version's threshold, the output and rejected rows as Arrow batches, and the statistics the
MLflow run reports (rows, rejects by reason, the score histogram, PSI bin counts) counted as it goes.

Engines differ only in how batches reach `BatchScorer.score` and where its output goes: the local engine streams
files on one machine, the Spark engine runs the same scorer inside `mapInArrow` on each executor.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa

from monitoring.psi import DecileBins, category_counts
from portfolio.features import ArrowFeatures, EncodedBatch
from scoring.contract import SCORE_COLUMN
from scoring.onnx_runtime import decisions, predict_default_probability
from scoring.schema import FeatureSchema

DECISION_COLUMN = "predicted_default"
REASON_COLUMN = "reason"
VALUE_COLUMN = "value"
HISTOGRAM_BINS = 50  # of the score over [0, 1]: the distribution plot's bars
# Output columns with few distinct values, the only ones worth Parquet's dictionary encoding: trying it on unique ids
# and probabilities made writing the output ~50% slower and the files ~30% larger (docs/benchmarks.md).
LOW_CARDINALITY_COLUMNS = (
    DECISION_COLUMN, "decision_threshold", "model_name", "model_version", "model_precision", "scored_at", REASON_COLUMN,
)  # fmt: skip


@dataclass(frozen=True)
class ScoringModel:
    """What the output names of the version that scored it (every output row carries it)."""

    name: str
    version: str
    precision: str
    decision_threshold: float
    schema: FeatureSchema


def output_schema(id_fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(
        [
            *id_fields,
            pa.field(SCORE_COLUMN, pa.float64()),
            pa.field(DECISION_COLUMN, pa.bool_()),
            pa.field("decision_threshold", pa.float64()),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("model_precision", pa.string()),
            pa.field("scored_at", pa.timestamp("ms", tz="UTC")),
        ]
    )


def rejected_schema(id_fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(
        [
            *id_fields,
            pa.field(REASON_COLUMN, pa.string()),
            pa.field(VALUE_COLUMN, pa.string()),
            pa.field("model_name", pa.string()),
            pa.field("model_version", pa.string()),
            pa.field("scored_at", pa.timestamp("ms", tz="UTC")),
        ]
    )


@dataclass(frozen=True)
class PopulationBins:
    """The PSI bins of the version's training reference: deciles of the score and of each numeric feature, the
    categories of the others (monitoring.psi's rules), with the reference's own counts per bin."""

    score: DecileBins
    numeric: dict[str, DecileBins]
    reference_counts: dict[str, dict[str, int]]  # column -> bin -> rows of the reference


@dataclass
class ScoringStats:
    """What a part (or a whole job) scored, mergeable and JSON-ready, so a resumed run reports every part."""

    rows_in: int = 0
    scored: int = 0
    rejected: int = 0
    predicted_default: int = 0
    score_sum: float = 0.0
    rejects_by_reason: Counter[str] = field(default_factory=Counter)
    score_histogram: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    # column -> bin -> rows scored; categorical columns are counted per category as sent, and binned by
    # `monitoring.psi.category_counts` only when PSI is computed (`binned_psi_counts`): once, not per batch.
    psi_counts: dict[str, Counter[str]] = field(default_factory=dict)

    def merge(self, other: ScoringStats) -> None:
        self.rows_in += other.rows_in
        self.scored += other.scored
        self.rejected += other.rejected
        self.predicted_default += other.predicted_default
        self.score_sum += other.score_sum
        self.rejects_by_reason.update(other.rejects_by_reason)
        self.score_histogram = [a + b for a, b in zip(self.score_histogram, other.score_histogram, strict=True)]
        for column, counts in other.psi_counts.items():
            self.psi_counts.setdefault(column, Counter()).update(counts)

    def binned_psi_counts(self, categorical: list[str]) -> dict[str, Counter[str]]:
        """The PSI counts with every column in its bins (categories by `monitoring.psi.category_counts`)."""
        return {
            column: category_counts(counts) if column in categorical else counts
            for column, counts in self.psi_counts.items()
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "scored": self.scored,
            "rejected": self.rejected,
            "predicted_default": self.predicted_default,
            "score_sum": self.score_sum,
            "rejects_by_reason": dict(self.rejects_by_reason),
            "score_histogram": list(self.score_histogram),
            "psi_counts": {column: dict(counts) for column, counts in self.psi_counts.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScoringStats:
        return cls(
            rows_in=int(data["rows_in"]),
            scored=int(data["scored"]),
            rejected=int(data["rejected"]),
            predicted_default=int(data["predicted_default"]),
            score_sum=float(data["score_sum"]),
            rejects_by_reason=Counter(data["rejects_by_reason"]),
            score_histogram=[int(n) for n in data["score_histogram"]],
            psi_counts={column: Counter(counts) for column, counts in data["psi_counts"].items()},
        )


@dataclass(frozen=True)
class ScoredBatch:
    rows_in: int
    scored: pa.RecordBatch
    rejected: pa.RecordBatch
    probabilities: np.ndarray
    defaults: np.ndarray
    encoded: EncodedBatch


class BatchScorer:
    """Scores batches with one session; `stats` counts everything scored since it was made (or `take_stats`)."""

    def __init__(
        self,
        model: ScoringModel,
        session: ort.InferenceSession,
        features: ArrowFeatures,
        bins: PopulationBins | None,  # None: no training reference, no PSI
        id_fields: list[pa.Field],
    ):
        self.model, self.session, self.features, self.bins = model, session, features, bins
        self.id_columns = [item.name for item in id_fields]
        self.output_schema, self.rejected_schema = output_schema(id_fields), rejected_schema(id_fields)
        self.stats = ScoringStats()

    def take_stats(self) -> ScoringStats:
        stats, self.stats = self.stats, ScoringStats()
        return stats

    def score(self, batch: pa.RecordBatch, scored_at: datetime) -> tuple[pa.RecordBatch, pa.RecordBatch]:
        """The batch's scored rows and its rejected rows (either may be empty), counted in `stats`."""
        scored = self.score_encoded(batch, self.features.encode(batch), scored_at)
        self.count(scored)
        return scored.scored, scored.rejected

    def score_encoded(self, batch: pa.RecordBatch, encoded: EncodedBatch, scored_at: datetime) -> ScoredBatch:
        """`score` of a batch whose feeds were built already, not yet counted: the local engine builds the next
        batch's feeds in one thread and counts and writes the previous one in another while this one is scored."""
        accepted = encoded.accepted_rows
        probabilities = (
            predict_default_probability(self.session, encoded.feeds) if accepted else np.empty(0, dtype=np.float64)
        )
        defaults = decisions(probabilities, self.model.decision_threshold)
        ids = [batch.column(name) for name in self.id_columns]
        if encoded.accepted is not None:
            index = pa.array(encoded.accepted)
            ids_scored = [column.take(index) for column in ids]
        else:
            ids_scored = ids
        stamp = pa.scalar(scored_at, pa.timestamp("ms", tz="UTC"))
        scored = pa.RecordBatch.from_arrays(
            [
                *ids_scored,
                pa.array(probabilities, pa.float64()),
                pa.array(defaults, pa.bool_()),
                *self._constants(self.output_schema, accepted, stamp),
            ],
            schema=self.output_schema,
        )
        rejected_rows = len(encoded.rejected)
        index = pa.array(encoded.rejected)
        rejected = pa.RecordBatch.from_arrays(
            [
                *(column.take(index) for column in ids),
                encoded.reasons,
                encoded.values,
                *self._constants(self.rejected_schema, rejected_rows, stamp),
            ],
            schema=self.rejected_schema,
        )
        return ScoredBatch(batch.num_rows, scored, rejected, probabilities, defaults, encoded)

    def _constants(self, schema: pa.Schema, rows: int, stamp: pa.Scalar) -> list[pa.Array]:
        """The columns every row of a batch shares, those `schema` has, in its order."""
        model = self.model
        values = {
            "decision_threshold": model.decision_threshold,
            "model_name": model.name,
            "model_version": model.version,
            "model_precision": model.precision,
        }
        return [
            pa.repeat(stamp if item.name == "scored_at" else pa.scalar(values[item.name], item.type), rows)
            for item in schema
            if item.name in values or item.name == "scored_at"
        ]

    def count(self, batch: ScoredBatch) -> None:
        """Add a scored batch to `stats` (from one thread at a time)."""
        rows_in, probabilities, defaults = batch.rows_in, batch.probabilities, batch.defaults
        encoded = batch.encoded
        reasons = encoded.reasons
        stats = self.stats
        stats.rows_in += rows_in
        stats.scored += len(probabilities)
        stats.rejected += len(reasons)
        stats.predicted_default += int(defaults.sum())
        stats.score_sum += float(probabilities.sum())
        if len(reasons):
            stats.rejects_by_reason.update(reasons.to_pylist())
        histogram, _ = np.histogram(probabilities, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
        stats.score_histogram = [a + int(b) for a, b in zip(stats.score_histogram, histogram, strict=True)]
        if not len(probabilities) or self.bins is None:
            return
        psi = stats.psi_counts
        psi.setdefault(SCORE_COLUMN, Counter()).update(self.bins.score.counts(probabilities))
        for name, bins in self.bins.numeric.items():
            psi.setdefault(name, Counter()).update(bins.counts(encoded.numbers[name]))
        for name, codes in encoded.categories.items():
            psi.setdefault(name, Counter()).update(codes.counts())
