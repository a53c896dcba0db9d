"""`make bench-batch`'s script on a small book against a real registered version: every row of its table is
measured, and the re-encoded graph it reports scores exactly as the registered one."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Served

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_the_batch_benchmark_measures_every_row(served: Served, tmp_path: Path) -> None:
    command = [
        sys.executable, "scripts/bench_batch.py", "--tracking-uri", served.url, "--model-name", served.model_name,
        "--rows", "40000", "--rss-rows", "80000", "--repeats", "1", "--no-spark", "--workdir", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "PORTFOLIO_MODEL_CACHE_DIR": str(tmp_path / "models")}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        match["label"] + " " + match["what"]: float(match["rate"])
        for match in re.finditer(
            r"^\| (?P<label>\([a-d]'?\)) \| (?P<what>[^|]+) \| (?P<rate>[\d.]+) \|", result.stdout, re.M
        )
    }
    assert len(rows) == 7 and all(rate > 0 for rate in rows.values()), result.stdout
    assert re.search(r"\(b\) peak RSS: 40,000 rows [\d,]+ MB, 80,000 rows [\d,]+ MB", result.stdout)
    assert "book rows (dictionary columns): {'rows': 40000, 'max_abs_diff': 0.0" in result.stdout
