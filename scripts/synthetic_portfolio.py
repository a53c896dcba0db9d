"""Write a synthetic loan portfolio (Parquet or CSV) drawn from the shipped data, for batch-scoring benchmarks.

Rows are bootstrapped from data/credit_data.csv (Status dropped), so the joint structure of the real applicants is
kept; numeric columns get a small multiplicative jitter so the book is not 4,454 rows repeated. Integer columns stay
integer, values stay inside the column's observed range, missing values stay missing where the source row had them,
categorical columns are strings (missing = null). Every row gets a unique `account_id` ("A000000001", ...).

python scripts/synthetic_portfolio.py /tmp/book --rows 5000000             # one Parquet file per --files, in a folder
python scripts/synthetic_portfolio.py /tmp/book.parquet --rows 5000000     # a single file
python scripts/synthetic_portfolio.py /tmp/book.csv --rows 100000 --format csv
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

if TYPE_CHECKING:  # tqdm is imported only when a bar is shown
    from tqdm import tqdm

DATA = Path(__file__).resolve().parent.parent / "data" / "credit_data.csv"
TARGET = "Status"
ACCOUNT_ID = "account_id"
ROW_GROUP_ROWS = 128 * 1024
# A whole number of row groups per chunk, so every row group but the last is full (ROW_GROUP_ROWS each).
CHUNK_ROWS = 4 * ROW_GROUP_ROWS
# Columns with so few distinct values are terms or codes (Time: 12, 24, 36... months): resampled, never jittered.
DISCRETE_MAX_DISTINCT = 16
ID_DIGITS = 9
FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class SourceColumns:
    """The source table split into what the generator needs: numeric values and ranges, categorical codes."""

    rows: int
    numeric: dict[str, np.ndarray]  # float64, NaN = missing
    integer: set[str]  # numeric columns whose every present value is a whole number
    int_typed: set[str]  # numeric columns with no missing value (int64 in the source, and in the output)
    discrete: set[str]
    bounds: dict[str, tuple[float, float]]
    categorical_codes: dict[str, np.ndarray]  # int32 codes into categories[name], -1 = missing
    categories: dict[str, list[str]]
    order: list[str]  # output column order after account_id (the source's, without the target)


@dataclass(frozen=True)
class PortfolioFiles:
    paths: list[Path]
    rows: int
    bytes: int
    seconds: float


def load_source(path: Path = DATA, target: str = TARGET) -> SourceColumns:
    frame = pd.read_csv(path).drop(columns=[target])
    numeric: dict[str, np.ndarray] = {}
    codes: dict[str, np.ndarray] = {}
    categories: dict[str, list[str]] = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_numeric_dtype(column):
            numeric[name] = column.to_numpy(dtype=np.float64)
        else:
            labels = column.astype("string")
            categorical = pd.Categorical(labels, categories=sorted(labels.dropna().unique()))
            codes[name] = categorical.codes.astype(np.int32)
            categories[name] = [str(value) for value in categorical.categories]
    present = {name: values[~np.isnan(values)] for name, values in numeric.items()}
    return SourceColumns(
        rows=len(frame),
        numeric=numeric,
        integer={name for name, values in present.items() if np.all(values == np.round(values))},
        int_typed={name for name, values in numeric.items() if not np.isnan(values).any()},
        discrete={name for name, values in present.items() if len(np.unique(values)) <= DISCRETE_MAX_DISTINCT},
        bounds={name: (float(values.min()), float(values.max())) for name, values in present.items()},
        categorical_codes=codes,
        categories=categories,
        order=[str(name) for name in frame.columns],
    )


def account_ids(start: int, count: int) -> pa.StringArray:
    """ "A" + zero-padded 1-based row numbers, built as one Arrow buffer: a Python string per row costs ~1 s per 5 M."""
    if start + count > 10**ID_DIGITS - 1:
        raise ValueError(f"at most {10**ID_DIGITS - 1:,} rows have a {ID_DIGITS}-digit account id")
    numbers = np.arange(start + 1, start + count + 1, dtype=np.int64)
    width = ID_DIGITS + 1
    text = np.empty((count, width), dtype=np.uint8)
    text[:, 0] = ord("A")
    for position in range(ID_DIGITS):
        text[:, width - 1 - position] = ord("0") + (numbers // 10**position) % 10
    offsets = np.arange(0, (count + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(text))


def jittered(values: np.ndarray, bounds: tuple[float, float], relative: float, rng: np.random.Generator) -> np.ndarray:
    # Multiplicative noise: zeros (no assets, no debt, a new job) stay zero and the spread follows the magnitude.
    noisy = values * rng.normal(1.0, relative, size=len(values))
    return np.clip(noisy, *bounds)


def chunk_table(source: SourceColumns, start: int, count: int, seed: int, jitter: float) -> pa.Table:
    """Rows [start, start + count) of the portfolio: a generator per chunk seeded by (seed, chunk start), so the rows
    do not depend on how many files they are written to."""
    rng = np.random.default_rng([seed, start])
    picked = rng.integers(0, source.rows, size=count)
    columns: dict[str, pa.Array] = {ACCOUNT_ID: account_ids(start, count)}
    for name in source.order:
        if name in source.categorical_codes:
            codes = source.categorical_codes[name][picked]
            indices = pa.array(codes, mask=codes < 0, type=pa.int32())
            dictionary = pa.array(source.categories[name], type=pa.string())
            columns[name] = pa.DictionaryArray.from_arrays(indices, dictionary).dictionary_decode()
            continue
        values = source.numeric[name][picked]
        if jitter > 0 and name not in source.discrete:
            values = jittered(values, source.bounds[name], jitter, rng)
        if name in source.integer:
            values = np.round(values)
        missing = np.isnan(values)
        if name in source.int_typed:
            columns[name] = pa.array(values.astype(np.int64), type=pa.int64())
        else:
            columns[name] = pa.array(values, mask=missing, type=pa.float64())
    return pa.table(columns)


def chunk_ranges(first: int, last: int, chunk_rows: int) -> Iterator[tuple[int, int]]:
    for start in range(first, last, chunk_rows):
        yield start, min(chunk_rows, last - start)


def file_row_ranges(rows: int, files: int, chunk_rows: int) -> list[tuple[int, int]]:
    """Contiguous row ranges per file, cut on chunk boundaries (so the chunks, and the rows, are the same whatever
    the number of files)."""
    chunks = -(-rows // chunk_rows)
    if files < 1 or files > max(chunks, 1):
        raise ValueError(f"files must be between 1 and {max(chunks, 1)} for {rows:,} rows in chunks of {chunk_rows:,}")
    bounds = [min(rows, round(chunks * part / files) * chunk_rows) for part in range(files + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def output_paths(path: Path, files: int, file_format: str) -> list[Path]:
    """`path` itself when it names one file (its suffix is the format), else part files in the folder `path`."""
    if path.suffix == f".{file_format}":
        if files != 1:
            raise ValueError(f"{path} names one file; give a folder to write {files} part files")
        return [path]
    return [path / f"part-{part:05d}.{file_format}" for part in range(files)]


class _Writer:
    """One output file, Parquet (row groups of ROW_GROUP_ROWS) or CSV, written a chunk at a time."""

    def __init__(self, path: Path, schema: pa.Schema, file_format: str, compression: str) -> None:
        if file_format == "parquet":
            self.writer: pq.ParquetWriter | pacsv.CSVWriter = pq.ParquetWriter(path, schema, compression=compression)
        else:
            self.writer = pacsv.CSVWriter(path, schema)

    def write(self, table: pa.Table) -> None:
        if isinstance(self.writer, pq.ParquetWriter):
            self.writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        else:
            self.writer.write_table(table)

    def close(self) -> None:
        self.writer.close()


def write_portfolio(
    path: Path,
    rows: int,
    seed: int = 7,
    files: int = 1,
    file_format: str = "parquet",
    jitter: float = 0.05,
    chunk_rows: int = CHUNK_ROWS,
    compression: str = "snappy",
    source: Path = DATA,
    progress: bool = False,
) -> PortfolioFiles:
    """Write `rows` synthetic loans to `path` (a .parquet/.csv file, or a folder of `files` part files), streaming
    chunks of `chunk_rows` rows so memory stays bounded whatever `rows` is. Deterministic for a given (seed,
    chunk_rows, jitter, source)."""
    if file_format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {file_format!r}")
    if rows < 1:
        raise ValueError("rows must be positive")
    if chunk_rows % ROW_GROUP_ROWS and file_format == "parquet":
        raise ValueError(f"chunk_rows must be a multiple of {ROW_GROUP_ROWS} so row groups stay full")
    columns = load_source(source)
    paths = output_paths(path, files, file_format)
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    schema = chunk_table(columns, 0, 1, seed, jitter).schema
    started = time.perf_counter()
    bar = _progress_bar(rows, progress)
    try:
        for target, (first, last) in zip(paths, file_row_ranges(rows, files, chunk_rows), strict=True):
            writer = _Writer(target, schema, file_format, compression)
            try:
                for start, count in chunk_ranges(first, last, chunk_rows):
                    writer.write(chunk_table(columns, start, count, seed, jitter))
                    if bar is not None:
                        bar.update(count)
            finally:
                writer.close()
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - started
    return PortfolioFiles(paths=paths, rows=rows, bytes=sum(p.stat().st_size for p in paths), seconds=seconds)


def _progress_bar(rows: int, enabled: bool) -> tqdm | None:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=rows, unit="row", unit_scale=True, desc="portfolio")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="a .parquet/.csv file, or a folder for part files")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--files", type=int, default=1, help="part files in the output folder")
    parser.add_argument("--format", dest="file_format", choices=FORMATS, default="parquet")
    parser.add_argument("--jitter", type=float, default=0.05, help="relative sd of the numeric jitter (0 = none)")
    parser.add_argument("--chunk-rows", type=int, default=CHUNK_ROWS)
    parser.add_argument("--compression", default="snappy", help="Parquet codec: snappy, zstd, none, ...")
    arguments = parser.parse_args()
    try:
        written = write_portfolio(
            arguments.output,
            arguments.rows,
            seed=arguments.seed,
            files=arguments.files,
            file_format=arguments.file_format,
            jitter=arguments.jitter,
            chunk_rows=arguments.chunk_rows,
            compression=arguments.compression,
            progress=sys.stderr.isatty(),
        )
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    megabytes = written.bytes / 1e6
    print(
        f"{written.rows:,} rows in {len(written.paths)} file(s), {megabytes:,.1f} MB, {written.seconds:.1f} s "
        f"({written.rows / written.seconds / 1e6:.2f} M rows/s): {arguments.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
