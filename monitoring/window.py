"""The current data of a drift report: the newest window of the gateway's prediction stream, or a file.

The stream is read newest first in pages (XREVRANGE ... COUNT), each page decoded with `serving.prediction_log.rows_of`
and added to a bounded seeded sample per model version, so neither Redis nor this process holds a whole large window
at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import redis
from tqdm import tqdm

from monitoring.errors import MonitoringInputError
from monitoring.sampling import BoundedSample
from serving.prediction_log import rows_of

logger = logging.getLogger(__name__)

SCORE_COLUMN = "probability_of_default"
TIMESTAMP_COLUMN = "ts"
FILE_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class WindowSpec:
    """Which rows of the stream: the newest `last_rows`, those of the last `since_seconds`, or both limits at once."""

    last_rows: int | None = None
    since_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.last_rows is not None and self.last_rows < 1:
            raise MonitoringInputError(f"--last-rows must be at least 1, got {self.last_rows}")
        if self.since_seconds is not None and self.since_seconds <= 0:
            raise MonitoringInputError(f"--since must be a positive duration, got {self.since_seconds} s")


@dataclass(frozen=True)
class VersionWindow:
    """What one model version scored in the window: its row count, time span and a bounded sample of the rows."""

    model: str
    version: str
    rows: int
    start: float | None  # Unix seconds of the oldest and newest row (None for a file)
    end: float | None
    frame: pd.DataFrame  # feature columns as logged (None = missing) plus SCORE_COLUMN; at most the sample size
    feature_names: frozenset[str]  # the features the logged rows carried
    sampled: bool
    sample_size: int
    sample_seed: int
    source: str  # "stream <name>" or "file <path>"


class _VersionAccumulator:
    def __init__(self, model: str, version: str, sample_size: int, seed: int):
        self.model, self.version = model, version
        self.sample = BoundedSample(sample_size, seed)
        self.start: float | None = None
        self.end: float | None = None
        self.feature_names: set[str] = set()

    def add(self, page: pd.DataFrame) -> None:
        stamps = page[TIMESTAMP_COLUMN]
        self.start = min(self.start, float(stamps.min())) if self.start is not None else float(stamps.min())
        self.end = max(self.end, float(stamps.max())) if self.end is not None else float(stamps.max())
        self.sample.add(page.drop(columns=["model", "version", TIMESTAMP_COLUMN]))

    def window(self, source: str) -> VersionWindow:
        return VersionWindow(
            model=self.model,
            version=self.version,
            rows=self.sample.rows_seen,
            start=self.start,
            end=self.end,
            frame=self.sample.frame(),
            feature_names=frozenset(self.feature_names),
            sampled=self.sample.sampled,
            sample_size=self.sample.size,
            sample_seed=self.sample.seed,
            source=source,
        )


def _pages(client: redis.Redis, stream: str, oldest_id: str, page_entries: int) -> Iterator[list[tuple[bytes, dict]]]:
    """The stream's entries newest first, `page_entries` at a time, down to `oldest_id`."""
    newest = "+"
    while True:
        page = client.xrevrange(stream, max=newest, min=oldest_id, count=page_entries)
        if not page:
            return
        yield page
        if len(page) < page_entries:
            return
        newest = f"({page[-1][0].decode() if isinstance(page[-1][0], bytes) else page[-1][0]}"


def _page_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records([row["features"] for row in rows])
    frame["model"] = [row["model"] for row in rows]
    frame["version"] = [str(row["version"]) for row in rows]
    frame[TIMESTAMP_COLUMN] = [float(row["ts"]) for row in rows]
    frame[SCORE_COLUMN] = [float(row["probability"]) for row in rows]
    return frame


def read_stream_window(
    client: redis.Redis,
    stream: str,
    model_name: str,
    spec: WindowSpec,
    sample_size: int,
    seed: int,
    page_entries: int = 20,
    now: float | None = None,
) -> list[VersionWindow]:
    """The window's rows of `model_name`, one VersionWindow per version that scored some (lowest version first)."""
    since = None if spec.since_seconds is None else (now if now is not None else time.time()) - spec.since_seconds
    # An entry's id is the time of its XADD, never before the requests it holds: entries older than `since` hold
    # only older rows, so the read can stop at that id.
    oldest_id = "-" if since is None else str(int(since * 1000))
    wanted = spec.last_rows
    versions: dict[str, _VersionAccumulator] = {}
    taken = 0
    with tqdm(total=wanted, unit="rows", desc="reading the prediction stream", disable=None, leave=False) as bar:
        for page in _pages(client, stream, oldest_id, page_entries):
            rows: list[dict[str, object]] = []
            for _, entry in page:  # newest entry first; the rows within an entry oldest first
                entry_rows = [row for row in rows_of(entry) if row["model"] == model_name]
                if since is not None:
                    entry_rows = [row for row in entry_rows if float(row["ts"]) >= since]
                if wanted is not None and taken + len(entry_rows) > wanted:
                    entry_rows = entry_rows[len(entry_rows) - (wanted - taken) :]  # the newest rows of the entry
                rows.extend(entry_rows)
                taken += len(entry_rows)
                if wanted is not None and taken >= wanted:
                    break
            if rows:
                # Rows of one request share their feature names: a tuple of them per row is cheap to collect.
                signatures: dict[str, set[tuple[str, ...]]] = {}
                for row in rows:
                    signatures.setdefault(str(row["version"]), set()).add(tuple(row["features"]))  # type: ignore[arg-type]
                frame = _page_frame(rows)
                for version, part in frame.groupby("version", sort=False):
                    accumulator = versions.setdefault(
                        str(version), _VersionAccumulator(model_name, str(version), sample_size, seed)
                    )
                    for signature in signatures[str(version)]:
                        accumulator.feature_names.update(signature)
                    accumulator.add(part)
                bar.update(len(rows))
            if wanted is not None and taken >= wanted:
                break
    source = f"stream {stream}"
    windows = [accumulator.window(source) for accumulator in versions.values()]
    return sorted(windows, key=lambda window: (len(window.version), window.version))


def read_file_window(path: Path, model: str, version: str, sample_size: int, seed: int) -> VersionWindow:
    """A CSV or Parquet file of applicants as the current data of `version`; every way it can fail names the file."""
    if not path.is_file():
        raise MonitoringInputError(f"data file {path} does not exist" if not path.exists() else f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise MonitoringInputError(f"data file {path}: unsupported format {suffix!r} (expected .csv or .parquet)")
    try:
        table = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MonitoringInputError(f"data file {path} cannot be read: {first_line}") from error
    table = table.rename(columns=str)
    sample = BoundedSample(sample_size, seed)
    sample.add(table)
    return VersionWindow(
        model=model,
        version=version,
        rows=len(table),
        start=None,
        end=None,
        frame=sample.frame(),
        feature_names=frozenset(table.columns),
        sampled=sample.sampled,
        sample_size=sample_size,
        sample_seed=seed,
        source=f"file {path}",
    )
