"""The prediction log: every scored row, appended to a capped Redis Stream for the drift job.

One stream entry holds the rows one model scored in one request (columnar JSON), so a 100-row batch is one XADD, not
100. Requests only queue their entries; a background thread sends what is queued in one pipeline every
`flush_interval_s`, which keeps the Redis round trip off the request path. Like the cache it fails open: the entries
of a failed write are dropped and their rows counted, and so are the oldest queued entries beyond `max_pending`
(Redis away for long). `close()` flushes what is left; gunicorn calls it when a worker exits (gunicorn_conf.py).

Entry fields (strings): ts (Unix seconds), variant, version, rows, and data: JSON with request_id, model, features
(feature -> list of values in row order, null = missing), probabilities and applicant_ids (null = none) in that order.
`rows_of` turns an entry back into one dict per row.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import orjson
import redis

from serving.redis_gateway import RedisGateway

logger = logging.getLogger(__name__)

PIPELINE_ENTRIES = 500  # entries per pipeline: bounds one write's size when a backlog is flushed


@dataclass(frozen=True)
class LoggedGroup:
    """The rows one model scored in one request: one entry of the stream."""

    timestamp: float
    request_id: str
    model: str
    version: str
    variant: str
    columns: Mapping[str, list[object]]  # feature -> values in row order (None = missing)
    probabilities: list[float]
    applicant_ids: list[str | None]

    def as_entry(self) -> dict[str, str]:
        # Few fields and one JSON document: packing an XADD costs per field, and this runs for every request.
        data = {
            "request_id": self.request_id,
            "model": self.model,
            "features": self.columns,
            "probabilities": self.probabilities,
            "applicant_ids": self.applicant_ids,
        }
        return {
            "ts": f"{self.timestamp:.3f}",
            "variant": self.variant,
            "version": self.version,
            "rows": str(len(self.probabilities)),
            "data": orjson.dumps(data).decode(),
        }


def rows_of(entry: Mapping[bytes | str, bytes | str]) -> list[dict[str, object]]:
    """One stream entry back as one dict per scored row (what the drift job reads)."""
    fields = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
              for k, v in entry.items()}  # fmt: skip
    data = json.loads(fields["data"])
    columns: dict[str, list[object]] = data["features"]
    shared = {"ts": float(fields["ts"]), "request_id": data["request_id"], "model": data["model"],
              "version": fields["version"], "variant": fields["variant"]}  # fmt: skip
    return [
        {
            **shared,
            "features": {name: values[i] for name, values in columns.items()},
            "probability": probability,
            "applicant_id": data["applicant_ids"][i],
        }  # fmt: skip
        for i, probability in enumerate(data["probabilities"])
    ]


class PredictionLog:
    """Queues scored groups and appends them to the stream from a background thread (see the module's docstring).

    The stream is capped in rows, not entries: an entry holds as many rows as its request had, so each write trims to
    `max_rows` divided by the average rows per entry this writer has seen (Redis trims whole entries, approximately).
    """

    def __init__(
        self,
        redis_gateway: RedisGateway,
        stream: str,
        max_rows: int,
        flush_interval_s: float = 0.25,
        max_pending: int = 10_000,
        on_drop: Callable[[int], None] = lambda rows: None,
    ):
        self.redis, self.stream, self.max_rows = redis_gateway, stream, max_rows
        self.flush_interval_s, self.max_pending, self.on_drop = flush_interval_s, max_pending, on_drop
        self._pending: deque[LoggedGroup] = deque()
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one writer at a time keeps entries in order
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        self._writer_pid: int | None = None
        self._entries_seen, self._rows_seen = 0, 0

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
        """Send everything queued now; return the number of entries written."""
        with self._flushing:
            with self._lock:
                groups = list(self._pending)
                self._pending.clear()
            entries: list[tuple[dict[str, str], int]] = []
            for group in groups:
                try:
                    entries.append((group.as_entry(), len(group.probabilities)))
                except (TypeError, ValueError):  # one bad entry must not take the others with it
                    logger.exception("prediction log: request %s could not be encoded", group.request_id)
                    self.on_drop(len(group.probabilities))
            if not entries:
                return 0
            self._entries_seen += len(entries)
            self._rows_seen += sum(rows for _, rows in entries)
            max_entries = max(1, self.max_rows * self._entries_seen // self._rows_seen)
            sent = 0

            def write(client: redis.Redis) -> None:
                nonlocal sent
                for start in range(0, len(entries), PIPELINE_ENTRIES):
                    chunk = entries[start : start + PIPELINE_ENTRIES]
                    pipeline = client.pipeline(transaction=False)
                    for entry, _ in chunk:
                        pipeline.xadd(self.stream, entry, maxlen=max_entries, approximate=True)
                    pipeline.execute()
                    sent += len(chunk)

            self.redis.call("log_append", write, None)
            if sent < len(entries):
                self.on_drop(sum(rows for _, rows in entries[sent:]))
            return sent

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
