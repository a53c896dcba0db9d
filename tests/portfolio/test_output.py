"""The output folder and the input parts without a model: what a resumed run may reuse, what is refused, that a
failed part leaves nothing, that a skipped CSV part does not shift the next, that a file corrupt part-way is named,
and the progress lines a log reader gets."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from portfolio.errors import PortfolioInputError
from portfolio.output import MANIFEST, OutputFolder
from portfolio.sources import open_inputs, parts
from scoring.progress import Progress

IDENTITY = {
    "model": {"name": "credit-scoring", "version": "3", "precision": "fp32"},
    "inputs": [{"path": "/books/a.parquet", "sha256": "ab"}],
    "id_columns": ["account_id"],
    "engine": "local",
    "partitioning": {"batch_rows": 8192, "rows_per_part": 1000},
}
SCHEMA = pa.schema([("account_id", pa.string()), ("probability_of_default", pa.float64())])


def test_a_run_with_other_parts_or_another_version_is_refused_unless_overwrite(tmp_path: Path) -> None:
    folder = OutputFolder(tmp_path / "out")
    manifest = folder.prepare(IDENTITY, overwrite=False)
    manifest.parts["00000-00000"] = {"rows_in": 1}
    folder.save(manifest)
    assert folder.prepare(IDENTITY, overwrite=False).parts == {"00000-00000": {"rows_in": 1}}  # resumed
    other_parts = {**IDENTITY, "partitioning": {"batch_rows": 4096, "rows_per_part": 1000}}
    with pytest.raises(PortfolioInputError, match=r"for another job \(its partitioning differ\)"):
        folder.prepare(other_parts, overwrite=False)
    other_version = {**IDENTITY, "model": {"name": "credit-scoring", "version": "4", "precision": "int8"}}
    with pytest.raises(
        PortfolioInputError, match="holds credit-scoring version 3's results, not credit-scoring version 4's"
    ):
        folder.prepare(other_version, overwrite=False)
    assert folder.prepare(other_version, overwrite=True).parts == {}


def test_a_folder_of_other_files_is_refused_and_never_cleared(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(PortfolioInputError, match="not empty and not a portfolio job's output"):
        OutputFolder(tmp_path).prepare(IDENTITY, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / MANIFEST).exists()


def test_a_part_that_fails_leaves_no_file(tmp_path: Path) -> None:
    folder = OutputFolder(tmp_path)
    folder.prepare(IDENTITY, overwrite=False)
    batch = pa.RecordBatch.from_arrays([pa.array(["A1"]), pa.array([0.2])], schema=SCHEMA)
    with pytest.raises(RuntimeError, match="disk gone"), folder.part_writer("00000-00000", SCHEMA, SCHEMA) as writer:
        writer.write(batch, batch)
        writer._flush("scores")  # a row group on disk under the temporary name
        raise RuntimeError("disk gone")
    assert sorted(path.name for path in tmp_path.rglob("*") if path.is_file()) == [MANIFEST]
    with folder.part_writer("00000-00000", SCHEMA, SCHEMA) as writer:
        writer.write(batch, batch.slice(0, 0))
    assert pq.read_table(tmp_path / "scores").num_rows == 1 and not list((tmp_path / "rejected").glob("*"))


def test_a_skipped_csv_part_does_not_shift_the_next(tmp_path: Path) -> None:
    path = tmp_path / "book.csv"
    ids = [f"A{i:05d}" for i in range(5000)]
    pacsv.write_csv(pa.table({"account_id": ids, "Age": [str(i % 70) for i in range(5000)]}), path)
    (file,) = open_inputs([path], ["account_id", "Age"])
    seen: list[str] = []
    for index, part in enumerate(parts(file, 0, batch_rows=300, rows_per_part=1000)):
        if index % 2:  # every other part is "finished": left unread
            continue
        seen += [value for batch in part.batches for value in batch.column("account_id").to_pylist()]
    every = [[value for batch in part.batches for value in batch.column("account_id").to_pylist()]
             for part in parts(file, 0, batch_rows=300, rows_per_part=1000)]  # fmt: skip
    assert [value for index, values in enumerate(every) if index % 2 == 0 for value in values] == seen
    assert [value for values in every for value in values] == ids


def test_a_parquet_file_corrupt_part_way_is_named(tmp_path: Path) -> None:
    path = tmp_path / "book.parquet"
    table = pa.table({"account_id": [f"A{i:07d}" for i in range(200_000)], "Age": [float(i) for i in range(200_000)]})
    pq.write_table(table, path, row_group_size=50_000, compression="none")
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096  # a damaged page; the footer is intact
    path.write_bytes(bytes(data))
    (file,) = open_inputs([path], ["account_id", "Age"])
    with pytest.raises(PortfolioInputError, match=rf"^input {path}: cannot be read"):
        for part in parts(file, 0, batch_rows=8192, rows_per_part=50_000):
            for _ in part.batches:
                pass


def test_without_a_terminal_progress_is_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scoring.progress")
    with Progress(total=3000, interval_s=1e-9) as progress:
        progress.skip(1000)
        progress.update(500)
    assert caplog.messages and caplog.messages[-1].startswith("scoring: 1,500 of 3,000 rows (1,000 finished before), ")
    assert caplog.messages[-1].endswith(" rows/s")
