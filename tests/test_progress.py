"""Long work reports progress as plain log lines where no terminal can draw a bar (CI, containers, task logs)."""

from __future__ import annotations

import logging

import pytest

from scoring import progress as progress_module
from scoring.progress import Progress


def test_without_a_terminal_each_interval_and_the_end_is_one_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scoring.progress")
    with Progress(3, interval_s=3600, description="train MLP", unit="epochs") as progress:
        assert progress._bar is None  # pytest's stderr is no terminal
        progress.update(1, loss="0.5000")
        progress.update(1, loss="0.4000")
        assert caplog.messages == []  # within the interval: nothing yet
        progress.update(1, loss="0.3000", val_auc="0.8300")
    assert len(caplog.messages) == 1  # the end is always said
    assert caplog.messages[0].startswith("train MLP: 3 of 3 epochs, ")
    assert caplog.messages[0].endswith(" epochs/s, loss 0.3000, val_auc 0.8300")
    assert "\r" not in caplog.text


def test_on_a_terminal_a_bar_is_drawn(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(progress_module, "on_terminal", lambda: True)
    caplog.set_level(logging.INFO, logger="scoring.progress")
    with Progress(2, interval_s=0, description="tune", unit="trials") as progress:
        progress.update()
        progress.update()
        assert progress._bar is not None and progress._bar.n == 2
    assert caplog.messages == []  # the bar says it; no log lines besides


def test_work_that_ends_early_still_says_where_it_ended(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scoring.progress")
    with Progress(200, interval_s=3600, description="train MLP", unit="epochs") as progress:
        for _ in range(57):  # early stopping after 57 of 200 epochs
            progress.update(1, loss="0.4")
    assert len(caplog.messages) == 1 and caplog.messages[0].startswith("train MLP: 57 of 200 epochs, ")
