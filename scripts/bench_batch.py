"""Portfolio scoring side by side on one synthetic book (`make bench-batch`): (a) the bare ONNX Runtime ceiling,
(b) the local engine end to end (read Parquet -> score -> write Parquet), (c) the Spark engine in local mode, (d)
`mlflow.pyfunc` predict of the same version; peak RSS of (b) at two book sizes and of (d); and the ceiling raised:
the same version's graph re-encoded (scripts/onnx_ceiling.py), with its largest difference to the registered graph.

Each figure comes from a fresh process (its own peak RSS), run when the machine is quiet; the fastest of `--repeats`
passes is kept. Prints Markdown tables (docs/benchmarks.md holds the last run's).

python scripts/bench_batch.py --tracking-uri http://127.0.0.1:5000                      # 5 M rows, RSS at 5 M and 20 M
python scripts/bench_batch.py --rows 200000 --rss-rows 400000 --repeats 1 --no-spark    # a quick look
Needs a registered model with a production version (`make run`); writes runs to the experiment
"portfolio-benchmark" and books and outputs under --workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench_batch_baselines import wait_for_quiet

ROOT = Path(__file__).resolve().parent.parent
BASELINES = ROOT / "scripts" / "bench_batch_baselines.py"
CEILING = ROOT / "scripts" / "onnx_ceiling.py"
EXPERIMENT = "portfolio-benchmark"


def book(workdir: Path, rows: int) -> Path:
    """The synthetic book of `rows` rows (scripts/synthetic_portfolio.py, seed 7), written once and reused."""
    from scripts.synthetic_portfolio import write_portfolio

    path = workdir / f"book-{rows}.parquet"
    if not path.is_file():
        partial = path.with_name(f".{path.name}")
        written = write_portfolio(partial, rows, seed=7, progress=sys.stderr.isatty())
        partial.rename(path)
        print(f"book: {rows:,} rows, {written.bytes / 1e6:,.0f} MB in {written.seconds:.1f} s", file=sys.stderr)
    return path


def measure_engine(arguments: argparse.Namespace) -> dict[str, Any]:
    """(b) or (c) in this process: `score_portfolio` into fresh folders, the fastest of `repeats` passes."""
    import logging

    from portfolio.job import ScoringRequest, score_portfolio
    from portfolio.settings import PortfolioSettings

    logging.basicConfig(level=logging.WARNING)
    settings = PortfolioSettings(
        tracking_uri=arguments.tracking_uri,
        experiment_name=EXPERIMENT,
        batch_rows=arguments.batch_rows,
        threads=arguments.threads,
        spark_master=f"local[{arguments.spark_cores}]",
    )
    passes = []
    for attempt in range(arguments.repeats):
        output = arguments.workdir / f"out-{arguments.engine}-{attempt}"
        shutil.rmtree(output, ignore_errors=True)
        cpu = os.times()
        outcome = score_portfolio(ScoringRequest(arguments.book, output, engine=arguments.engine), settings)
        used = os.times()
        cpu_seconds = (used.user - cpu.user) + (used.system - cpu.system)
        passes.append((outcome.seconds, outcome.rows_in, cpu_seconds))
        shutil.rmtree(output, ignore_errors=True)
    seconds, rows, cpu_seconds = min(passes)
    return {
        "kind": arguments.engine,
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "cpu_seconds": cpu_seconds,  # this process's (the Spark JVM's are not in it)
        "passes_s": [round(item[0], 2) for item in passes],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def measure_pyfunc_end_to_end(arguments: argparse.Namespace) -> dict[str, Any]:
    """(d) as a user would write it end to end, like (b): pandas reads the book, the features are normalised (a raw
    frame would send a missing category as the text "None", an unknown category: wrong probabilities), the version's
    pyfunc predicts batch by batch, pandas writes the ids with their probabilities."""
    import mlflow.pyfunc
    import numpy as np
    import pandas as pd

    from scoring.schema import FeatureSchema, normalize_features

    model = mlflow.pyfunc.load_model(f"models:/{arguments.model_name}@production")
    schema = FeatureSchema.from_metadata(model.metadata.metadata)
    passes = []
    for attempt in range(arguments.repeats):
        output = arguments.workdir / f"out-pyfunc-{attempt}.parquet"
        started = time.perf_counter()
        frame = pd.read_parquet(arguments.book)
        features = normalize_features(frame, schema)
        probabilities = [
            model.predict(features.iloc[start : start + arguments.batch_rows].reset_index(drop=True))["probabilities"][
                :, 1
            ]
            for start in range(0, len(features), arguments.batch_rows)
        ]
        frame[["account_id"]].assign(probability_of_default=np.concatenate(probabilities)).to_parquet(output)
        passes.append((time.perf_counter() - started, len(frame)))
        del frame, features, probabilities
        output.unlink()
    seconds, rows = min(passes)
    return {
        "kind": "pyfunc-e2e",
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "passes_s": [round(item[0], 2) for item in passes],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def in_subprocess(command: list[str]) -> dict[str, Any]:
    wait_for_quiet(60.0)
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if completed.returncode != 0:
        raise SystemExit(f"bench-batch: {' '.join(command[:4])} ... failed:\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def engine(
    arguments: argparse.Namespace, kind: str, path: Path, cores: int = 1, pinned: bool = False
) -> dict[str, Any]:
    command = [sys.executable, __file__, "--measure", kind, "--book", str(path), "--workdir", str(arguments.workdir)]
    command += ["--pin-one-cpu"] * pinned
    command += ["--tracking-uri", arguments.tracking_uri, "--batch-rows", str(arguments.batch_rows)]
    command += ["--threads", str(arguments.threads), "--repeats", str(arguments.repeats), "--spark-cores", str(cores)]
    command += ["--model-name", arguments.model_name]
    return in_subprocess(command)


def baseline(arguments: argparse.Namespace, kind: str, path: Path) -> dict[str, Any]:
    command = [sys.executable, str(BASELINES), str(path), "--measure", kind, "--batch-rows", str(arguments.batch_rows)]
    command += ["--threads", str(arguments.threads), "--tracking-uri", arguments.tracking_uri]
    command += ["--repeats", str(max(arguments.repeats, 1)), "--model-name", arguments.model_name]
    if kind == "d":  # the pyfunc's session takes ORT's default threads: held to one core to compare like with like
        command += ["--cpus", "0"]
    return in_subprocess(command)


def ceiling(arguments: argparse.Namespace, kind: str, path: Path) -> dict[str, Any]:
    command = [sys.executable, str(CEILING), "bench", str(path), "--measure", kind]
    command += ["--batch-rows", str(arguments.batch_rows), "--threads", str(arguments.threads)]
    command += ["--tracking-uri", arguments.tracking_uri, "--repeats", str(max(arguments.repeats, 1))]
    return in_subprocess(command)


def reencoded_difference(arguments: argparse.Namespace, path: Path) -> str:
    """scripts/onnx_ceiling.py check: the re-encoded graph's largest |Δp| against the registered one on the book."""
    command = [sys.executable, str(CEILING), "check", str(path), "--tracking-uri", arguments.tracking_uri]
    completed = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if completed.returncode != 0:
        raise SystemExit(f"bench-batch: onnx_ceiling.py check failed:\n{completed.stderr[-3000:]}")
    return completed.stdout.strip()


def rate(result: dict[str, Any]) -> float:
    return float(result["rows_per_s"]) / 1e6


def report(arguments: argparse.Namespace) -> None:
    arguments.workdir.mkdir(parents=True, exist_ok=True)
    path = book(arguments.workdir, arguments.rows)
    started = time.perf_counter()
    a = baseline(arguments, "a", path)
    b = engine(arguments, "local", path)
    b_pinned = engine(arguments, "local", path, pinned=True)
    d = baseline(arguments, "d", path)
    d_end_to_end = engine(arguments, "pyfunc-e2e", path, pinned=True)
    spark = [engine(arguments, "spark", path, cores) for cores in (1, 2)] if arguments.spark else []
    big = engine(arguments, "local", book(arguments.workdir, arguments.rss_rows)) if arguments.rss_rows else None
    raised = [ceiling(arguments, kind, path) for kind in ("reencoded", "reencoded+codes")]
    difference = reencoded_difference(arguments, path)
    version = a.get("version", "?")
    lines = [
        f"{arguments.rows:,} rows, version {version} (production), batch {arguments.batch_rows:,}, "
        f"{arguments.threads} ORT thread(s), fastest of {arguments.repeats}; {time.perf_counter() - started:.0f} s",
        "",
        "| | what | M rows/s | vs (a) | peak RSS MB |",
        "| --- | --- | --- | --- | --- |",
        row("(a)", "bare ORT ceiling: one session, feeds built before timing", a, a),
        row("(b)", "local engine, Parquet -> score -> Parquet (its 3 threads on both cores)", b, a),
        row("(b)", "local engine, pinned to one core", b_pinned, a),
    ]
    for cores, result in zip((1, 2), spark, strict=False):
        per_core = f"{rate(result) / cores:.3f} M rows/s per core"
        lines.append(row("(c)", f"Spark engine, local[{cores}] ({per_core}; RSS: the driver's Python)", result, a))
    lines.append(row("(d)", "mlflow.pyfunc predict only, feeds (dict of arrays) built before timing, one core", d, a))
    lines.append(
        row("(d)", "mlflow.pyfunc end to end: pandas reads, normalises, predicts, writes; one core", d_end_to_end, a)
    )
    lines.append(row("(a')", "re-encoded graph, run only", raised[0], a))
    lines.append(row("(a')", "re-encoded graph, codes from Arrow + run", raised[1], a))
    per_cpu = b["rows"] / b["cpu_seconds"] / 1e6
    lines += [
        "",
        f"(b) used {b['cpu_seconds']:.1f} CPU s for {b['rows']:,} rows ({per_cpu:.3f} M rows per CPU second: its "
        f"reader and writer threads run beside the session); (b) / (d) = {rate(b) / rate(d):.2f} (predict only), "
        f"{rate(b) / rate(d_end_to_end):.2f} (end to end); pinned to one core: {rate(b_pinned) / rate(d):.2f}, "
        f"{rate(b_pinned) / rate(d_end_to_end):.2f}",
    ]
    if big is not None:
        change = big["peak_rss_mb"] / b["peak_rss_mb"] - 1
        lines.append(
            f"(b) peak RSS: {b['rows']:,} rows {b['peak_rss_mb']:,.0f} MB, {big['rows']:,} rows "
            f"{big['peak_rss_mb']:,.0f} MB ({change:+.1%}); {rate(big):.3f} M rows/s at {big['rows']:,}"
        )
    lines.append(f"re-encoded graph check: {difference}")
    print("\n" + "\n".join(lines))


def row(label: str, what: str, result: dict[str, Any], ceiling_result: dict[str, Any]) -> str:
    ratio = rate(result) / rate(ceiling_result)
    return f"| {label} | {what} | {rate(result):.3f} | {ratio:.2f} | {result['peak_rss_mb']:,.0f} |"


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--model-name", default=os.environ.get("CREDIT_REGISTERED_MODEL_NAME", "credit-scoring"))
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--rss-rows", type=int, default=20_000_000, help="(b)'s second book size; 0: skip")
    parser.add_argument("--batch-rows", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=ROOT / ".bench-batch")
    parser.add_argument("--spark", action=argparse.BooleanOptionalAction, default=True)
    # One measurement in this process (what report() starts for (b) and (c)), printed as one JSON line.
    parser.add_argument("--measure", choices=("local", "spark", "pyfunc-e2e"), help=argparse.SUPPRESS)
    parser.add_argument("--pin-one-cpu", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--book", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--spark-cores", type=int, default=1, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    # Read by every measuring process (the registry's settings), this one's included.
    os.environ["MLFLOW_TRACKING_URI"] = arguments.tracking_uri
    os.environ["CREDIT_REGISTERED_MODEL_NAME"] = arguments.model_name
    if arguments.measure:
        if arguments.pin_one_cpu:  # before any thread starts: ONNX Runtime sizes its default pool by the CPUs allowed
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        arguments.engine = arguments.measure
        measure = measure_pyfunc_end_to_end if arguments.measure == "pyfunc-e2e" else measure_engine
        print(json.dumps(measure(arguments)))
        return 0
    report(arguments)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
