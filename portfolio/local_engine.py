"""The local engine: every input file streamed in Arrow record batches through one ONNX Runtime session, each part
written atomically and recorded in the manifest, finished parts skipped when a run is started again.

Three stages overlap, each in its own thread: reading a batch and building its feeds, scoring it, counting its
statistics and writing the output. ONNX Runtime, Arrow's readers, compute functions and Parquet writer release the
GIL, so on two cores the session scores most of the time instead of waiting for I/O (docs/benchmarks.md). Queues of
`PIPELINE_DEPTH` batches keep memory bounded whatever the file size.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime

import pyarrow as pa

from portfolio.errors import PortfolioInputError
from portfolio.features import EncodedBatch
from portfolio.output import Manifest, OutputFolder, PartWriter
from portfolio.scorer import BatchScorer, ScoredBatch, ScoringStats
from portfolio.sources import InputFile, Part, parts
from registry.errors import first_line
from scoring.progress import Progress

logger = logging.getLogger(__name__)

PIPELINE_DEPTH = 2  # batches read ahead, and batches waiting to be written


def read_ahead(
    batches: Iterator[pa.RecordBatch], encode: Callable[[pa.RecordBatch], EncodedBatch], pool: ThreadPoolExecutor
) -> Iterator[tuple[pa.RecordBatch, EncodedBatch]]:
    """The batches with their feeds, the next `PIPELINE_DEPTH` read and encoded by `pool` (one thread, so the
    reader is never used by two threads at once) while the caller scores the current one."""

    def next_item() -> tuple[pa.RecordBatch, EncodedBatch] | None:
        batch = next(batches, None)
        return None if batch is None else (batch, encode(batch))

    pending = deque(pool.submit(next_item) for _ in range(PIPELINE_DEPTH))
    try:
        while (item := pending.popleft().result()) is not None:
            pending.append(pool.submit(next_item))
            yield item
    finally:
        for future in pending:  # stopped early (an error downstream): let the reader finish its current batch
            future.cancel()
        for future in pending:
            if not future.cancelled():
                future.exception()


def _write_behind(pool: ThreadPoolExecutor, pending: deque[Future[None]], write: Callable[[], None]) -> None:
    pending.append(pool.submit(write))
    while len(pending) > PIPELINE_DEPTH:
        pending.popleft().result()


def _count_and_write(scorer: BatchScorer, writer: PartWriter, scored: ScoredBatch) -> None:
    scorer.count(scored)
    writer.write(scored.scored, scored.rejected)


def _score_part(
    scorer: BatchScorer,
    part: Part,
    writer: PartWriter,
    progress: Progress,
    readers: ThreadPoolExecutor,
    writers: ThreadPoolExecutor,
) -> None:
    scored_at = datetime.now(UTC)
    pending: deque[Future[None]] = deque()
    try:
        for batch, encoded in read_ahead(part.batches, scorer.features.encode, readers):
            scored = scorer.score_encoded(batch, encoded, scored_at)
            _write_behind(writers, pending, functools.partial(_count_and_write, scorer, writer, scored))
            progress.update(batch.num_rows)
    except pa.ArrowInvalid as error:  # a value Arrow cannot convert (the reader's own errors name the file already)
        raise PortfolioInputError(f"input {part.file.path}: {first_line(error)}") from error
    finally:
        # Every write done before the part is committed or abandoned: the writer thread must not be writing while
        # the main thread closes the files.
        wait(pending)
    for future in pending:  # the first failed write, when scoring itself went well
        future.result()


def score_locally(
    scorer: BatchScorer,
    inputs: list[InputFile],
    output: OutputFolder,
    manifest: Manifest,
    batch_rows: int,
    rows_per_part: int,
    progress: Progress,
) -> tuple[ScoringStats, int]:
    """Score every part not yet in `manifest`: the statistics of all parts (earlier runs' included), and how many
    rows this run read."""
    total = ScoringStats()
    rows_this_run = 0
    categorical = frozenset(scorer.model.schema.categorical)
    with (
        ThreadPoolExecutor(1, thread_name_prefix="portfolio-read") as readers,
        ThreadPoolExecutor(1, thread_name_prefix="portfolio-write") as writers,
    ):
        for file_index, file in enumerate(inputs):
            for part in parts(file, file_index, batch_rows, rows_per_part, categorical):
                done = manifest.parts.get(part.key)
                if done is not None:
                    finished = ScoringStats.from_dict(done)
                    total.merge(finished)
                    progress.skip(finished.rows_in)
                    continue
                scorer.take_stats()
                with output.part_writer(part.key, scorer.output_schema, scorer.rejected_schema) as writer:
                    _score_part(scorer, part, writer, progress, readers, writers)
                stats = scorer.take_stats()
                output.record(manifest, part.key, stats)
                total.merge(stats)
                rows_this_run += stats.rows_in
                logger.debug("part %s of %s: %d rows", part.key, file.path, stats.rows_in)
    manifest.complete = True
    output.save(manifest)
    return total, rows_this_run
