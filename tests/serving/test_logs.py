"""The access line's clock and writer (the request path's own log line)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from serving import logs
from serving.logs import AccessLog, timestamp


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
