"""The registry CLI without a reachable tracking server: a quick, clear error instead of minutes of retries."""

from __future__ import annotations

import subprocess
import sys
import time

from scripts.tracking_server import free_port


def test_an_unreachable_tracking_server_is_reported_in_one_line() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "registry", "--tracking-uri", url, "status"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot reach the MLflow tracking server at {url}")
    assert len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - started < 60
