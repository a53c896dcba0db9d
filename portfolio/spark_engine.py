"""The Spark engine (`--engine spark`): the same registered ONNX version and the same `BatchScorer` applied with
`mapInArrow`, one session per Python worker (loaded from a broadcast copy of the graph on its first batch and kept
for every later task the worker runs), so the job runs unchanged on an existing Spark cluster.

Each partition yields its scored and rejected rows and, last, one row carrying the partition's statistics (rows,
rejects by reason, score histogram, PSI bin counts), so one pass over the data gives both the output and everything
the MLflow run reports. The output is written by Spark under temporary names and renamed into `scores/` and
`rejected/` once both writes committed.

Paths are local paths: on a cluster, the input and output folders must be on storage every node mounts at the same
path (docs/portfolio.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from portfolio.features import ArrowFeatures
from portfolio.output import REJECTED, SCORES, TEMPORARY_PREFIX, Manifest, OutputFolder
from portfolio.scorer import (
    BatchScorer,
    PopulationBins,
    ScoringModel,
    ScoringStats,
    output_schema,
    rejected_schema,
)

if TYPE_CHECKING:  # the workers import this module: nothing of MLflow or the registry at its top
    from pyspark.sql import DataFrame, SparkSession

    from portfolio.settings import PortfolioSettings
    from portfolio.sources import InputFile
    from registry.resolve import ResolvedModel

logger = logging.getLogger(__name__)

KIND = "_kind"
SPARK_STATS = "spark"  # the manifest's one entry for a Spark job: its statistics (Spark writes no parts of its own)
STATS = "_stats"
SHIPPED_PACKAGES = ("portfolio", "scoring", "monitoring")  # what the executors import (monitoring for monitoring.psi)
TIMESTAMP = pa.timestamp("us", tz="UTC")  # Spark's TimestampType in Arrow

# The scorer of the job a Python worker last ran tasks for: a worker runs many tasks, the session is built once per
# job (keyed by the job, not the version: another job may pass other id columns, bins or threads).
_WORKER_SCORERS: dict[str, BatchScorer] = {}
# Archives of this package already given to a SparkContext (application id, content hash): a long-lived session
# refuses the same file name twice, and needs it only once.
_SHIPPED: set[tuple[str, str]] = set()


def spark_session(settings: PortfolioSettings) -> SparkSession:
    """The running session (spark-submit's on a cluster), or a new one on `settings.spark_master`."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(settings.spark_master).appName("credit-portfolio-score")
    if settings.spark_master.startswith("local"):
        # Local mode starts its Python workers with PYSPARK_PYTHON (default: `python3` on PATH, which may lack
        # onnxruntime): this interpreter, unless the user chose one. A cluster's workers keep the cluster's.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # Everything this job starts listens on 127.0.0.1 only; a local run needs no web UI.
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
        builder = builder.config("spark.ui.enabled", "false")
    spark = builder.getOrCreate()
    # Batches as the local engine scores them; plain (not large) Arrow strings and microsecond UTC timestamps, so the
    # rows the workers return have the types the declared schema maps to.
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(settings.batch_rows))
    spark.conf.set("spark.sql.execution.arrow.useLargeVarTypes", "false")
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    return spark


def _combined_schema(id_fields: list[pa.Field]) -> pa.Schema:
    """Scored and rejected rows in one stream (the columns the other kind lacks are null), plus the row kind and the
    partition's statistics."""
    fields: dict[str, pa.Field] = {}
    for item in [*output_schema(id_fields), *rejected_schema(id_fields)]:
        fields.setdefault(item.name, item.with_type(TIMESTAMP) if item.name == "scored_at" else item)
    return pa.schema([*fields.values(), pa.field(KIND, pa.string()), pa.field(STATS, pa.string())])


def _spark_type(item: pa.Field) -> pa.Field:
    if pa.types.is_large_string(item.type):
        return item.with_type(pa.string())
    if pa.types.is_large_binary(item.type):
        return item.with_type(pa.binary())
    return item


def _as_combined(batch: pa.RecordBatch, kind: str, schema: pa.Schema) -> pa.RecordBatch:
    rows = batch.num_rows
    columns = []
    for item in schema:
        if item.name == KIND:
            columns.append(pa.repeat(pa.scalar(kind, pa.string()), rows))
        elif item.name in batch.schema.names:
            columns.append(batch.column(item.name).cast(item.type))
        else:
            columns.append(pa.nulls(rows, item.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _score_partition(
    batches: Iterator[pa.RecordBatch],
    job: str,
    model: ScoringModel,
    onnx_bytes: Any,
    bins: PopulationBins | None,
    id_fields: list[pa.Field],
    threads: int,
    scored_at: datetime,
) -> Iterator[pa.RecordBatch]:
    from scoring.onnx_runtime import inference_session

    scorer = _WORKER_SCORERS.get(job)
    if scorer is None:
        _WORKER_SCORERS.clear()
        session = inference_session(onnx_bytes.value, threads=threads)
        features = ArrowFeatures(model.schema, [item.name for item in id_fields])
        scorer = _WORKER_SCORERS[job] = BatchScorer(model, session, features, bins, id_fields)
    scorer.take_stats()
    schema = _combined_schema(id_fields)
    for batch in batches:
        scored, rejected = scorer.score(batch, scored_at)
        yield _as_combined(scored, "scored", schema)
        if rejected.num_rows:
            yield _as_combined(rejected, "rejected", schema)
    stats = pa.RecordBatch.from_arrays(
        [pa.nulls(1, item.type) for item in schema if item.name not in (KIND, STATS)]
        + [pa.array(["stats"]), pa.array([json.dumps(scorer.take_stats().as_dict())])],
        schema=schema,
    )
    yield stats


def _read(spark: SparkSession, inputs: list[InputFile], columns: list[str]) -> list[DataFrame]:
    """The Parquet files and the CSV files (as text, as the local engine reads them), each kind one DataFrame of
    `columns`: scored apart and unioned after, since a number column in Parquet is text in CSV."""
    frames = []
    parquet = [file_uri(file.path) for file in inputs if file.format == "parquet"]
    csv = [file_uri(file.path) for file in inputs if file.format == "csv"]
    if parquet:
        frames.append(spark.read.parquet(*parquet).select(*columns))
    if csv:
        frames.append(spark.read.csv(csv, header=True, inferSchema=False).select(*columns))
    return frames


def file_uri(path: Path) -> str:
    """A local path as a `file://` URI: a bare path would be resolved against the cluster's default file system
    (HDFS on YARN), not the storage the driver checked, hashed and renames in."""
    return path.resolve().as_uri()


def _ship_code(spark: SparkSession, folder: Path) -> None:
    """The packages the workers import, as one zip on their path (a cluster's workers have the dependencies, not
    this repository)."""
    root = Path(__file__).resolve().parent.parent
    sources = [source for package in SHIPPED_PACKAGES for source in sorted((root / package).rglob("*.py"))]
    digest = hashlib.sha256(b"".join(source.read_bytes() for source in sources)).hexdigest()[:16]
    key = (spark.sparkContext.applicationId, digest)
    if key in _SHIPPED:
        return
    archive = folder / f"credit_scoring_portfolio-{digest}.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for source in sources:
            bundle.write(source, source.relative_to(root).as_posix())
    spark.sparkContext.addPyFile(str(archive))
    _SHIPPED.add(key)


def score_with_spark(
    resolved: ResolvedModel,
    model: ScoringModel,
    bins: PopulationBins | None,
    inputs: list[InputFile],
    id_fields: list[pa.Field],
    output: OutputFolder,
    manifest: Manifest,
    settings: PortfolioSettings,
) -> ScoringStats:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema

    if manifest.complete and SPARK_STATS in manifest.parts:  # this very job finished before: nothing to score
        return ScoringStats.from_dict(manifest.parts[SPARK_STATS])
    spark = spark_session(settings)
    job = uuid.uuid4().hex
    # Spark hands the workers plain (not large) strings and binaries: ids written by Polars, say, come back so.
    id_fields = [_spark_type(item) for item in id_fields]
    features = ArrowFeatures(model.schema, [item.name for item in id_fields])
    schema = _combined_schema(id_fields)
    onnx_bytes = spark.sparkContext.broadcast(resolved.onnx_path.read_bytes())
    scored_at = datetime.now(UTC)
    threads = settings.threads
    with tempfile.TemporaryDirectory(prefix="credit-portfolio-spark-") as folder:
        _ship_code(spark, Path(folder))
        scored = [
            frame.mapInArrow(
                lambda batches: _score_partition(batches, job, model, onnx_bytes, bins, id_fields, threads, scored_at),
                from_arrow_schema(schema),
            )
            for frame in _read(spark, inputs, features.columns)
        ]
        combined = functools.reduce(lambda left, right: left.unionByName(right), scored)
        combined = combined.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            total = ScoringStats()
            for row in combined.filter(F.col(KIND) == "stats").select(STATS).collect():
                total.merge(ScoringStats.from_dict(json.loads(row[STATS])))
            targets = {
                SCORES: (output_schema(id_fields).names, "scored"),
                REJECTED: (rejected_schema(id_fields).names, "rejected"),
            }
            for name, (columns, kind) in targets.items():
                selected = combined.filter(F.col(KIND) == kind).select(*columns)
                selected.write.mode("overwrite").parquet(file_uri(output.path / f"{TEMPORARY_PREFIX}{name}"))
        finally:
            combined.unpersist()
            onnx_bytes.unpersist()
    for name in (SCORES, REJECTED):
        shutil.rmtree(output.path / name, ignore_errors=True)
        (output.path / f"{TEMPORARY_PREFIX}{name}").rename(output.path / name)
    manifest.parts[SPARK_STATS] = total.as_dict()
    manifest.complete = True
    output.save(manifest)
    logger.info("spark: %d rows in, %d scored, %d rejected", total.rows_in, total.scored, total.rejected)
    return total
