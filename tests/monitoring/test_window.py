"""Reading the window from a real Redis stream written by the gateway's own PredictionLog: pages, limits, versions."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import redis

from monitoring.errors import MonitoringInputError
from monitoring.window import SCORE_COLUMN, WindowSpec, read_file_window, read_stream_window
from serving.prediction_log import LoggedGroup, PredictionLog
from serving.redis_gateway import CircuitBreaker, RedisGateway
from tests.conftest import RedisProcess


def group(index: int, rows: int, version: str, at: float, model: str = "credit") -> LoggedGroup:
    return LoggedGroup(
        timestamp=at,
        request_id=f"r{index}",
        model=model,
        version=version,
        variant="A" if version == "1" else "B",
        columns={"Income": [float(index)] * rows, "Home": ["rent"] * (rows - 1) + [None]},
        probabilities=[0.1] * rows,
        applicant_ids=[None] * rows,
    )


def fill(url: str, groups: list[LoggedGroup], entry_max_rows: int = 10) -> redis.Redis:
    client = redis.Redis.from_url(url)
    log = PredictionLog(
        RedisGateway(client, CircuitBreaker()), "stream", max_rows=100_000, entry_max_rows=entry_max_rows
    )
    log.append(groups)
    log.flush()
    return client


def test_the_newest_rows_per_version_read_in_pages(redis_server: RedisProcess) -> None:
    now = time.time()
    groups = [group(i, 5, "1" if i % 3 else "2", now - 100 + i) for i in range(60)]  # 300 rows, 40 and 20 groups
    groups.append(group(99, 5, "1", now, model="another-model"))
    client = fill(redis_server.url, groups)
    assert client.xlen("stream") > 20  # many entries: several pages of 4

    windows = read_stream_window(client, "stream", "credit", WindowSpec(), sample_size=1000, seed=1, page_entries=4)
    assert [(w.version, w.rows) for w in windows] == [("1", 200), ("2", 100)]
    first = windows[0]
    assert first.feature_names == {"Income", "Home"} and first.model == "credit" and not first.sampled
    assert first.start == pytest.approx(now - 99, abs=0.01) and first.end == pytest.approx(now - 41, abs=0.01)
    assert set(first.frame.columns) == {"Income", "Home", SCORE_COLUMN}
    assert first.frame["Home"].isna().sum() == 40  # one missing value per request, as logged

    newest = read_stream_window(client, "stream", "credit", WindowSpec(last_rows=52), 1000, 1, page_entries=4)
    assert sum(w.rows for w in newest) == 52
    # The newest 52 rows: the last ten groups whole and two rows of the one before.
    assert sorted(pd.concat([w.frame for w in newest])["Income"].unique()) == list(range(49, 60))

    # Groups are stamped now-100+i: the last 60.5 s hold groups 40..59, 100 rows.
    recent = read_stream_window(client, "stream", "credit", WindowSpec(since_seconds=60.5), 1000, 1, 4, now=now)
    assert sum(w.rows for w in recent) == 100

    sampled = read_stream_window(client, "stream", "credit", WindowSpec(), sample_size=120, seed=1, page_entries=4)
    assert [(w.rows, len(w.frame), w.sampled, w.sample_seed) for w in sampled] == [
        (200, 120, True, 1),
        (100, 100, False, 1),
    ]


def test_an_empty_stream_has_no_window(redis_server: RedisProcess) -> None:
    client = redis.Redis.from_url(redis_server.url)
    assert read_stream_window(client, "absent", "credit", WindowSpec(), 100, 1) == []


def test_a_file_window_and_its_errors(tmp_path: Path) -> None:
    path = tmp_path / "applicants.csv"
    pd.DataFrame({"Income": [1.0, 2.0, 3.0], "Home": ["rent", None, "owner"]}).to_csv(path, index=False)
    window = read_file_window(path, "credit", "3", sample_size=2, seed=4)
    assert (window.rows, len(window.frame), window.sampled, window.version) == (3, 2, True, "3")
    assert window.feature_names == {"Income", "Home"} and window.source == f"file {path}"
    with pytest.raises(MonitoringInputError, match="does not exist"):
        read_file_window(tmp_path / "nope.csv", "credit", "1", 10, 1)
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(MonitoringInputError, match="unsupported format '.json'"):
        read_file_window(tmp_path / "data.json", "credit", "1", 10, 1)
    (tmp_path / "broken.parquet").write_text("not parquet")
    with pytest.raises(MonitoringInputError, match="broken.parquet cannot be read"):
        read_file_window(tmp_path / "broken.parquet", "credit", "1", 10, 1)


def test_bad_window_limits_are_refused() -> None:
    with pytest.raises(MonitoringInputError, match="--last-rows"):
        WindowSpec(last_rows=0)
    with pytest.raises(MonitoringInputError, match="--since"):
        WindowSpec(since_seconds=-1)


def write_at(client: redis.Redis, written_at: float, groups: list[LoggedGroup]) -> None:
    """An entry as the gateway's writer packs it, written with the stream id of `written_at` (an older entry)."""
    data = b"[" + b",".join(g.encoded() for g in groups) + b"]"
    rows = sum(len(g.probabilities) for g in groups)
    client.xadd("stream", {"rows": str(rows), "data": data}, id=f"{int(written_at * 1000)}-0")


def test_a_data_interval_reads_exactly_its_rows_even_from_entries_written_after_it(redis_server: RedisProcess) -> None:
    client = redis.Redis.from_url(redis_server.url)
    start = 1_700_000_000.0
    # Hourly entries: each written a few seconds after the requests it holds; the last one of the interval's hour
    # is written after the interval's end, holding one request scored before it and one after.
    for hour in range(5):
        at = start + hour * 3600
        write_at(client, at + 2, [group(hour * 10, 4, "1", at), group(hour * 10 + 1, 4, "1", at + 1800)])
        if hour == 3:
            late = [group(90, 3, "1", at - 1), group(91, 3, "1", at + 1)]
            write_at(client, at + 5, late)

    spec = WindowSpec(start=start + 3600, end=start + 3 * 3600)  # hours 1 and 2: 4 groups of 4, plus group 90
    (window,) = read_stream_window(client, "stream", "credit", spec, 1000, 1, page_entries=1)
    assert sorted(window.frame["Income"].unique()) == [10.0, 11.0, 20.0, 21.0, 90.0]
    assert window.rows == 19 and window.start == start + 3600 and window.end == start + 3 * 3600 - 1
    again = read_stream_window(client, "stream", "credit", spec, 1000, 1, page_entries=3)
    assert again[0].frame.equals(window.frame)  # the same rows whatever the paging: a re-run reports the same window

    seen: list[int] = []
    newest = WindowSpec(last_rows=6, start=start + 3600)
    (window,) = read_stream_window(client, "stream", "credit", newest, 1000, 1, page_entries=1, on_rows=seen.append)
    assert window.rows == 6 and sum(seen) == 6
    assert sorted(window.frame["Income"].unique()) == [41.0] + [] or window.frame["Income"].max() == 41.0


def test_a_window_must_end_after_it_starts() -> None:
    with pytest.raises(MonitoringInputError, match="must be before its end"):
        WindowSpec(start=10.0, end=10.0)


def test_groups_with_different_columns_line_up_with_missing_values(redis_server: RedisProcess) -> None:
    # One-row groups packed a few per entry (thin traffic), one of them without `Home` and one with an extra column:
    # every column keeps one value per row, None where a group did not carry it.
    now = time.time()
    groups = [group(index, 1, "1", now) for index in range(6)]
    groups[2] = LoggedGroup(now, "r2", "credit", "1", "A", {"Income": [2.0]}, [0.2], [None])
    groups[4] = LoggedGroup(
        now, "r4", "credit", "1", "A", {"Income": [4.0], "Home": ["own"], "Extra": [1]}, [0.4], [None]
    )
    client = fill(redis_server.url, groups, entry_max_rows=3)
    (window,) = read_stream_window(client, "stream", "credit", WindowSpec(), sample_size=100, seed=0)
    assert window.rows == 6 and window.feature_names == {"Income", "Home", "Extra"}
    frame = window.frame.sort_values("Income").reset_index(drop=True)
    assert frame["Income"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert frame["Home"].isna().tolist() == [True, True, True, True, False, True]  # group() logs its last row as None
    assert frame["Extra"].notna().tolist() == [False, False, False, False, True, False]
    assert frame[SCORE_COLUMN].tolist()[2] == 0.2
