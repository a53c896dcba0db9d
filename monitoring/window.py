"""The current data of a drift report: the newest window of the gateway's prediction stream, or a file.

The stream is read newest first in pages (XREVRANGE ... COUNT); each entry is decoded into its requests' columns with
`serving.prediction_log.groups_of` and added to a bounded seeded sample per model version, so neither Redis nor this
process holds a whole large window at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import redis

from monitoring.errors import MonitoringInputError
from monitoring.sampling import BoundedSample
from registry.errors import first_line
from scoring.contract import SCORE_COLUMN as SCORE_COLUMN  # re-exported: the drift job names it from here
from serving.prediction_log import groups_of

logger = logging.getLogger(__name__)

TIMESTAMP_COLUMN = "ts"
FILE_SUFFIXES = (".csv", ".parquet", ".pq")
# How long after a request its rows may reach the stream: the gateway's writer flushes every 0.25 s by default.
ENTRY_DELAY_S = 60.0
MAX_PAGE_ENTRIES = 5_000


@dataclass(frozen=True)
class WindowSpec:
    """Which rows of the stream: the newest `last_rows`, those of the last `since_seconds`, those scored in
    [`start`, `end`) (Unix seconds; a scheduler's data interval, so that a re-run reads the same rows), or several of
    these limits at once."""

    last_rows: int | None = None
    since_seconds: float | None = None
    start: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        if self.last_rows is not None and self.last_rows < 1:
            raise MonitoringInputError(f"--last-rows must be at least 1, got {self.last_rows}")
        if self.since_seconds is not None and self.since_seconds <= 0:
            raise MonitoringInputError(f"--since must be a positive duration, got {self.since_seconds} s")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise MonitoringInputError(f"the window's start ({self.start}) must be before its end ({self.end})")


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
        self.sample.add(page.drop(columns=[TIMESTAMP_COLUMN]))

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


def _pages(
    client: redis.Redis, stream: str, oldest_id: str, newest_id: str, page_entries: int, page_rows: int
) -> Iterator[list[tuple[Any, Any]]]:
    """The stream's entries newest first, down to `oldest_id`: `page_entries` at first, then as many as hold about
    `page_rows` rows. An entry packs one flush interval's requests, from ~1,000 rows under load down to a row or two
    when traffic is thin; pages of a fixed entry count would then be thousands of tiny pages."""
    newest, count = newest_id, page_entries
    while True:
        page = client.xrevrange(stream, max=newest, min=oldest_id, count=count)
        if not page:
            return
        yield page
        if len(page) < count:
            return
        newest = f"({page[-1][0].decode() if isinstance(page[-1][0], bytes) else page[-1][0]}"
        rows = sum(_entry_rows(entry) for _, entry in page)
        count = max(page_entries, min(MAX_PAGE_ENTRIES, page_rows * len(page) // max(rows, 1)))


def _entry_rows(entry: Any) -> int:
    """An entry's `rows` field (an entry of the earlier one-request layout has none: counted as one row)."""
    value = entry.get(b"rows") or entry.get("rows")
    return int(value) if value else 1


class _PageColumns:
    """One version's rows of one page as column lists (appending lists is far cheaper than a frame per request)."""

    def __init__(self) -> None:
        self.columns: dict[str, list[object]] = {}
        self.stamps: list[float] = []
        self.scores: list[float] = []
        self.signatures: set[tuple[str, ...]] = set()

    def add(self, group: dict[str, Any], first: int) -> None:
        """The group's rows from index `first` on."""
        features: dict[str, list[object]] = group["features"]
        rows = len(group["probabilities"]) - first
        self.signatures.add(tuple(features))
        length = len(self.stamps)
        for name, values in features.items():
            column = self.columns.get(name)
            if column is None:  # not setdefault: its default list would be built for every group (quadratic)
                column = self.columns[name] = [None] * length
            column.extend(values[first:])
        # Every feature of the group is a column now, so equal counts mean equal sets: the set difference (a group
        # without some column, reported later as a mismatch) is only needed when the counts differ.
        if len(self.columns) != len(features):
            for name in self.columns.keys() - features.keys():
                self.columns[name].extend([None] * rows)
        self.stamps.extend([float(group["ts"])] * rows)
        self.scores.extend(map(float, group["probabilities"][first:]))

    def frame(self) -> pd.DataFrame:
        frame = pd.DataFrame(self.columns)
        frame[TIMESTAMP_COLUMN] = self.stamps
        frame[SCORE_COLUMN] = self.scores
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
    page_rows: int = 20_000,
    on_rows: Callable[[int], None] = lambda rows: None,
) -> list[VersionWindow]:
    """The window's rows of `model_name`, one VersionWindow per version that scored some (lowest version first).

    `on_rows` is told how many rows each page added (a CLI's progress bar).
    """
    starts = [spec.start] if spec.start is not None else []
    if spec.since_seconds is not None:
        starts.append((now if now is not None else time.time()) - spec.since_seconds)
    since = max(starts) if starts else None
    until = spec.end
    # An entry's id is the time of its XADD, never before the requests it holds: entries older than `since` hold
    # only older rows, so the read can stop at that id. Entries written after `until` may still hold rows scored
    # before it (a flush interval later): the read starts a minute past it and filters by the rows' own time.
    oldest_id = "-" if since is None else str(int(since * 1000))
    newest_id = "+" if until is None else str(int((until + ENTRY_DELAY_S) * 1000))
    wanted = spec.last_rows
    versions: dict[str, _VersionAccumulator] = {}
    taken = 0
    for page in _pages(client, stream, oldest_id, newest_id, page_entries, page_rows):
        columns: dict[str, _PageColumns] = {}
        added = 0
        for _, entry in page:  # newest entry first
            # A request's rows share one time stamp, so the window's bounds never split a group, except the
            # oldest group of a row-count window.
            groups = [group for group in groups_of(entry) if group["model"] == model_name]
            groups = [group for group in groups if since is None or float(group["ts"]) >= since]
            groups = [group for group in groups if until is None or float(group["ts"]) < until]
            for group in reversed(groups):  # newest group first, down to the row count wanted
                rows = len(group["probabilities"])
                first = 0 if wanted is None else max(0, rows - (wanted - taken))
                columns.setdefault(str(group["version"]), _PageColumns()).add(group, first)
                taken += rows - first
                added += rows - first
                if wanted is not None and taken >= wanted:
                    break
            if wanted is not None and taken >= wanted:
                break
        for version, part in columns.items():
            accumulator = versions.setdefault(version, _VersionAccumulator(model_name, version, sample_size, seed))
            for signature in part.signatures:
                accumulator.feature_names.update(signature)
            accumulator.add(part.frame())
        on_rows(added)
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
        raise MonitoringInputError(f"data file {path} cannot be read: {first_line(error)}") from error
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
