"""Progress of long work: a bar on a terminal, a plain log line every few seconds otherwise (Airflow task logs, CI,
containers, `mlflow run` piped to a file), where a bar's carriage returns would only be noise. One rule for every
long loop: training epochs, tuning trials, benchmark cells, stream pages, portfolio rows."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 10.0


def on_terminal() -> bool:
    """Whether a bar can be drawn: stderr (where it goes) is a terminal."""
    return sys.stderr.isatty()


class Progress:
    """Counts `unit`s of work towards `total` (None: unknown); `details` (loss, AUC) go on the bar or the line."""

    def __init__(
        self,
        total: int | None,
        interval_s: float = DEFAULT_INTERVAL_S,
        description: str = "scoring",
        unit: str = "rows",
    ):
        self.total, self.interval_s, self.description, self.unit = total, interval_s, description, unit
        self.done = self.skipped = 0
        self._said = 0  # done + skipped when the last line was logged
        self.details: dict[str, str] = {}
        self._started = self._logged = time.monotonic()
        self._bar = None
        if on_terminal():
            from tqdm import tqdm

            scaled = unit == "rows"
            self._bar = tqdm(total=total, unit=unit, unit_scale=scaled, desc=description, smoothing=0.1, leave=False)

    @property
    def rows(self) -> int:
        """What this run did (the portfolio job's name for it)."""
        return self.done

    def skip(self, count: int) -> None:
        """Work an earlier run finished: counted towards the total, not towards this run's rate."""
        self.skipped += count
        if self._bar is not None:
            self._bar.update(count)

    def update(self, count: int = 1, **details: object) -> None:
        self.done += count
        if details:
            self.details = {key: str(value) for key, value in details.items()}
        if self._bar is not None:
            if details:
                self._bar.set_postfix(self.details, refresh=False)
            self._bar.update(count)
            return
        now = time.monotonic()
        if now - self._logged >= self.interval_s or (self.total is not None and self.done + self.skipped >= self.total):
            self._logged = now
            self._say()

    def _say(self) -> None:
        self._said = self.done + self.skipped
        logger.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        of_total = f" of {self.total:,}" if self.total is not None else ""
        done = self.done + self.skipped
        resumed = f" ({self.skipped:,} finished before)" if self.skipped else ""
        details = "".join(f", {key} {value}" for key, value in self.details.items())
        rate = f"{self.done / elapsed:,.0f} {self.unit}/s"
        return f"{self.description}: {done:,}{of_total} {self.unit}{resumed}, {rate}{details}"

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.done + self.skipped != self._said:  # stopped early (training's patience) or between two lines
            self._say()
