"""Baselines for batch scoring a loan book: the bare ONNX Runtime ceiling and MLflow's ONNX pyfunc, in rows/s.

(a) `bare_ceiling`: one ORT session on feeds built from the Parquet file before the clock starts, so the figure is
    the graph plus ORT's own input conversion and nothing else: no batch-scoring design can beat it with this graph.
(d) `pyfunc_predict`: `mlflow.pyfunc.load_model("models:/<name>/<version>").predict` on the same rows, in the input
    form the flavour accepts for this multi-input graph (a dict of [N,1] arrays; categorical ones must be numpy
    unicode, not object: the signature's Tensor('str') refuses object arrays), also built before the clock starts.
Each runs in a fresh subprocess (`--measure a|d`) so the peak RSS it reports is its own.

python scripts/bench_batch_baselines.py /tmp/book.parquet --tracking-uri http://127.0.0.1:5000 --batch-rows 1024 4096
python scripts/bench_batch_baselines.py /tmp/book.parquet --measure a --batch-rows 4096       # one JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring.onnx_runtime import PROBABILITIES_OUTPUT, inference_session
from scoring.schema import MISSING_CATEGORY, FeatureSchema

if TYPE_CHECKING:
    import pandas as pd

Feeds = dict[str, np.ndarray]
MODEL_NAME = "credit-scoring"
BATCH_ROWS = (1024, 4096, 8192)
KINDS = {"a": "bare ORT ceiling", "d": "mlflow pyfunc"}


def read_features(parquet_path: Path, schema: FeatureSchema, rows: int | None = None) -> pa.Table:
    """The schema's feature columns of a Parquet file or folder of part files, the first `rows` rows if given."""
    dataset = ds.dataset(parquet_path, format="parquet")
    # head() reads only the row groups it needs: a 200 k-row run on a 5 M-row book stays small.
    return dataset.to_table(columns=schema.features) if rows is None else dataset.head(rows, columns=schema.features)


def numeric_feed(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """float32 [N,1]; nulls become NaN, the graph's missing marker (the Imputer replaces NaN by the median)."""
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return values.astype(np.float32).reshape(-1, 1)


def categorical_feed(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """object [N,1] of str, "" for null. Taken from the column's dictionary so each category is one shared Python
    string: 5 M rows cost 8 bytes a row instead of a fresh str object (~55 bytes) per row."""
    encoded = pc.dictionary_encode(pc.fill_null(column, MISSING_CATEGORY))
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    labels = np.array(encoded.dictionary.to_pylist(), dtype=object)
    return labels[encoded.indices.to_numpy()].reshape(-1, 1)


def build_feeds(table: pa.Table, schema: FeatureSchema) -> Feeds:
    """The production graph's inputs (one [N,1] array per feature, in schema order) for every row of `table`."""
    return {
        name: numeric_feed(table[name]) if name in schema.numeric else categorical_feed(table[name])
        for name in schema.features
    }


def unicode_feeds(feeds: Feeds) -> Feeds:
    """The same feeds with categorical arrays as numpy unicode: what the pyfunc's tensor signature accepts."""
    return {name: values.astype(str) if values.dtype == object else values for name, values in feeds.items()}


def feed_batches(feeds: Feeds, batch_rows: int) -> list[Feeds]:
    """Consecutive row slices (views, no copy) of every feed."""
    rows = len(next(iter(feeds.values())))
    return [
        {name: values[start : start + batch_rows] for name, values in feeds.items()}
        for start in range(0, rows, batch_rows)
    ]


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has spent busy so far (/proc/stat: all but idle and iowait)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def others_cpu_share(busy: float, own: float, wall: float) -> float:
    """Share of the machine's CPUs that other processes used over `wall` seconds: on a shared 2-CPU machine a
    neighbour's test run halves a single-thread figure, and this says when it did."""
    return max(0.0, (busy - own) / (wall * (os.cpu_count() or 1)))


def wait_for_quiet(max_wait_s: float, threshold: float = 0.15) -> float:
    """Wait (at most `max_wait_s`) until other processes use less than `threshold` of the machine over one second;
    returns the last share seen."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy, own, started = machine_busy_seconds(), own_cpu_seconds(), time.perf_counter()
        time.sleep(1.0)
        share = others_cpu_share(machine_busy_seconds() - busy, own_cpu_seconds() - own, time.perf_counter() - started)
        if share < threshold or time.monotonic() > deadline:
            return share


def least_contended(
    measure_once: Callable[[], dict[str, Any]], quiet_wait_s: float, attempts: int = 3, threshold: float = 0.15
) -> dict[str, Any]:
    """Measure after waiting for quiet, again (up to `attempts` times) while other processes took more than
    `threshold` of the machine during the fastest pass; the least contended result is kept."""
    results: list[dict[str, Any]] = []
    while len(results) < attempts and (not results or min(r["others_cpu"] for r in results) > threshold):
        wait_for_quiet(quiet_wait_s)
        results.append(measure_once())
    best = min(results, key=lambda result: (result["others_cpu"] > threshold, -result["rows_per_s"]))
    return {**best, "attempts": len(results)}


def timed(score: Callable[[Any], object], batches: Sequence[Any], rows: int, repeats: int) -> dict[str, Any]:
    """Score every batch `repeats` times over, keeping the fastest pass (the machine is shared: the slower passes
    measure the neighbours, whose CPU share is reported); the first batch is also scored once untimed (ORT
    allocates its buffers then)."""
    score(batches[0])
    passes, others = [], []
    for _ in range(repeats):
        busy, own, started = machine_busy_seconds(), own_cpu_seconds(), time.perf_counter()
        for batch in batches:
            score(batch)
        passes.append(time.perf_counter() - started)
        others.append(others_cpu_share(machine_busy_seconds() - busy, own_cpu_seconds() - own, passes[-1]))
    fastest = int(np.argmin(passes))
    return {
        "rows": rows,
        "seconds": passes[fastest],
        "rows_per_s": rows / passes[fastest],
        "passes_s": [round(value, 3) for value in passes],
        "others_cpu": round(others[fastest], 3),
        "others_cpu_passes": [round(value, 3) for value in others],
    }


def bare_ceiling(
    onnx_path: Path,
    schema: FeatureSchema,
    parquet_path: Path,
    batch_rows: int,
    threads: int,
    rows: int | None = None,
    repeats: int = 3,
) -> dict[str, Any]:
    """(a) rows/s of one ORT session (intra-op `threads`, inter-op 1) over pre-built feeds, `batch_rows` at a time;
    only the probabilities are fetched."""
    feeds = build_feeds(read_features(parquet_path, schema, rows), schema)
    session = inference_session(Path(onnx_path), threads)
    total = len(feeds[schema.features[0]])
    result = timed(partial(session.run, [PROBABILITIES_OUTPUT]), feed_batches(feeds, batch_rows), total, repeats)
    return {"kind": "a", "batch_rows": batch_rows, "threads": threads, **result}


def pyfunc_predict(
    model_uri: str,
    frame_or_path: pd.DataFrame | Path,
    batch_rows: int,
    rows: int | None = None,
    input_form: str = "dict",
    repeats: int = 3,
) -> dict[str, Any]:
    """(d) rows/s of `mlflow.pyfunc.load_model(model_uri).predict`, `batch_rows` at a time.

    `input_form` "dict": a dict of [N,1] arrays (numeric float32, categorical numpy unicode), built before timing like
    (a)'s feeds. "frame": a DataFrame normalized by `scoring.schema.normalize_features` (numeric float64, categorical
    str with "" for missing), sliced per batch; the pyfunc reshapes and casts every column of every batch itself.
    A frame straight from Parquet is NOT equivalent: its missing categoricals (None) reach the graph as the text
    "None", an unknown category, instead of "" (missing).
    """
    import mlflow.pyfunc

    from scoring.schema import normalize_features

    model = mlflow.pyfunc.load_model(model_uri)
    schema = FeatureSchema.from_metadata(model.metadata.metadata)
    if isinstance(frame_or_path, str | Path):
        table = read_features(Path(frame_or_path), schema, rows)
    else:
        frame = frame_or_path if rows is None else frame_or_path.iloc[:rows]
        table = pa.Table.from_pandas(normalize_features(frame, schema), preserve_index=False)
    total = table.num_rows
    if input_form == "dict":
        batches: Sequence[Any] = feed_batches(unicode_feeds(build_feeds(table, schema)), batch_rows)
    elif input_form == "frame":
        normalized = normalize_features(table.to_pandas(), schema)
        # Each batch gets its own 0-based index: the pyfunc's tensor-schema enforcement reads `column[0]` by label
        # and fails with KeyError 0 on any slice but the first. Split before the clock starts, like (a)'s feeds.
        batches = [
            normalized.iloc[start : start + batch_rows].reset_index(drop=True) for start in range(0, total, batch_rows)
        ]
        del normalized
    else:
        raise ValueError(f"input_form must be 'dict' or 'frame', got {input_form!r}")
    result = timed(model.predict, batches, total, repeats)
    return {"kind": "d", "batch_rows": batch_rows, "input_form": input_form, **result}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def resolve_version(alias: str, tracking_uri: str) -> tuple[Path, FeatureSchema, str]:
    """The ONNX file, schema and version number behind `alias` (the registry's own lookup and local cache)."""
    from registry.resolve import resolve
    from registry.settings import RegistrySettings

    model = resolve(alias, RegistrySettings(tracking_uri=tracking_uri))
    return model.onnx_path, model.feature_schema, model.version


def measure(kind: str, arguments: argparse.Namespace) -> dict[str, Any]:
    """One measurement in this process, with the process's peak RSS (feeds, table and model included)."""
    if arguments.cpus:
        # Pinned before ORT starts its threads: the pyfunc's session takes ORT's default thread count, which follows
        # the CPUs it may run on; pinning is the only way to hold it to one core without editing the MLmodel.
        os.sched_setaffinity(0, set(arguments.cpus))
    os.environ["MLFLOW_TRACKING_URI"] = arguments.tracking_uri
    onnx_path, schema, version = resolve_version(arguments.alias, arguments.tracking_uri)
    (batch_rows,) = arguments.batch_rows
    if kind == "a":
        result = bare_ceiling(
            onnx_path, schema, arguments.parquet, batch_rows, arguments.threads, arguments.rows, arguments.repeats
        )
    else:
        uri = f"models:/{arguments.model_name}/{version}"
        result = pyfunc_predict(
            uri, arguments.parquet, batch_rows, arguments.rows, arguments.input_form, arguments.repeats
        )
    return {**result, "version": version, "cpus": arguments.cpus, "peak_rss_mb": round(peak_rss_mb(), 1)}


def measure_in_subprocess(kind: str, batch_rows: int, arguments: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, str(arguments.parquet), "--measure", kind, "--batch-rows", str(batch_rows)]
    command += ["--threads", str(arguments.threads), "--tracking-uri", arguments.tracking_uri]
    command += [
        "--repeats",
        str(arguments.repeats),
        "--alias",
        arguments.alias,
        "--model-name",
        arguments.model_name,
        "--input-form",
        arguments.input_form,
    ]
    if arguments.rows is not None:
        command += ["--rows", str(arguments.rows)]
    if arguments.cpus:
        command += ["--cpus", *map(str, arguments.cpus)]
    completed = subprocess.run(command, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parquet", type=Path, help="a Parquet file or folder (scripts/synthetic_portfolio.py)")
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--alias", default="production")
    parser.add_argument("--model-name", default=MODEL_NAME)
    parser.add_argument("--batch-rows", type=int, nargs="+", default=list(BATCH_ROWS))
    parser.add_argument("--threads", type=int, default=1, help="(a)'s intra-op threads")
    parser.add_argument("--rows", type=int, help="only the first ROWS rows")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over all rows; the fastest is reported")
    parser.add_argument("--kinds", nargs="+", choices=sorted(KINDS), default=sorted(KINDS))
    parser.add_argument("--input-form", choices=("dict", "frame"), default="dict", help="(d)'s input")
    parser.add_argument("--cpus", type=int, nargs="*", default=[], help="pin the measuring process to these CPUs")
    parser.add_argument("--measure", choices=sorted(KINDS), help="measure one kind here, print one JSON line")
    parser.add_argument(
        "--quiet-wait", type=float, default=60.0, help="seconds to wait for other processes to go quiet before each"
    )
    return parser.parse_args()


def main() -> int:
    arguments = parse_arguments()
    if arguments.measure:
        if len(arguments.batch_rows) != 1:
            print("--measure takes exactly one --batch-rows", file=sys.stderr)
            return 2
        print(json.dumps(measure(arguments.measure, arguments)))
        return 0
    print(f"{'kind':<18} {'batch':>6} {'rows':>10} {'seconds':>8} {'M rows/s':>9} {'peak RSS MB':>12} {'others':>6}")
    for batch_rows in arguments.batch_rows:
        for kind in arguments.kinds:
            result = least_contended(partial(measure_in_subprocess, kind, batch_rows, arguments), arguments.quiet_wait)
            print(
                f"{KINDS[kind]:<18} {batch_rows:>6} {result['rows']:>10,} {result['seconds']:>8.2f} "
                f"{result['rows_per_s'] / 1e6:>9.3f} {result['peak_rss_mb']:>12,.0f} {result['others_cpu']:>6.0%}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
