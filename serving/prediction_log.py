"""The prediction log: every scored row, appended to a capped Redis Stream for the drift job.

Requests only queue what they scored (one `LoggedGroup` per request and model); a background thread sends the queue
every `flush_interval_s` and packs it into few entries: one entry holds the groups of many requests, up to about
`entry_max_rows` rows, so a busy gateway writes a handful of XADDs per interval instead of one per request (an XADD
costs the worker more CPU than scoring a row: docs/serving.md). Like the cache it fails open: the groups of a failed
write are dropped and their rows counted, and so are the oldest queued groups beyond `max_pending` (Redis away long).
`close()` flushes what is left; a worker calls it as it exits (serving/wsgi.py, gunicorn_conf.py).

Entry fields (strings): `rows` (scored rows in the entry) and `data`, a JSON array with one object per group:
ts (Unix seconds), request_id, model, version, variant, features (feature -> list of values in row order, null =
missing), probabilities and applicant_ids (null = none). `rows_of` turns an entry back into one dict per row,
`groups_of` into its groups (columns as logged: what the drift job reads).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from redis.typing import EncodableT, FieldT

from serving.redis_gateway import LOG_APPEND, RedisGateway

logger = logging.getLogger(__name__)

PIPELINE_ENTRIES = 100  # XADDs per pipeline: bounds one write's size when a backlog is flushed


@dataclass(frozen=True)
class LoggedGroup:
    """The rows one model scored in one request."""

    timestamp: float
    request_id: str
    model: str
    version: str
    variant: str
    columns: Mapping[str, list[object]]  # feature -> values in row order (None = missing)
    probabilities: list[float]
    applicant_ids: list[str | None]

    def encoded(self) -> bytes:
        """The group as one JSON object of an entry's `data` array."""
        group = {
            "ts": round(self.timestamp, 3),
            "request_id": self.request_id,
            "model": self.model,
            "version": self.version,
            "variant": self.variant,
            "features": self.columns,
            "probabilities": self.probabilities,
            "applicant_ids": self.applicant_ids,
        }
        try:
            return orjson.dumps(group)
        except orjson.JSONEncodeError:
            # orjson writes integers up to 64 bits; a larger one (it can only come through the standard library's
            # parser, see fast_json.py) is written as the float the model saw.
            group["features"] = {
                name: [float(value) if type(value) is int else value for value in values]
                for name, values in self.columns.items()
            }
            return orjson.dumps(group)


def groups_of(entry: Mapping[bytes | str, bytes | str]) -> list[dict[str, Any]]:
    """One stream entry back as its groups (one per request and model), each with its columns as logged.

    Also reads entries of the earlier layout (one request per entry: `ts`, `variant` and `version` as entry fields,
    `data` one JSON object), which a stream may still hold after an upgrade.
    """
    fields = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
              for k, v in entry.items()}  # fmt: skip
    data = json.loads(fields["data"])
    if isinstance(data, dict):
        data = [{**data, "ts": float(fields["ts"]), "version": fields["version"], "variant": fields["variant"]}]
    groups: list[dict[str, Any]] = data
    return groups


def rows_of(entry: Mapping[bytes | str, bytes | str]) -> list[dict[str, object]]:
    """One stream entry back as one dict per scored row, in the order they were scored."""
    rows: list[dict[str, object]] = []
    for group in groups_of(entry):
        columns: dict[str, list[object]] = group["features"]
        shared = {key: group[key] for key in ("ts", "request_id", "model", "version", "variant")}
        rows.extend(
            {
                **shared,
                "features": {name: values[i] for name, values in columns.items()},
                "probability": probability,
                "applicant_id": group["applicant_ids"][i],
            }
            for i, probability in enumerate(group["probabilities"])
        )
    return rows


@dataclass(frozen=True)
class _Entry:
    data: bytes  # the JSON array of the entry's groups
    rows: int
    groups: int


def _packed(encoded: list[tuple[bytes, int]], entry_max_rows: int) -> list[_Entry]:
    """Encoded groups (JSON, rows) joined into entries of about `entry_max_rows` rows; a group is never split."""
    entries: list[_Entry] = []
    parts: list[bytes] = []
    rows = 0
    for number, (part, group_rows) in enumerate(encoded, start=1):
        parts.append(part)
        rows += group_rows
        if rows >= entry_max_rows or number == len(encoded):
            entries.append(_Entry(b"[" + b",".join(parts) + b"]", rows, len(parts)))
            parts, rows = [], 0
    return entries


class PredictionLog:
    """Queues scored groups and appends them to the stream from a background thread (see the module's docstring).

    The stream is capped in rows, not entries: an entry holds as many rows as the requests packed into it, so each
    write trims to the number of newest entries that hold `max_rows` rows (Redis trims whole entries, approximately).
    """

    def __init__(
        self,
        redis_gateway: RedisGateway,
        stream: str,
        max_rows: int,
        flush_interval_s: float = 0.25,
        max_pending: int = 10_000,
        entry_max_rows: int = 1000,
        on_drop: Callable[[int], None] = lambda rows: None,
    ):
        self.redis, self.stream, self.max_rows = redis_gateway, stream, max_rows
        self.flush_interval_s, self.max_pending, self.on_drop = flush_interval_s, max_pending, on_drop
        self.entry_max_rows = entry_max_rows
        self._pending: deque[LoggedGroup] = deque()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one writer at a time keeps entries in order
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._writer_pid: int | None = None
        self._recent: deque[int] = deque()  # rows of this writer's newest entries, about max_rows of them in all
        self._recent_rows = 0

    def append(self, groups: list[LoggedGroup]) -> None:
        dropped = 0
        with self._lock:
            self._pending.extend(groups)
            while len(self._pending) > self.max_pending:  # Redis has been away for long: the oldest make way
                dropped += len(self._pending.popleft().probabilities)
        if dropped:
            self.on_drop(dropped)
        if self._stop.is_set():
            self.flush()  # closed: no writer any more, so send now
        else:
            self._ensure_writer()

    def flush(self) -> int:
        """Send everything queued now; return the number of groups (requests' rows per model) written."""
        with self._flushing:
            with self._lock:
                groups = list(self._pending)
                self._pending.clear()
            encoded: list[tuple[bytes, int]] = []
            for group in groups:
                try:
                    encoded.append((group.encoded(), len(group.probabilities)))
                except (TypeError, ValueError):  # one bad group must not take the others with it
                    logger.exception("prediction log: request %s could not be encoded", group.request_id)
                    self.on_drop(len(group.probabilities))
            if not encoded:
                return 0
            entries = _packed(encoded, self.entry_max_rows)
            max_entries = self._entries_for_max_rows(entries)
            sent = 0

            def write(client: redis.Redis) -> None:
                nonlocal sent
                for start in range(0, len(entries), PIPELINE_ENTRIES):
                    chunk = entries[start : start + PIPELINE_ENTRIES]
                    pipeline = client.pipeline(transaction=False)
                    for entry in chunk:
                        fields: dict[FieldT, EncodableT] = {"rows": str(entry.rows), "data": entry.data}
                        pipeline.xadd(self.stream, fields, maxlen=max_entries, approximate=True)
                    pipeline.execute()
                    sent += len(chunk)

            self.redis.call(LOG_APPEND, write, None)
            if sent < len(entries):
                self.on_drop(sum(entry.rows for entry in entries[sent:]))
            return sum(entry.groups for entry in entries[:sent])

    def _entries_for_max_rows(self, entries: list[_Entry]) -> int:
        """How many of the newest entries hold `max_rows` rows: the MAXLEN of this write.

        Counted over the entries this writer wrote last, because rows per entry follow the traffic (requests per
        flush interval): an average since start-up would keep far more rows than `max_rows` after a quiet spell and
        far fewer after a busy one. Other workers' entries interleave with these; with similar traffic the newest
        MAXLEN entries of the stream hold about `max_rows` rows.
        """
        for entry in entries:
            self._recent.append(entry.rows)
            self._recent_rows += entry.rows
        while len(self._recent) > 1 and self._recent_rows - self._recent[0] >= self.max_rows:
            self._recent_rows -= self._recent.popleft()
        # Until this writer has written max_rows rows, the entries still to come are extrapolated from its average:
        # trimming to what it wrote so far would throw away other workers' entries, and rows not yet trimmed.
        missing_rows = max(0, self.max_rows - self._recent_rows)
        return len(self._recent) + math.ceil(missing_rows * len(self._recent) / self._recent_rows)

    def close(self) -> None:
        """Stop the writer and flush what is queued (a worker's last act); later appends are sent at once."""
        self._stop.set()
        writer = self._writer
        if writer is not None and writer.is_alive() and writer is not threading.current_thread():
            writer.join(timeout=5)
        self.flush()

    def _writer_running(self) -> bool:
        return self._writer_pid == os.getpid() and self._writer is not None and self._writer.is_alive()

    def _ensure_writer(self) -> None:
        # Started lazily and per process: a thread does not survive gunicorn's fork.
        if self._writer_running():
            return
        with self._lock:
            if self._writer_running():
                return
            self._writer = threading.Thread(target=self._run, name="prediction-log-writer", daemon=True)
            self._writer_pid = os.getpid()
            self._writer.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception:  # the writer must outlive anything unexpected; the loss is logged
                logger.exception("prediction log flush failed")
