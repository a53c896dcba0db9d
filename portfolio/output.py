"""The output folder: `scores/` and `rejected/` Parquet datasets (part files) and `_manifest.json`, which records
whose results they are (model version, input files, engine, part size) and which parts are finished with their
statistics.

Every file appears whole or not at all: a part is written under a temporary name and renamed, and only then recorded
in the manifest (itself replaced atomically). A run killed part-way and started again skips the recorded parts and
rewrites any other part under the same name, so the output holds every input row exactly once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from portfolio.errors import PortfolioInputError
from portfolio.scorer import LOW_CARDINALITY_COLUMNS, ScoringStats

logger = logging.getLogger(__name__)

MANIFEST = "_manifest.json"
SCORES = "scores"
REJECTED = "rejected"
TEMPORARY_PREFIX = ".tmp-"
MANIFEST_FORMAT = 1
# Rows gathered before a row group is written: readers like row groups of 10^5-10^6 rows, and 128 Ki rows of output
# are ~10 MB, which bounds the job's memory as much as a batch does.
ROW_GROUP_ROWS = 131_072


@dataclass
class Manifest:
    identity: dict[str, Any]  # model, inputs, engine, id columns, part size: what the parts are results of
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> ScoringStats.as_dict()
    complete: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"format": MANIFEST_FORMAT, **self.identity, "parts": self.parts, "complete": self.complete}


def _describe_model(identity: dict[str, Any]) -> str:
    model = identity.get("model", {})
    return f"{model.get('name')} version {model.get('version')}"


class OutputFolder:
    def __init__(self, path: Path):
        self.path = path
        self.manifest_path = path / MANIFEST

    def prepare(self, identity: dict[str, Any], overwrite: bool) -> Manifest:
        """The manifest to continue: the folder's own if it holds this job's parts, a new one if it is empty (or
        `overwrite`). Refused: a folder holding another version's or other inputs' results, or files of its own."""
        if self.path.exists() and not self.path.is_dir():
            raise PortfolioInputError(f"output {self.path}: exists and is not a folder")
        existing = self._read_manifest()
        if existing is None and self.path.exists():
            foreign = [item.name for item in self.path.iterdir() if not item.name.startswith(TEMPORARY_PREFIX)]
            if foreign:
                raise PortfolioInputError(
                    f"output {self.path}: not empty and not a portfolio job's output ({', '.join(sorted(foreign)[:3])}"
                    "...); choose an empty or new folder"
                )
        if existing is not None and not overwrite:
            ours = {key: value for key, value in existing.items() if key not in ("format", "parts", "complete")}
            if ours.get("model") != identity["model"]:
                raise PortfolioInputError(
                    f"output {self.path} holds {_describe_model(ours)}'s results, not {_describe_model(identity)}'s: "
                    "choose another folder, or --overwrite to replace them"
                )
            differing = sorted(key for key in identity if ours.get(key) != identity[key])
            if differing:
                raise PortfolioInputError(
                    f"output {self.path} holds results of the same version for another job (its {', '.join(differing)} "
                    "differ): choose another folder, or --overwrite to replace them"
                )
            self._clear_temporary()
            manifest = Manifest(identity, dict(existing.get("parts", {})), bool(existing.get("complete")))
            if manifest.parts:
                logger.info("resuming into %s: %d part(s) already finished", self.path, len(manifest.parts))
            return manifest
        if existing is not None:
            logger.info("--overwrite: removing %s's results from %s", _describe_model(existing), self.path)
        self.clear()
        self.path.mkdir(parents=True, exist_ok=True)
        manifest = Manifest(identity)
        self.save(manifest)
        return manifest

    def clear(self) -> None:
        """Remove this job's own files (never anything else the folder holds)."""
        for name in (SCORES, REJECTED):
            shutil.rmtree(self.path / name, ignore_errors=True)
        self.manifest_path.unlink(missing_ok=True)
        self._clear_temporary()

    def _clear_temporary(self) -> None:
        if not self.path.exists():
            return
        for folder in (self.path, self.path / SCORES, self.path / REJECTED):
            if folder.is_dir():
                for item in folder.glob(f"{TEMPORARY_PREFIX}*"):
                    shutil.rmtree(item) if item.is_dir() else item.unlink()

    def _read_manifest(self) -> dict[str, Any] | None:
        if not self.manifest_path.is_file():
            return None
        try:
            loaded = json.loads(self.manifest_path.read_text())
        except (OSError, ValueError) as error:
            raise PortfolioInputError(f"output {self.manifest_path}: unreadable manifest ({error})") from error
        if not isinstance(loaded, dict) or loaded.get("format") != MANIFEST_FORMAT:
            raise PortfolioInputError(f"output {self.manifest_path}: not a manifest this job wrote")
        return loaded

    def save(self, manifest: Manifest) -> None:
        _replace_atomically(self.manifest_path, json.dumps(manifest.as_dict(), indent=1, sort_keys=True).encode())

    def record(self, manifest: Manifest, key: str, stats: ScoringStats) -> None:
        manifest.parts[key] = stats.as_dict()
        self.save(manifest)

    @contextmanager
    def part_writer(self, key: str, scores_schema: pa.Schema, rejected_schema: pa.Schema) -> Iterator[PartWriter]:
        """Writers of one part's two files under temporary names, renamed into place only if the block ends
        without an error (a part with no rejects has no rejected file)."""
        writer = PartWriter(self.path, key, scores_schema, rejected_schema)
        try:
            yield writer
        except BaseException:
            writer.abandon()
            raise
        writer.commit()


class PartWriter:
    def __init__(self, root: Path, key: str, scores_schema: pa.Schema, rejected_schema: pa.Schema):
        name = f"part-{key}.parquet"
        self.final = {SCORES: root / SCORES / name, REJECTED: root / REJECTED / name}
        self.temporary = {kind: path.with_name(TEMPORARY_PREFIX + name) for kind, path in self.final.items()}
        for path in self.final.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)  # an earlier attempt's file of this part, never recorded: rewritten
        self._schemas = {SCORES: scores_schema, REJECTED: rejected_schema}
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._pending: dict[str, list[pa.RecordBatch]] = {SCORES: [], REJECTED: []}
        self._pending_rows = {SCORES: 0, REJECTED: 0}

    def write(self, scored: pa.RecordBatch, rejected: pa.RecordBatch) -> None:
        for kind, batch in ((SCORES, scored), (REJECTED, rejected)):
            if batch.num_rows:
                self._pending[kind].append(batch)
                self._pending_rows[kind] += batch.num_rows
                if self._pending_rows[kind] >= ROW_GROUP_ROWS:
                    self._flush(kind)

    def _flush(self, kind: str) -> None:
        if kind not in self._writers:
            schema = self._schemas[kind]
            dictionary = [name for name in schema.names if name in LOW_CARDINALITY_COLUMNS]
            self._writers[kind] = pq.ParquetWriter(self.temporary[kind], schema, use_dictionary=dictionary)
        table = pa.Table.from_batches(self._pending[kind], schema=self._schemas[kind])
        self._writers[kind].write_table(table, row_group_size=ROW_GROUP_ROWS)
        self._pending[kind], self._pending_rows[kind] = [], 0

    def commit(self) -> None:
        for kind, pending in self._pending.items():
            # A part with no rejects has no rejected file; its scores file exists even if every row was rejected.
            if pending or (kind == SCORES and kind not in self._writers):
                self._flush(kind)
        for kind, writer in self._writers.items():
            writer.close()
            _fsync(self.temporary[kind])
            os.replace(self.temporary[kind], self.final[kind])

    def abandon(self) -> None:
        for kind, writer in self._writers.items():
            writer.close()
            self.temporary[kind].unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _replace_atomically(path: Path, payload: bytes) -> None:
    temporary = path.with_name(TEMPORARY_PREFIX + path.name)
    with temporary.open("wb") as handle:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
