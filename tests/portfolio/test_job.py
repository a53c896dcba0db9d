"""The portfolio job end to end against a real MLflow server and a real registered version: every input row lands
exactly once (scored or rejected with its reason), probabilities are the version's own, the MLflow run holds what
the issue asks, bad input is refused in one line with nothing written, a killed run resumes, and the Spark engine
(local mode) gives the local engine's probabilities."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from monitoring.reference import normalized_features, score
from portfolio.job import ScoringRequest, score_portfolio
from portfolio.output import MANIFEST
from portfolio.score import cli
from portfolio.settings import PortfolioSettings
from portfolio.sources import sha256_of
from registry.resolve import resolve
from registry.settings import RegistrySettings
from tests.conftest import Served
from tests.readme_blocks import readme_block, run_readme_text

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def book(frame: pd.DataFrame, rows: int, start: int = 0) -> pd.DataFrame:
    """`rows` real applicants (the data repeated) with unique account ids."""
    repeated = frame.sample(n=rows, replace=True, random_state=start).reset_index(drop=True)
    repeated.insert(0, "account_id", [f"A{start + i:09d}" for i in range(rows)])
    return repeated


@pytest.fixture(scope="module")
def applicants(credit_frame: pd.DataFrame) -> pd.DataFrame:
    return credit_frame.drop(columns=["Status"])


@pytest.fixture
def settings(served: Served, tmp_path: Path) -> PortfolioSettings:
    return PortfolioSettings(
        tracking_uri=served.url,
        model_name=served.model_name,
        experiment_name="portfolio-scoring",
        model_cache_dir=tmp_path / "models",
        batch_rows=1000,
        rows_per_part=3000,
    )


def read_dataset(folder: Path) -> pd.DataFrame:
    files = sorted(folder.glob("*.parquet"))
    return (
        pd.concat([pq.read_table(file).to_pandas() for file in files], ignore_index=True) if files else pd.DataFrame()
    )


def expected_probabilities(served: Served, frame: pd.DataFrame, version: str, cache: Path) -> np.ndarray:
    model = resolve(version, RegistrySettings(tracking_uri=served.url, model_name=served.model_name, cache_dir=cache))
    return score(model, normalized_features(frame, model.feature_schema, "expected"))


def with_bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Four rows the gateway would refuse: text for a number (twice), infinity, no id."""
    bad = frame.copy()
    bad["Income"] = bad["Income"].astype(object)
    bad.loc[1, "Income"] = "lots"
    bad.loc[2, "Income"] = "inf"
    bad.loc[3, "account_id"] = None
    bad["Debt"] = bad["Debt"].astype(object)
    bad.loc[4, "Debt"] = "N/A"  # text, not a missing value: Arrow's CSV reader would make it null by default
    return bad


def test_local_engine_scores_every_row_once_as_the_version_does(
    served: Served, settings: PortfolioSettings, applicants: pd.DataFrame, tmp_path: Path
) -> None:
    inputs = tmp_path / "book"
    inputs.mkdir()
    first, second = book(applicants, 5000, 0), with_bad_rows(book(applicants, 2500, 5000))
    first.to_parquet(inputs / "a.parquet", row_group_size=1000)
    second.to_csv(inputs / "b.csv", index=False)
    (inputs / "_SUCCESS").write_text("")  # not data: ignored
    output = tmp_path / "scored"

    outcome = score_portfolio(ScoringRequest(inputs, output), settings)

    scores, rejected = read_dataset(output / "scores"), read_dataset(output / "rejected")
    assert (outcome.rows_in, outcome.scored, outcome.rejected) == (7500, 7496, 4)
    assert len(scores) == 7496 and scores["account_id"].is_unique
    assert sorted(rejected["reason"]) == [
        "Debt: expected a number",
        "Income: expected a number",
        "Income: must be finite",
        "account_id: missing: every row needs its id",
    ]
    assert set(rejected["value"]) == {"lots", "inf", "N/A", None}
    every_id = set(scores["account_id"]) | set(rejected["account_id"].dropna())
    assert every_id == set(first["account_id"]) | set(second["account_id"].dropna())
    # The version's own probabilities (monitoring.reference.score: the drift job's reference scoring), exactly.
    good = pd.concat([first, second.drop(index=[1, 2, 3, 4])], ignore_index=True)
    expected = expected_probabilities(served, good.drop(columns=["account_id"]), "production", tmp_path / "m2")
    by_id = scores.set_index("account_id").loc[good["account_id"]]
    np.testing.assert_array_equal(by_id["probability_of_default"].to_numpy(), expected)
    threshold = float(by_id["decision_threshold"].iloc[0])
    assert (by_id["predicted_default"] == (by_id["probability_of_default"] >= threshold)).all()
    assert set(by_id["model_version"]) == {"1"} and set(by_id["model_precision"]) == {"fp32"}
    assert set(by_id["model_name"]) == {served.model_name} and by_id["scored_at"].notna().all()
    manifest = json.loads((output / MANIFEST).read_text())
    assert manifest["complete"] and len(manifest["parts"]) == 2 + 1  # a.parquet: 5 row groups in 2 parts; b.csv: 1
    assert not list(output.rglob(".tmp-*"))

    client = MlflowClient(served.url)
    run = client.get_run(outcome.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "portfolio-scoring"
    assert run.info.status == "FINISHED"
    assert run.data.params["model_version"] == "1" and run.data.params["output"] == str(output.resolve())
    metrics = run.data.metrics
    assert (metrics["rows_in"], metrics["rows_scored"], metrics["rows_rejected"]) == (7500, 7496, 4)
    assert metrics["rows_per_s"] > 0 and 0 <= metrics["psi_probability_of_default"] < 0.1  # the training data itself
    assert {f"psi_{name}" for name in served.rows.columns} <= set(metrics)
    artifacts = {item.path for item in client.list_artifacts(outcome.run_id, "portfolio")}
    assert {
        "portfolio/score_distribution.png",
        "portfolio/inputs.json",
        "portfolio/rejects_by_reason.json",
    } <= artifacts
    folder = Path(client.download_artifacts(outcome.run_id, "portfolio", str(tmp_path / "artifacts")))
    described = {Path(item["path"]).name: item for item in json.loads((folder / "inputs.json").read_text())}
    assert (
        described["a.parquet"]["sha256"] == sha256_of(inputs / "a.parquet") and described["a.parquet"]["rows"] == 5000
    )
    assert described["b.csv"]["rows"] == 2500
    assert json.loads((folder / "rejects_by_reason.json").read_text())["Income: expected a number"] == 1
    assert (folder / "score_distribution.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Started again on the same input: nothing is scored twice.
    written = {path: path.stat().st_mtime_ns for path in output.rglob("part-*.parquet")}
    again = score_portfolio(ScoringRequest(inputs, output), settings)
    assert (again.rows_in, again.rows_this_run) == (7500, 0) and len(read_dataset(output / "scores")) == 7496
    assert {path: path.stat().st_mtime_ns for path in output.rglob("part-*.parquet")} == written


def invoke(served: Served, *args: str) -> tuple[int, str]:
    env = {"MLFLOW_TRACKING_URI": served.url, "CREDIT_REGISTERED_MODEL_NAME": served.model_name}
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def small_book(applicants: pd.DataFrame, tmp_path: Path) -> Path:
    path = tmp_path / "book.parquet"
    book(applicants, 2000).to_parquet(path)
    return path


def test_a_missing_column_is_named_before_anything_is_written(served: Served, small_book: Path, tmp_path: Path) -> None:
    frame = pd.read_parquet(small_book).drop(columns=["Income", "Debt"])
    frame.to_parquet(tmp_path / "partial.parquet")
    code, output = invoke(served, str(tmp_path / "partial.parquet"), "--output", str(tmp_path / "out"))
    assert code == 2
    assert (
        output.strip().splitlines()[-1]
        == f"error: input {tmp_path / 'partial.parquet'}: missing column(s) Income, Debt"
    )
    assert not (tmp_path / "out").exists()
    code, output = invoke(served, str(small_book), "--output", str(tmp_path / "out"), "--id-column", "customer")
    assert code == 2 and "missing column(s) customer" in output and not (tmp_path / "out").exists()


def test_a_truncated_parquet_file_is_named(served: Served, small_book: Path, tmp_path: Path) -> None:
    folder = tmp_path / "book"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(small_book.read_bytes())
    (folder / "b.parquet").write_bytes(small_book.read_bytes()[: small_book.stat().st_size // 2])
    code, output = invoke(served, str(folder), "--output", str(tmp_path / "out"))
    assert code == 2
    assert (
        output.strip().splitlines()[-1].startswith(f"error: input {folder / 'b.parquet'}: not a readable parquet file")
    )
    assert "Traceback" not in output and not (tmp_path / "out").exists()


def test_an_alias_that_points_nowhere_is_refused(served: Served, small_book: Path, tmp_path: Path) -> None:
    code, output = invoke(served, str(small_book), "--output", str(tmp_path / "out"), "--version", "champion")
    assert code == 2 and output.strip().splitlines()[-1] == f"error: {served.model_name} has no alias 'champion'"
    assert not (tmp_path / "out").exists()


def test_another_versions_results_are_refused_unless_overwrite(
    served: Served, small_book: Path, tmp_path: Path
) -> None:
    out = str(tmp_path / "out")
    assert invoke(served, str(small_book), "--output", out)[0] == 0
    code, output = invoke(served, str(small_book), "--output", out, "--version", "staging")
    assert code == 2
    assert (
        f"holds {served.model_name} version 1's results, not {served.model_name} version 2's" in output.splitlines()[-1]
    )
    assert set(read_dataset(tmp_path / "out" / "scores")["model_version"]) == {"1"}  # untouched
    code, output = invoke(served, str(small_book), "--output", out, "--version", "staging", "--overwrite")
    assert code == 0, output
    scores = read_dataset(tmp_path / "out" / "scores")
    assert set(scores["model_version"]) == {"2"} and set(scores["model_precision"]) == {"int8"} and len(scores) == 2000


def test_too_many_rejects_fail_the_job_with_the_output_complete(
    served: Served, applicants: pd.DataFrame, tmp_path: Path
) -> None:
    frame = with_bad_rows(book(applicants, 100))  # 4% rejected
    frame.to_csv(tmp_path / "book.csv", index=False)
    code, output = invoke(served, str(tmp_path / "book.csv"), "--output", str(tmp_path / "out"))
    assert code == 1
    assert "error: 4 of 100 rows rejected (4.00%), above the maximum reject rate 1.00%" in output
    assert len(read_dataset(tmp_path / "out" / "scores")) == 96
    assert len(read_dataset(tmp_path / "out" / "rejected")) == 4
    code, _ = invoke(served, str(tmp_path / "book.csv"), "--output", str(tmp_path / "out"), "--max-reject-rate", "0.05")
    assert code == 0


def test_a_killed_run_resumes_and_holds_every_row_exactly_once(
    served: Served, applicants: pd.DataFrame, tmp_path: Path
) -> None:
    rows = 1_500_000
    frame = book(applicants, rows)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp_path / "book.parquet", row_group_size=50_000)
    output = tmp_path / "out"
    command = [
        sys.executable, "-m", "portfolio.score", str(tmp_path / "book.parquet"), "--output", str(output),
        "--rows-per-part", "50000", "--batch-rows", "1024",
    ]  # fmt: skip
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": served.url,
        "CREDIT_REGISTERED_MODEL_NAME": served.model_name,
        "PORTFOLIO_MODEL_CACHE_DIR": str(tmp_path / "models"),
    }
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    manifest_path = output / MANIFEST
    deadline = time.monotonic() + 120
    finished_parts = 0
    while time.monotonic() < deadline and process.poll() is None:
        if manifest_path.is_file():
            try:
                finished_parts = len(json.loads(manifest_path.read_text())["parts"])
            except ValueError:  # never: the manifest is replaced atomically (checked here)
                pytest.fail("a half-written manifest was visible")
            if finished_parts >= 3:
                break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    manifest = json.loads(manifest_path.read_text())
    assert 3 <= len(manifest["parts"]) < 30 and not manifest["complete"], "the run was not killed part-way"

    resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"scored {rows:,} of {rows:,} rows" in resumed.stdout
    assert f"resuming into {output}: {len(manifest['parts'])} part(s) already finished" in resumed.stderr
    ids = pq.read_table(output / "scores", columns=["account_id"]).column("account_id").to_pandas()
    assert len(ids) == rows and ids.is_unique and set(ids) == set(frame["account_id"])
    assert not list(output.rglob(".tmp-*"))
    final = json.loads(manifest_path.read_text())
    assert final["complete"] and len(final["parts"]) == 30


def test_spark_engine_gives_the_local_engines_probabilities(
    served: Served, settings: PortfolioSettings, applicants: pd.DataFrame, tmp_path: Path
) -> None:
    inputs = tmp_path / "book"
    inputs.mkdir()
    book(applicants, 6000, 0).to_parquet(inputs / "a.parquet", row_group_size=1500)
    with_bad_rows(book(applicants, 1500, 6000)).to_csv(inputs / "b.csv", index=False)

    local = score_portfolio(ScoringRequest(inputs, tmp_path / "local"), settings)
    spark = score_portfolio(
        ScoringRequest(inputs, tmp_path / "spark", engine="spark"),
        settings.model_copy(update={"spark_master": "local[2]"}),
    )

    left = read_dataset(tmp_path / "local" / "scores").set_index("account_id").sort_index()
    right = read_dataset(tmp_path / "spark" / "scores").set_index("account_id").sort_index()
    assert len(left) == len(right) == 7496
    np.testing.assert_array_equal(right["probability_of_default"].to_numpy(), left["probability_of_default"].to_numpy())
    assert (right["predicted_default"] == left["predicted_default"]).all()
    for column in ("model_name", "model_version", "model_precision", "decision_threshold"):
        assert (right[column] == left[column]).all(), column
    rejected_left = read_dataset(tmp_path / "local" / "rejected").sort_values("reason")
    rejected_right = read_dataset(tmp_path / "spark" / "rejected").sort_values("reason")
    assert rejected_left["reason"].tolist() == rejected_right["reason"].tolist()
    assert (spark.rows_in, spark.scored, spark.rejected) == (local.rows_in, local.scored, local.rejected)
    assert spark.rejects_by_reason == local.rejects_by_reason
    assert spark.psi == pytest.approx(local.psi)
    client = MlflowClient(served.url)
    assert client.get_run(spark.run_id).data.params["engine"] == "spark"


def test_the_readmes_portfolio_commands_run_as_written(served: Served, tmp_path: Path) -> None:
    """The README's block: a synthetic book, the local engine, the Spark engine and `mlflow run -e score`."""
    # Relative paths, as in the README (`mlflow run` logs them as typed, the job must not log them again).
    text = readme_block("portfolio-score").text.replace(".portfolio/", f"{os.path.relpath(tmp_path, ROOT)}/")
    env = {"CREDIT_REGISTERED_MODEL_NAME": served.model_name, "PORTFOLIO_MODEL_CACHE_DIR": str(tmp_path / "models")}
    result = run_readme_text(text, tracking_uri=served.url, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    book_ids = pq.read_table(tmp_path / "book.parquet", columns=["account_id"]).column("account_id").to_pandas()
    outputs = {name: read_dataset(tmp_path / name / "2026-12" / "scores") for name in ("scores", "spark", "mlproject")}
    for name, scores in outputs.items():
        assert len(scores) == len(book_ids) == 200_000 and set(scores["account_id"]) == set(book_ids), name
    local, spark = (outputs[name].set_index("account_id").sort_index() for name in ("scores", "spark"))
    np.testing.assert_array_equal(
        local["probability_of_default"].to_numpy(), spark["probability_of_default"].to_numpy()
    )
    client = MlflowClient(served.url)
    experiment = client.get_experiment_by_name("portfolio-scoring")
    project_runs = client.search_runs(
        [experiment.experiment_id], f"params.output = '{os.path.relpath(tmp_path, ROOT)}/mlproject/2026-12'"
    )
    assert len(project_runs) == 1 and project_runs[0].info.status == "FINISHED"
    assert project_runs[0].data.tags["step"] == "portfolio-score" and project_runs[0].data.metrics["rows_in"] == 200_000
    assert project_runs[0].data.tags.get("mlflow.project.entryPoint") == "score"  # the project run itself
