"""One-hour soak of the gateway as users run it: 20-row bodies at 8 kept-alive connections, and what a long run
would reveal sampled as it goes.

    .venv/bin/python scripts/soak.py --tracking-uri http://127.0.0.1:5000 --minutes 60 --output .soak   # make soak

The gateway runs on its default server with its log bounded to a rotated file (SERVING_LOG_FILE, 8 MB x 3 backups
here) against the production version and a Redis (REDIS_URL, or a local one). wrk drives /predict_ab in consecutive
5-minute windows (each window's requests/s, p50, p99 and failed requests: non-2xx and socket errors); every minute
the soak records each worker's RSS, Redis' used memory, the prediction stream's entries and rows (entries x the mean
rows of its newest 100 entries; counted exactly once at the end) and the log files' bytes. Writes samples.csv,
windows.csv, summary.md (the goals checked) and soak.png into --output; docs/benchmarks.md records a run.
Not part of the test suite: it takes an hour.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.bench_gateway import applicant_rows, gateway_body, wrk  # noqa: E402
from scripts.gateway_process import running_gateway, server_workers  # noqa: E402

WINDOW_S = 300  # --window-s (shorter only to try the script out)
STREAM = "credit-scoring:predictions:soak"  # a stream of its own: the drift job's stays untouched
STREAM_MAX_ROWS = 200_000  # the gateway's default SERVING_PREDICTION_STREAM_MAX_ROWS, set explicitly below


@dataclass
class Sample:
    minute: float
    worker_rss_mb: list[float]
    redis_used_mb: float
    stream_entries: int
    stream_rows_estimate: int
    log_bytes: int


@dataclass
class Window:
    end_minute: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    failed: int


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stream_rows(client: redis.Redis, exact: bool = False) -> tuple[int, int]:
    """(entries, rows) of the prediction stream; rows estimated from the newest 100 entries unless `exact`."""
    entries = int(client.xlen(STREAM))
    if not exact:
        newest = client.xrevrange(STREAM, count=100)
        mean = statistics.mean(int(fields[b"rows"]) for _, fields in newest) if newest else 0
        return entries, round(entries * mean)
    rows, last = 0, "-"
    while True:
        page = client.xrange(STREAM, min=last, count=1000)
        page = [item for item in page if item[0] != last]
        if not page:
            return entries, rows
        rows += sum(int(fields[b"rows"]) for _, fields in page)
        last = page[-1][0]


def sample(started: float, master: int, client: redis.Redis, log_folder: Path) -> Sample:
    entries, rows = stream_rows(client)
    return Sample(
        minute=round((time.monotonic() - started) / 60, 2),
        worker_rss_mb=[round(rss_mb(pid), 1) for pid in sorted(server_workers(master))],
        redis_used_mb=round(int(client.info("memory")["used_memory"]) / 2**20, 1),
        stream_entries=entries,
        stream_rows_estimate=rows,
        log_bytes=sum(path.stat().st_size for path in log_folder.glob("gateway.log*")),
    )


def summary(samples: list[Sample], windows: list[Window], exact_rows: int, log_cap: int, window_s: int) -> str:
    """The goals, read after the first window (the warm-up: caches, allocator pools, the stream filling up)."""
    after = [s for s in samples if s.minute * 60 >= window_s]
    base_rss, last_rss = sum(after[0].worker_rss_mb), sum(after[-1].worker_rss_mb)
    peak_rss = max(sum(s.worker_rss_mb) for s in after)
    settled = windows[1:]
    reference = settled[0].p99_ms
    moves = [100 * (w.p99_ms - reference) / reference for w in settled]
    failed = sum(w.failed for w in windows)
    rows = [
        ("workers' RSS growth after the first 5 minutes (sum of workers; peak vs minute 5)",
         f"{base_rss:.0f} -> peak {peak_rss:.0f}, last {last_rss:.0f} MB: {100 * (peak_rss / base_rss - 1):+.1f}%",
         peak_rss <= 1.05 * base_rss, "<= +5%"),
        ("p99 per 5 minutes vs the first window after warm-up (largest move)",
         f"{reference:.2f} ms; " + ", ".join(f"{w.p99_ms:.2f}" for w in settled)
         + f" ms: {max(moves, key=abs):+.1f}%", all(abs(m) <= 10 for m in moves), "within 10%"),
        ("failed requests (non-2xx, socket errors)", str(failed), failed == 0, "0"),
        ("prediction stream rows (exact, at the end; cap 200,000, trimmed approximately)", f"{exact_rows:,}",
         exact_rows <= 1.1 * STREAM_MAX_ROWS, "within the cap (+10% for approximate trimming)"),
        ("log files' bytes (largest sample)", f"{max(s.log_bytes for s in samples):,}",
         max(s.log_bytes for s in samples) <= log_cap, f"<= {log_cap:,} (4 files x 8 MB)"),
    ]  # fmt: skip
    requests_total = sum(w.requests_per_s * window_s for w in windows)
    lines = [
        f"{len(windows)} windows of {window_s / 60:g} minutes, {requests_total:,.0f} requests "
        f"({20 * requests_total:,.0f} rows), {statistics.median(w.requests_per_s for w in windows):,.0f} req/s median",
        "",
        "| goal | measured | met | bound |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {value} | {'yes' if met else 'NO'} | {bound} |" for name, value, met, bound in rows]
    return "\n".join(lines)


def plot(samples: list[Sample], windows: list[Window], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s.minute for s in samples]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    workers = max(len(s.worker_rss_mb) for s in samples)
    for number in range(workers):
        axes[0][0].plot(minutes, [s.worker_rss_mb[number] if number < len(s.worker_rss_mb) else None
                                  for s in samples], marker=".", label=f"worker {number + 1}")  # fmt: skip
    axes[0][0].set(title="Worker RSS (MB)", ylim=(0, None))
    axes[0][0].legend()
    ends = [w.end_minute for w in windows]
    axes[0][1].step(ends, [w.p99_ms for w in windows], where="pre", label="p99")
    axes[0][1].step(ends, [w.p50_ms for w in windows], where="pre", label="p50")
    axes[0][1].set(title="Latency per window (ms)", ylim=(0, None))
    axes[0][1].legend()
    axes[1][0].plot(minutes, [s.stream_rows_estimate / 1000 for s in samples], marker=".", label="stream rows (k)")
    axes[1][0].plot(minutes, [s.redis_used_mb for s in samples], marker=".", label="Redis used memory (MB)")
    axes[1][0].axhline(STREAM_MAX_ROWS / 1000, linestyle="--", color="grey", label="stream cap (k rows)")
    axes[1][0].set(title="Prediction stream and Redis", xlabel="minute", ylim=(0, None))
    axes[1][0].legend()
    axes[1][1].plot(minutes, [s.log_bytes / 2**20 for s in samples], marker=".")
    axes[1][1].set(title="Gateway log files (MB, rotated)", xlabel="minute", ylim=(0, None))
    figure.suptitle("Gateway soak: /predict_ab, 20-row bodies, 8 kept-alive connections")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--model", default="credit-scoring")
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--output", type=Path, default=Path(".soak"))
    parser.add_argument("--window-s", type=int, default=WINDOW_S, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.minutes * 60 < 2 * arguments.window_s:
        parser.error(f"--minutes: at least {2 * arguments.window_s / 60:g} (a warm-up window and one to compare)")
    arguments.output.mkdir(parents=True, exist_ok=True)
    client = redis.Redis.from_url(arguments.redis_url)
    client.delete(STREAM)  # the cap is checked on what this run wrote (its own stream, never the drift job's)
    rows = applicant_rows(20 * 2000)
    bodies = [gateway_body(rows[i : i + 20]) for i in range(0, len(rows), 20)]
    samples: list[Sample] = []
    windows: list[Window] = []
    folder = Path(tempfile.mkdtemp(prefix="soak-"))
    log_folder = folder / "log"
    log_max_bytes, log_backups = 8 << 20, 3
    with running_gateway(
        arguments.tracking_uri,
        arguments.model,
        folder,
        arguments.redis_url,
        SERVING_LOG_FILE=str(log_folder / "gateway.log"),
        SERVING_LOG_MAX_BYTES=str(log_max_bytes),
        SERVING_LOG_BACKUPS=str(log_backups),
        SERVING_PREDICTION_STREAM=STREAM,
        SERVING_PREDICTION_STREAM_MAX_ROWS=str(STREAM_MAX_ROWS),
    ) as gateway:
        started = time.monotonic()
        done = threading.Event()

        def sampler() -> None:
            while True:
                samples.append(sample(started, gateway.process.pid, client, log_folder))
                print(f"sample: {asdict(samples[-1])}", file=sys.stderr, flush=True)
                if done.wait(60):
                    return

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        for _ in range(arguments.minutes * 60 // arguments.window_s):
            measured = wrk(f"{gateway.url}/predict_ab", bodies, 8, arguments.window_s, keep_alive=True)
            windows.append(Window(round((time.monotonic() - started) / 60, 2), measured["rps"], measured["p50"],
                                  measured["p99"], int(measured["errors"])))  # fmt: skip
            print(f"window: {asdict(windows[-1])}", file=sys.stderr, flush=True)
        samples.append(sample(started, gateway.process.pid, client, log_folder))
        done.set()
        thread.join()
    exact_rows = stream_rows(client, exact=True)[1]
    with (arguments.output / "samples.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["minute", "worker_rss_mb", "redis_used_mb", "stream_entries", "stream_rows_estimate",
                         "log_bytes"])  # fmt: skip
        for s in samples:
            writer.writerow([s.minute, " ".join(map(str, s.worker_rss_mb)), s.redis_used_mb, s.stream_entries,
                             s.stream_rows_estimate, s.log_bytes])  # fmt: skip
    with (arguments.output / "windows.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["end_minute", "requests_per_s", "p50_ms", "p99_ms", "failed"])
        writer.writerows([w.end_minute, w.requests_per_s, w.p50_ms, w.p99_ms, w.failed] for w in windows)
    text = summary(samples, windows, exact_rows, (log_backups + 1) * log_max_bytes, arguments.window_s)
    (arguments.output / "summary.md").write_text(text + "\n")
    plot(samples, windows, arguments.output / "soak.png")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
