"""The portfolio's input: CSV or Parquet files (a file or a folder of them), checked before anything is scored, and
read as Arrow record batches grouped into parts, with bounded memory whatever the file size.

A part is the unit the job writes and resumes: in Parquet, whole row groups of one file (a finished part is skipped
without reading it); in CSV, consecutive blocks of one file (a finished part is read past, not scored).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from portfolio.errors import PortfolioInputError
from registry.errors import first_line

Format = Literal["parquet", "csv"]
SUFFIXES: dict[str, Format] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
CSV_BYTES_PER_ROW = 96  # the credit data's CSV rows are ~50 bytes: a block then holds about a batch of rows


@dataclass(frozen=True)
class InputFile:
    path: Path
    format: Format
    sha256: str
    size_bytes: int
    rows: int | None  # Parquet: from its footer; CSV: known once read
    arrow_schema: pa.Schema  # of the columns the job reads

    def describe(self) -> dict[str, object]:
        return {"path": str(self.path), "sha256": self.sha256, "bytes": self.size_bytes, "rows": self.rows}


@dataclass(frozen=True)
class Part:
    """Rows of one input file that are scored, written and resumed together; `batches` reads them lazily."""

    key: str
    file: InputFile
    batches: Iterator[pa.RecordBatch]


def discover(path: Path) -> list[Path]:
    """The input files: `path` itself, or the CSV and Parquet files in the folder `path` (sorted by name; names
    starting with `.` or `_`, such as Spark's `_SUCCESS`, are not data)."""
    if not path.exists():
        raise PortfolioInputError(f"input {path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() not in SUFFIXES:
            raise PortfolioInputError(f"input {path}: expected a .csv or .parquet file")
        return [path]
    found = sorted(
        item
        for item in path.iterdir()
        if item.is_file() and item.suffix.lower() in SUFFIXES and not item.name.startswith((".", "_"))
    )
    if not found:
        raise PortfolioInputError(f"input {path}: the folder holds no .csv or .parquet file")
    return found


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _csv_options(columns: list[str], batch_rows: int) -> tuple[pacsv.ReadOptions, pacsv.ConvertOptions]:
    # Every column read as text: a number the CSV spells badly rejects its row (portfolio.features) instead of
    # failing the whole file; an empty field is null, i.e. missing.
    read = pacsv.ReadOptions(block_size=max(batch_rows * CSV_BYTES_PER_ROW, 1 << 16))
    # Only an empty field is missing: Arrow's default null tokens ("NA", "N/A", "null", ...) would make a value
    # missing that the gateway, and Spark's CSV reader, see as text.
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(columns, pa.string()),
        include_columns=columns,
        strings_can_be_null=True,
        null_values=[""],
    )
    return read, convert


def open_inputs(paths: list[Path], columns: list[str]) -> list[InputFile]:
    """Every file checked (readable, every column present), and only then hashed: a mistake in the last file is
    reported without reading the others whole."""
    checked = [open_input(path, columns) for path in paths]
    return [replace(file, sha256=sha256_of(file.path)) for file in checked]


def open_input(path: Path, columns: list[str]) -> InputFile:
    """The file checked: readable, in a format this job reads, holding every column named (missing ones named);
    not hashed yet (`open_inputs` hashes once every file passed)."""
    fmt = SUFFIXES[path.suffix.lower()]
    try:
        if fmt == "parquet":
            metadata = pq.ParquetFile(path)
            available = metadata.schema_arrow
            rows: int | None = metadata.metadata.num_rows
        else:
            with pacsv.open_csv(path) as reader:  # the header (and the first block's types, unused)
                available = reader.schema
            rows = None
    except (pa.ArrowInvalid, OSError) as error:
        raise PortfolioInputError(f"input {path}: not a readable {fmt} file ({first_line(error)})") from error
    missing = [name for name in columns if name not in available.names]
    if missing:
        raise PortfolioInputError(f"input {path}: missing column(s) {', '.join(missing)}")
    schema = pa.schema([available.field(name) for name in columns])
    if fmt == "csv":
        schema = pa.schema([pa.field(name, pa.string()) for name in columns])
    return InputFile(path, fmt, "", path.stat().st_size, rows, schema)


def parts(
    file: InputFile, file_index: int, batch_rows: int, rows_per_part: int, categorical: frozenset[str] = frozenset()
) -> Iterator[Part]:
    """The file's parts in order. A part's batches are read only if iterated; for CSV the reader moves past an
    unread part's rows before the next part starts."""
    columns = file.arrow_schema.names
    if file.format == "parquet":
        # Text columns read as Arrow dictionaries, as Parquet stores them: a categorical feed is then built from the
        # few distinct values rather than from a string per row (portfolio.features).
        text = [
            item.name
            for item in file.arrow_schema
            if pa.types.is_string(item.type) or pa.types.is_large_string(item.type)
        ]
        handle = pq.ParquetFile(file.path, read_dictionary=[name for name in text if name in categorical])
        for index, groups in enumerate(_row_group_runs(handle.metadata, rows_per_part)):
            batches = handle.iter_batches(batch_size=batch_rows, row_groups=groups, columns=columns)
            yield Part(_key(file_index, index), file, _named_errors(file.path, batches))
        return
    read, convert = _csv_options(columns, batch_rows)
    try:
        reader = pacsv.open_csv(file.path, read_options=read, convert_options=convert)
    except (pa.ArrowInvalid, OSError) as error:
        raise PortfolioInputError(f"input {file.path}: not a readable csv file ({first_line(error)})") from error
    stream = _named_errors(file.path, iter(reader))
    index, pending = 0, next(stream, None)
    while pending is not None:
        taken = [0]

        def part_batches(first: pa.RecordBatch = pending, taken: list[int] = taken) -> Iterator[pa.RecordBatch]:
            batch: pa.RecordBatch | None = first
            while batch is not None:
                yield batch
                taken[0] += batch.num_rows
                if taken[0] >= rows_per_part:
                    return
                batch = next(stream, None)

        batches = part_batches()
        yield Part(_key(file_index, index), file, batches)
        for _ in batches:  # whatever the consumer left unread (a finished part it skipped)
            pass
        index, pending = index + 1, next(stream, None)


def _row_group_runs(metadata: pq.FileMetaData, rows_per_part: int) -> list[list[int]]:
    """Consecutive row groups of about `rows_per_part` rows (at least one group each)."""
    runs: list[list[int]] = [[]]
    rows = 0
    for group in range(metadata.num_row_groups):
        if runs[-1] and rows >= rows_per_part:
            runs.append([])
            rows = 0
        runs[-1].append(group)
        rows += metadata.row_group(group).num_rows
    return [run for run in runs if run]


def _named_errors(path: Path, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The batches, a read failure (a corrupt page, a truncated file) named with the file."""
    try:
        yield from batches
    except (pa.ArrowInvalid, OSError) as error:
        raise PortfolioInputError(f"input {path}: cannot be read ({first_line(error)})") from error


def _key(file_index: int, part_index: int) -> str:
    return f"{file_index:05d}-{part_index:05d}"
