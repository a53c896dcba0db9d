"""Structured JSON logs on stdout (one object per line) so that Loki/Promtail can index the gateway's fields."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from datetime import UTC, datetime
from typing import IO, Any

import orjson

# Attributes every LogRecord has; anything else passed via `extra=` is a field of the JSON line.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def timestamp(seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds: 2026-11-27T03:36:05.629+00:00."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key[0] != "_":
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class _Clock:
    """`timestamp(time.time())` for the access line, formatting the date and time once per second (a third of the
    cost of building a datetime for every request)."""

    def __init__(self) -> None:
        self._formatted = (-1, "")  # (second, its date and time): one attribute, so threads see both or neither

    def now(self) -> str:
        now = time.time()
        second = int(now)
        formatted_second, prefix = self._formatted
        if second != formatted_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._formatted = (second, prefix)
        return f"{prefix}.{int((now - second) * 1000):03d}+00:00"


class AccessLog:
    """One JSON line per request on stdout, shaped like JsonFormatter's lines (logger "serving.access").

    The line is written straight to stdout's byte stream: it is the one record of every request, and the logging
    module's path (a LogRecord, handler lock, formatter walking the record's attributes) costs a noticeable share of a
    request (docs/serving.md, "Where the time goes"). Whether it is written still follows the logging configuration:
    the line goes out only while the "serving.access" logger is enabled for INFO.
    """

    name = "serving.access"

    def __init__(self, stream: IO[bytes] | None = None):
        self._stream = stream  # None: sys.stdout's buffer at the time of writing (gunicorn and tests swap stdout)
        self._logger = logging.getLogger(self.name)
        self._lock = threading.Lock()  # one line per write, whole, also under threaded workers
        self._clock = _Clock()
        self._failures = 0

    def write(self, fields: dict[str, Any]) -> None:
        if not self._logger.isEnabledFor(logging.INFO):
            return
        line = {"ts": self._clock.now(), "level": "info", "logger": self.name, "message": "request", **fields}
        data = orjson.dumps(line, default=str, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS)
        try:
            stream = self._stream or sys.stdout.buffer
            with self._lock:
                stream.write(data)
                stream.flush()
        except (OSError, ValueError, AttributeError) as error:  # a closed or broken stdout must not fail the request
            self._failures += 1
            if self._failures == 1 or self._failures % 10_000 == 0:
                # What logging.Handler.handleError does; the log handlers write to the same broken stdout.
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.write(f"access log: {self._failures} line(s) not written: {error!r}\n")


def configure_json_logging(level: str = "INFO") -> None:
    """Called once by the process entry point (gunicorn config or `python -m serving`), never at import."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "mlflow", "alembic", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
