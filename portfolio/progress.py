"""Progress of a long scoring job: a bar with rows and rows/s on a terminal, a log line every few seconds otherwise
(Airflow task logs, CI, containers), so that neither a person nor a log reader waits blind."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

logger = logging.getLogger(__name__)


class Progress:
    def __init__(self, total_rows: int | None, interval_s: float, description: str = "scoring"):
        self.total, self.interval_s, self.description = total_rows, interval_s, description
        self.rows = self.skipped = 0
        self._started = self._logged = time.monotonic()
        self._bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total_rows, unit="rows", unit_scale=True, desc=description, smoothing=0.1)

    def skip(self, rows: int) -> None:
        """Rows an earlier run finished: counted towards the total, not towards this run's rate."""
        self.skipped += rows
        if self._bar is not None:
            self._bar.update(rows)

    def update(self, rows: int) -> None:
        self.rows += rows
        if self._bar is not None:
            self._bar.update(rows)
            return
        now = time.monotonic()
        if now - self._logged >= self.interval_s:
            self._logged = now
            logger.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        of_total = f" of {self.total:,}" if self.total is not None else ""
        done = self.rows + self.skipped
        resumed = f" ({self.skipped:,} finished before)" if self.skipped else ""
        return f"{self.description}: {done:,}{of_total} rows{resumed}, {self.rows / elapsed:,.0f} rows/s"

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()
