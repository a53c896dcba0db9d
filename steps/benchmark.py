"""Step `benchmark`: in-process latency of sklearn vs ONNX fp32 vs ONNX INT8 at several batch sizes.

Each cell is warmed up, then timed call by call (perf_counter_ns) for `repeats` calls or `max_seconds`, whichever
comes first. Metrics are named `<runtime>_b<batch>_{p50_ms,p99_ms,rows_per_s}`; the table goes to
`benchmark/latency.csv|.md` and the chart to `plots/latency.png`. ONNX sessions use one intra-op thread, as served.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import click
import mlflow
import numpy as np
import pandas as pd

from scoring.contract import CONVERT_RUN_ID, MODEL_URI_TAG, PREPARE_RUN_ID, TRAIN_RUN_ID
from scoring.onnx_runtime import inference_session, onnx_inputs, predict_default_probability
from scoring.progress import Progress
from steps import plots
from steps.cli import run_id_file_option, run_step_cli
from steps.errors import UserInputError
from steps.onnx_model import load_onnx_model
from steps.prepare import load_prepared
from steps.settings import PipelineSettings
from steps.tracking import lineage, log_params, step_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchmarkResult:
    run_id: str
    table: pd.DataFrame


def parse_batch_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.replace(",", " ").split()]
    except ValueError as error:
        raise UserInputError(f"parameter batch-sizes must be integers like '1 32 1024', got {text!r}") from error
    if not sizes or any(size <= 0 for size in sizes):
        raise UserInputError(f"parameter batch-sizes must be positive integers, got {text!r}")
    return sizes


def time_calls(call: Callable[[], object], repeats: int, max_seconds: float, warmup_seconds: float = 0.2) -> np.ndarray:
    """Latencies in seconds of up to `repeats` successive calls (at least 5), after a timed warm-up.

    The warm-up runs for `warmup_seconds` (at least 10 calls) so caches, allocator pools and CPU clocks settle.
    """
    warm_until = time.perf_counter() + warmup_seconds
    for count in itertools.count():
        call()
        if count >= 9 and time.perf_counter() >= warm_until:
            break
    latencies = []
    deadline = time.perf_counter() + max_seconds
    while len(latencies) < repeats and (len(latencies) < 5 or time.perf_counter() < deadline):
        start = time.perf_counter_ns()
        call()
        latencies.append(time.perf_counter_ns() - start)
    return np.asarray(latencies, dtype=np.float64) / 1e9


def benchmark(
    quantize_run_id: str,
    batch_sizes: list[int] | None = None,
    repeats: int = 2000,
    max_seconds: float = 2.0,
    settings: PipelineSettings | None = None,
) -> BenchmarkResult:
    settings = settings or PipelineSettings()
    batch_sizes = batch_sizes or [1, 32, 1024]
    if repeats < 5:
        raise UserInputError(f"parameter repeats must be at least 5, got {repeats}")
    with step_run("benchmark", settings) as run:
        upstream = lineage(quantize_run_id, "quantize")
        log_params(
            {**upstream, "batch_sizes": " ".join(map(str, batch_sizes)), "repeats": repeats, "max_seconds": max_seconds}
        )
        prepared = load_prepared(upstream[PREPARE_RUN_ID])
        schema = prepared.schema
        sklearn_model = mlflow.sklearn.load_model(mlflow.get_run(upstream[TRAIN_RUN_ID]).data.tags[MODEL_URI_TAG])
        sessions = {
            "onnx_fp32": inference_session(
                load_onnx_model(mlflow.get_run(upstream[CONVERT_RUN_ID]).data.tags[MODEL_URI_TAG])
            ),
            "onnx_int8": inference_session(load_onnx_model(mlflow.get_run(quantize_run_id).data.tags[MODEL_URI_TAG])),
        }
        pool = prepared.splits.test[schema.features]
        rows = []
        cells = [(runtime, size) for size in batch_sizes for runtime in ("sklearn", *sessions)]
        with Progress(len(cells), description="benchmark", unit="cells") as progress:
            for runtime, size in cells:
                # Sample with replacement so batches larger than the test split are possible.
                batch = pool.sample(n=size, replace=size > len(pool), random_state=size).reset_index(drop=True)
                if runtime == "sklearn":
                    call = functools.partial(sklearn_model.predict_proba, batch)
                else:
                    # The model call alone: a server builds these arrays straight from JSON, not from a DataFrame.
                    call = functools.partial(predict_default_probability, sessions[runtime], onnx_inputs(batch, schema))
                latencies = time_calls(call, repeats=repeats, max_seconds=max_seconds)
                rows.append(
                    {
                        "runtime": runtime,
                        "batch_size": size,
                        "calls": len(latencies),
                        "p50_ms": float(np.percentile(latencies, 50) * 1e3),
                        "p99_ms": float(np.percentile(latencies, 99) * 1e3),
                        "rows_per_s": float(size * len(latencies) / latencies.sum()),
                    }
                )
                progress.update()
        table = pd.DataFrame(rows)
        _log_results(table)
        return BenchmarkResult(run_id=run.info.run_id, table=table)


def _log_results(table: pd.DataFrame) -> None:
    metrics = {}
    for row in table.itertuples():
        prefix = f"{row.runtime}_b{row.batch_size}"
        metrics.update(
            {f"{prefix}_p50_ms": row.p50_ms, f"{prefix}_p99_ms": row.p99_ms, f"{prefix}_rows_per_s": row.rows_per_s}
        )
    smallest = int(table["batch_size"].min())
    single = table[table["batch_size"] == smallest].set_index("runtime")
    for runtime in ("onnx_fp32", "onnx_int8"):
        metrics[f"speedup_{runtime}_vs_sklearn_b{smallest}"] = (
            single.at["sklearn", "p50_ms"] / single.at[runtime, "p50_ms"]
        )
    mlflow.log_metrics(metrics)
    mlflow.log_table(table, "benchmark/latency.json")
    mlflow.log_text(table.to_csv(index=False), "benchmark/latency.csv")
    mlflow.log_text(format_table(table), "benchmark/latency.txt")
    figure = plots.benchmark_figure(table.to_dict("records"))
    mlflow.log_figure(figure, "plots/latency.png")
    plots.close(figure)
    logger.info("latency (ms, rows/s):\n%s", format_table(table))


def format_table(table: pd.DataFrame) -> str:
    shown = table.assign(
        p50_ms=table["p50_ms"].map("{:.4f}".format),
        p99_ms=table["p99_ms"].map("{:.4f}".format),
        rows_per_s=table["rows_per_s"].map("{:,.0f}".format),
    )
    return shown.to_string(index=False)


@click.command(help="Time sklearn vs ONNX fp32 vs ONNX INT8 inference on the test split; log a table and a chart.")
@click.option("--quantize-run-id", required=True, help="Run id of the quantize step (its lineage gives the rest).")
@click.option("--batch-sizes", default="1 32 1024", show_default=True, help="Space-separated batch sizes.")
@click.option("--repeats", type=int, default=2000, show_default=True, help="Timed calls per cell (at most).")
@click.option("--max-seconds", type=float, default=2.0, show_default=True, help="Time budget per cell.")
@run_id_file_option
def cli(quantize_run_id: str, batch_sizes: str, repeats: int, max_seconds: float, run_id_file: Path | None) -> None:
    result = run_step_cli(
        "benchmark",
        lambda settings: benchmark(quantize_run_id, parse_batch_sizes(batch_sizes), repeats, max_seconds, settings),
        run_id_file,
    )
    click.echo(f"benchmark run {result.run_id}:\n{format_table(result.table)}")


if __name__ == "__main__":
    cli()
