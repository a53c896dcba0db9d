"""The access line's clock and writer (the request path's own log line)."""

from __future__ import annotations

import io
import json
import logging
import os

import pytest

from serving import logs
from serving.logs import AccessLog, configure_json_logging, timestamp


@pytest.mark.parametrize("seconds", [0.0, 1_764_201_600.0, 1_764_201_600.9996, 1_764_201_601.0005, 1_893_456_000.25])
def test_the_access_clock_formats_like_the_log_formatter(monkeypatch, seconds: float) -> None:
    clock = logs._Clock()
    monkeypatch.setattr(logs.time, "time", lambda: seconds - 1.5)
    clock.now()  # a second formatted before: the next call must not reuse it
    monkeypatch.setattr(logs.time, "time", lambda: seconds)
    assert clock.now() == timestamp(seconds)


def test_an_access_line_is_one_json_object_and_follows_the_logger_level() -> None:
    stream = io.BytesIO()
    access = AccessLog(stream)
    logger = logging.getLogger(AccessLog.name)
    logger.setLevel(logging.WARNING)
    try:
        access.write({"endpoint": "predict", "status": 200})
        assert stream.getvalue() == b""
        logger.setLevel(logging.INFO)
        access.write({"endpoint": "predict", "status": 200, "version": 3})
    finally:
        logger.setLevel(logging.NOTSET)
    (line,) = stream.getvalue().splitlines()
    fields = json.loads(line)
    assert {k: fields[k] for k in ("level", "logger", "message", "endpoint", "status", "version")} == {
        "level": "info", "logger": "serving.access", "message": "request", "endpoint": "predict", "status": 200,
        "version": 3,
    }  # fmt: skip


class BrokenStream(io.RawIOBase):
    def write(self, data) -> int:
        raise BrokenPipeError("stdout went away")


def test_a_broken_stdout_never_fails_the_request(capsys) -> None:
    access = AccessLog(BrokenStream())  # type: ignore[arg-type]
    logger = logging.getLogger(AccessLog.name)
    logger.setLevel(logging.INFO)
    try:
        access.write({"endpoint": "predict"})
        access.write({"endpoint": "predict"})
    finally:
        logger.setLevel(logging.NOTSET)
    assert capsys.readouterr().err.count("not written") == 1  # said once, not once per request


def test_json_logging_keeps_the_record_fields_other_formats_use() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_json_logging()
        record = logging.getLogger("gunicorn.error").makeRecord("gunicorn.error", logging.INFO, "f", 1, "x", (), None)
        assert record.process == os.getpid()  # gunicorn's own format has [%(process)d]
        assert logging.Formatter("%(asctime)s [%(process)d] %(message)s").format(record)
    finally:
        root.handlers[:], root.level = handlers, level
