"""Time `mlflow run . -e main --env-manager local` against a running tracking server and print a table.

Issue target: median of 3 rounds <= 90 s wall on the 2-core reference machine, tracking server already up. Each round
also reports the headline figures the main run logged, so one command gives the numbers for a closing note:
    .venv/bin/python scripts/time_main.py --tracking-uri http://127.0.0.1:5000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

REPO_ROOT = Path(__file__).resolve().parent.parent
COLUMNS = [
    ("wall_s", "{:.1f}"),
    ("test_roc_auc", "{:.4f}"),
    ("baseline_test_roc_auc", "{:.4f}"),
    ("cv_roc_auc_mean", "{:.4f}"),
    ("cv_roc_auc_std", "{:.4f}"),
    ("sklearn_b1_p50_ms", "{:.3f}"),
    ("onnx_fp32_b1_p50_ms", "{:.4f}"),
    ("onnx_int8_b1_p50_ms", "{:.4f}"),
    ("speedup_fp32_b1", "{:.0f}x"),
]


def one_round(tracking_uri: str, experiment: str, extra: list[str]) -> dict[str, float]:
    unset = {"MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"}
    env = {
        **{key: value for key, value in os.environ.items() if key not in unset},
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = [str(Path(sys.executable).parent / "mlflow"), "run", str(REPO_ROOT), "-e", "main"]
    command += ["--env-manager", "local", "--experiment-name", experiment, *extra]
    started = time.perf_counter()
    result = subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"error: mlflow run failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    client = MlflowClient(tracking_uri)
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (parent,) = client.search_runs(
        [experiment_id], "tags.step = 'main'", order_by=["attributes.start_time DESC"], max_results=1
    )
    (bench,) = client.search_runs(
        [experiment_id], f"tags.step = 'benchmark' and tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    metrics = {**parent.data.metrics, **bench.data.metrics, "wall_s": wall}
    metrics["speedup_fp32_b1"] = metrics["speedup_onnx_fp32_vs_sklearn_b1"]
    return metrics


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-P", dest="parameters", action="append", default=[], help="passed to mlflow run as -P")
    arguments = parser.parse_args()
    mlflow.set_tracking_uri(arguments.tracking_uri)
    experiment = f"time-main-{uuid.uuid4().hex[:6]}"
    extra = [item for parameter in arguments.parameters for item in ("-P", parameter)]
    rows = []
    for index in range(arguments.rounds):
        print(f"round {index + 1}/{arguments.rounds} ...", file=sys.stderr, flush=True)
        rows.append(one_round(arguments.tracking_uri, experiment, extra))
    print(f"mlflow run . -e main --env-manager local  ({arguments.tracking_uri}, experiment {experiment})")
    print("| round | " + " | ".join(name for name, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for index, row in enumerate(rows, start=1):
        cells = [fmt.format(row[name]) if name in row else "n/a" for name, fmt in COLUMNS]
        print(f"| {index} | " + " | ".join(cells) + " |")
    print(f"median wall time: {statistics.median(row['wall_s'] for row in rows):.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
