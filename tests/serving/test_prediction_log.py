"""The prediction log against a real Redis: columnar entries, the background writer, capping and failing open."""

from __future__ import annotations

import json
import threading
import time

import redis

from serving.prediction_log import LoggedGroup, PredictionLog, _Entry, rows_of
from serving.redis_gateway import CircuitBreaker, RedisGateway


def group(request_id: str, probabilities: list[float], version: str = "3") -> LoggedGroup:
    return LoggedGroup(
        timestamp=1_764_201_600.5,
        request_id=request_id,
        model="credit",
        version=version,
        variant="B",
        columns={"Age": [30.0, None][: len(probabilities)], "Home": ["rent", None][: len(probabilities)]},
        probabilities=probabilities,
        applicant_ids=["a-1", None][: len(probabilities)],
    )


def prediction_log(url: str, errors: list[str] | None = None, **kwargs) -> PredictionLog:
    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    gateway = RedisGateway(
        client, CircuitBreaker(threshold=2, cooldown_s=60), (errors if errors is not None else []).append
    )
    return PredictionLog(gateway, "predictions", **{"max_rows": 1000, "flush_interval_s": 60, **kwargs})


def test_an_entry_holds_every_row_of_a_group_and_reads_back_row_by_row(redis_server) -> None:
    log = prediction_log(redis_server.url)
    log.append([group("r1", [0.25, 0.5])])
    assert log.flush() == 1
    ((_, entry),) = redis.Redis.from_url(redis_server.url).xrange("predictions")
    assert entry[b"rows"] == b"2"
    assert rows_of(entry) == [
        {"ts": 1_764_201_600.5, "request_id": "r1", "model": "credit", "version": "3", "variant": "B",
         "features": {"Age": 30.0, "Home": "rent"}, "probability": 0.25, "applicant_id": "a-1"},
        {"ts": 1_764_201_600.5, "request_id": "r1", "model": "credit", "version": "3", "variant": "B",
         "features": {"Age": None, "Home": None}, "probability": 0.5, "applicant_id": None},
    ]  # fmt: skip


def writer_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "prediction-log-writer"}


def test_the_writer_thread_sends_queued_entries_without_a_flush_call(redis_server) -> None:
    before = writer_threads()
    log = prediction_log(redis_server.url, flush_interval_s=0.05)
    log.append([group("r1", [0.1])])
    raw = redis.Redis.from_url(redis_server.url)
    deadline = time.monotonic() + 5
    while raw.xlen("predictions") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert raw.xlen("predictions") == 1
    (writer,) = writer_threads() - before
    log.close()
    assert not writer.is_alive()


def logged_request_ids(url: str) -> list[str]:
    entries = redis.Redis.from_url(url).xrange("predictions")
    return [row["request_id"] for _, entry in entries for row in rows_of(entry)]


def test_close_sends_what_is_still_queued(redis_server) -> None:
    log = prediction_log(redis_server.url)
    log.append([group(f"r{i}", [0.1]) for i in range(3)])
    log.close()
    assert logged_request_ids(redis_server.url) == ["r0", "r1", "r2"]


def test_many_requests_share_an_entry_of_about_entry_max_rows_rows(redis_server) -> None:
    log = prediction_log(redis_server.url, entry_max_rows=10)
    log.append([group(f"r{i}", [0.1, 0.2] if i % 2 else [0.3]) for i in range(30)])  # 45 rows
    assert log.flush() == 30
    entries = redis.Redis.from_url(redis_server.url).xrange("predictions")
    assert [int(entry[b"rows"]) for _, entry in entries] == [10, 11, 10, 11, 3]  # groups are never split
    assert logged_request_ids(redis_server.url) == [f"r{i}" for i in range(30) for _ in range(2 if i % 2 else 1)]


def test_the_stream_is_capped(redis_server) -> None:
    log = prediction_log(redis_server.url, max_rows=50, entry_max_rows=1)
    log.append([group(f"r{i}", [i / 1000]) for i in range(1200)])  # more than one pipeline's worth
    assert log.flush() == 1200
    raw = redis.Redis.from_url(redis_server.url)
    assert 50 <= raw.xlen("predictions") < 1200  # one row per entry: approximate trimming keeps about max_rows
    ((_, last),) = raw.xrevrange("predictions", count=1)
    assert rows_of(last)[0]["request_id"] == "r1199"


def test_redis_down_drops_and_counts_rows_and_a_full_queue_drops_the_oldest(redis_server) -> None:
    dropped: list[int] = []
    errors: list[str] = []
    log = prediction_log(redis_server.url, errors, max_pending=2, on_drop=dropped.append)
    log.append([group("old", [0.1, 0.2]), group("mid", [0.3]), group("new", [0.4])])
    assert dropped == [2]  # "old" (two rows) made way
    redis_server.stop()
    assert log.flush() == 0
    assert dropped == [2, 2] and errors == ["log_append"]
    log.append([group("later", [0.5])])
    assert log.flush() == 0  # the breaker is not open yet after one failure: a second try, also failed
    assert dropped == [2, 2, 1] and errors == ["log_append", "log_append"]


def test_the_cap_counts_rows_not_entries(redis_server) -> None:
    log = prediction_log(redis_server.url, max_rows=1000, entry_max_rows=2)
    two_rows = LoggedGroup(1.0, "r", "credit", "3", "A", {"Age": [1.0, 2.0]}, [0.1, 0.2], [None, None])
    log.append([two_rows] * 5000)
    log.flush()
    rows = sum(int(entry[b"rows"]) for _, entry in redis.Redis.from_url(redis_server.url).xrange("predictions"))
    assert 1000 <= rows < 5000  # about max_rows rows (500 entries of 2), trimmed approximately


def test_an_entry_that_cannot_be_encoded_is_dropped_alone_and_counted(redis_server) -> None:
    dropped: list[int] = []
    log = prediction_log(redis_server.url, on_drop=dropped.append)
    bad = LoggedGroup(1.0, "bad", "credit", "3", "A", {"Home": ["\ud800"]}, [0.1], [None])
    log.append([group("r1", [0.1]), bad, group("r2", [0.2])])
    assert log.flush() == 2 and dropped == [1]
    assert logged_request_ids(redis_server.url) == ["r1", "r2"]


def test_after_close_an_append_is_sent_at_once(redis_server) -> None:
    log = prediction_log(redis_server.url)
    log.close()
    log.append([group("late", [0.3])])
    assert redis.Redis.from_url(redis_server.url).xlen("predictions") == 1


def test_an_entry_of_the_earlier_one_request_layout_still_reads() -> None:
    data = {"request_id": "r0", "model": "credit", "features": {"Age": [30.0]}, "probabilities": [0.2],
            "applicant_ids": [None]}  # fmt: skip
    entry = {b"ts": b"1.5", b"variant": b"A", b"version": b"3", b"rows": b"1", b"data": json.dumps(data).encode()}
    assert rows_of(entry) == [
        {"ts": 1.5, "request_id": "r0", "model": "credit", "version": "3", "variant": "A", "features": {"Age": 30.0},
         "probability": 0.2, "applicant_id": None}
    ]  # fmt: skip


def test_an_integer_beyond_64_bits_is_logged_as_the_float_the_model_saw() -> None:
    huge = LoggedGroup(1.0, "r", "credit", "3", "A", {"Age": [2**70, 5]}, [0.1, 0.2], [None, None])
    assert json.loads(huge.encoded())["features"] == {"Age": [float(2**70), 5]}


def test_the_cap_follows_the_traffic_not_the_average_since_start_up() -> None:
    log = PredictionLog(None, "predictions", max_rows=1000)  # type: ignore[arg-type]  # no Redis: the cap only
    stream: list[int] = []  # rows per entry, oldest first, trimmed exactly as MAXLEN would

    def write(rows_per_entry: int, entries: int) -> int:
        for _ in range(entries):
            batch = [_Entry(b"[]", rows_per_entry, rows_per_entry)]
            stream.append(rows_per_entry)
            del stream[: max(0, len(stream) - log._entries_for_max_rows(batch))]
        return sum(stream)

    for rows_per_entry, entries in ((1, 5000), (250, 200), (1, 5000), (40, 300)):  # quiet, busy, quiet, moderate
        kept = write(rows_per_entry, entries)
        assert 1000 <= kept < 1000 + rows_per_entry, (rows_per_entry, kept)


def test_a_new_writer_never_trims_what_it_and_the_other_workers_wrote(redis_server) -> None:
    # Entries this large fill a Redis stream node each, so a too-small MAXLEN would really drop the older ones.
    wide = {"Age": [30.5] * 300, "Home": ["rent"] * 300}
    workers = [prediction_log(redis_server.url, max_rows=1000), prediction_log(redis_server.url, max_rows=1000)]
    for number, log in enumerate(workers):
        log.append([LoggedGroup(1.0, f"w{number}", "credit", "3", "A", wide, [0.1] * 300, [None] * 300)])
        assert log.flush() == 1
    assert logged_request_ids(redis_server.url) == ["w0"] * 300 + ["w1"] * 300
