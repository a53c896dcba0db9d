"""Step `prepare`: load and validate the data, split it, and publish the splits and feature schema to MLflow.

Artifacts (names in `scoring.contract`): `splits/{train,validation,test}.parquet`, `schema/feature_schema.json`,
`profile/*`. Later steps read them through `load_prepared(run_id)`.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import mlflow
import pandas as pd

from scoring.contract import (
    DATA_FILE_TAG,
    DATA_SHA256_TAG,
    FEATURE_SCHEMA_ARTIFACT,
    SPLIT_NAMES,
    SPLITS_DIR,
    frame_sha256,
    split_artifact,
    split_sha256_tag,
)
from scoring.schema import FeatureSchema
from steps import data, plots
from steps.cli import run_id_file_option, run_step_cli
from steps.data import Splits
from steps.settings import PipelineSettings
from steps.tracking import log_params, step_run

logger = logging.getLogger(__name__)

DEFAULT_DATA_PATH = Path(__file__).resolve().parent.parent / "data" / "credit_data.csv"


@dataclass(frozen=True)
class PrepareResult:
    run_id: str
    schema: FeatureSchema
    data_sha256: str
    rows: dict[str, int]


@dataclass(frozen=True)
class PreparedData:
    splits: Splits
    schema: FeatureSchema
    data_sha256: str


def prepare(
    data_path: Path = DEFAULT_DATA_PATH,
    target: str = "Status",
    positive_label: str = "bad",
    seed: int = 42,
    validation_fraction: float = 0.15,
    test_fraction: float = 0.2,
    min_rows: int = 100,
    categorical_columns: Sequence[str] = (),
    drop_columns: Sequence[str] = (),
    settings: PipelineSettings | None = None,
) -> PrepareResult:
    """Validate and split `data_path`; `categorical_columns` are categories whatever their type (integer codes),
    `drop_columns` are not features (an id)."""
    settings = settings or PipelineSettings()
    data_path = Path(data_path)
    with step_run("prepare", settings) as run:
        log_params(
            {
                "data_path": str(data_path),
                "target": target,
                "positive_label": positive_label,
                "seed": seed,
                "validation_fraction": validation_fraction,
                "test_fraction": test_fraction,
                "min_rows": min_rows,
                "categorical_columns": ",".join(categorical_columns),
                "drop_columns": ",".join(drop_columns),
            }
        )
        table = data.load_table(data_path)
        frame, schema, dropped = data.validate_table(
            table, target, positive_label, min_rows, str(data_path), categorical_columns, drop_columns
        )
        splits = data.split_frame(frame, target, seed, validation_fraction, test_fraction)
        data_sha256 = data.file_sha256(data_path)
        mlflow.set_tags({DATA_SHA256_TAG: data_sha256, DATA_FILE_TAG: data_path.name})
        rows = {name: len(split) for name, split in splits.items()}
        _log_profile(table, frame, schema, splits, dropped)
        _log_splits(splits, schema, data_path)
        logger.info(
            "prepared %s: %d rows (%s), %d numeric + %d categorical features",
            data_path.name,
            len(frame),
            ", ".join(f"{k} {v}" for k, v in rows.items()),
            len(schema.numeric),
            len(schema.categorical),
        )
        return PrepareResult(run_id=run.info.run_id, schema=schema, data_sha256=data_sha256, rows=rows)


def _log_profile(table: pd.DataFrame, frame: pd.DataFrame, schema: FeatureSchema, splits: Splits, dropped: int) -> None:
    metrics: dict[str, float] = {"rows_total": len(frame), "rows_dropped_missing_target": dropped}
    for name, split in splits.items():
        metrics[f"rows_{name}"] = len(split)
        metrics[f"positive_rate_{name}"] = float(split[schema.target].mean())
    features = table.drop(columns=[schema.target])
    missing = features.isna().sum()
    metrics["missing_cells_total"] = int(missing.sum())
    mlflow.log_metrics(metrics)
    profile = pd.DataFrame(
        {
            "column": missing.index.astype(str),
            "kind": ["numeric" if c in schema.numeric else "categorical" for c in missing.index.astype(str)],
            "missing": missing.to_numpy(),
            "missing_fraction": (missing / len(features)).round(5).to_numpy(),
            "distinct": features.nunique().to_numpy(),
        }
    )
    mlflow.log_table(profile, "profile/columns.json")
    mlflow.log_text(profile.to_string(index=False), "profile/columns.txt")
    figure = plots.missing_values_figure(profile, {name: float(s[schema.target].mean()) for name, s in splits.items()})
    mlflow.log_figure(figure, "plots/data_profile.png")
    plots.close(figure)


def _log_splits(splits: Splits, schema: FeatureSchema, data_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="credit-splits-") as folder:
        for name, split in splits.items():
            split_path = Path(folder) / f"{name}.parquet"
            split.to_parquet(split_path, index=False)
            with warnings.catch_warnings():
                # MLflow hints that int columns cannot hold NaN (only the 0/1 target is int) and that a local path
                # matches two equivalent source types; neither needs the user's attention.
                warnings.simplefilter("ignore", UserWarning)
                dataset = mlflow.data.from_pandas(
                    split, source=str(data_path.resolve()), targets=schema.target, name=f"{data_path.stem}-{name}"
                )
                mlflow.log_input(dataset, context=name)
            mlflow.set_tag(split_sha256_tag(name), frame_sha256(split))
        mlflow.log_artifacts(folder, SPLITS_DIR)
    mlflow.log_text(schema.to_json(), FEATURE_SCHEMA_ARTIFACT)


def load_schema(prepare_run_id: str) -> FeatureSchema:
    """The feature schema a `prepare` run published (without its splits)."""
    with tempfile.TemporaryDirectory(prefix="credit-schema-") as folder:
        schema_file = mlflow.artifacts.download_artifacts(
            run_id=prepare_run_id, artifact_path=FEATURE_SCHEMA_ARTIFACT, dst_path=folder
        )
        return FeatureSchema.from_json(Path(schema_file).read_text())


def load_prepared(prepare_run_id: str) -> PreparedData:
    """Read the splits and schema that a `prepare` run published."""
    run = mlflow.get_run(prepare_run_id)
    schema = load_schema(prepare_run_id)
    # Read into memory, so the downloaded copies need not outlive this call.
    with tempfile.TemporaryDirectory(prefix="credit-prepared-") as folder:
        frames = {
            name: pd.read_parquet(
                mlflow.artifacts.download_artifacts(
                    run_id=prepare_run_id, artifact_path=split_artifact(name), dst_path=folder
                )
            )
            for name in SPLIT_NAMES
        }
    # Parquet keeps the dtypes, but normalising again guards against files written by other tools.
    normalised = {
        name: pd.concat([data.normalize_features(f, schema), f[[schema.target]]], axis=1) for name, f in frames.items()
    }
    return PreparedData(
        splits=Splits(**normalised),
        schema=schema,
        data_sha256=run.data.tags[DATA_SHA256_TAG],
    )


def parse_column_list(text: str) -> list[str]:
    """`"EDUCATION, SEX"` -> ["EDUCATION", "SEX"] (comma-separated; empty means none)."""
    return [name.strip() for name in text.split(",") if name.strip()]


@click.command(help="Load, validate and split a CSV/Parquet data set; log splits and schema to MLflow.")
@click.option("--data-path", type=click.Path(path_type=Path), default=DEFAULT_DATA_PATH, show_default=True)
@click.option("--target", default="Status", show_default=True, help="Name of the binary target column.")
@click.option("--positive-label", default="bad", show_default=True, help="Target value that means default.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--validation-fraction", type=float, default=0.15, show_default=True)
@click.option("--test-fraction", type=float, default=0.2, show_default=True)
@click.option("--min-rows", type=int, default=100, show_default=True)
@click.option("--categorical-columns", default="", help="Comma-separated columns that are categories (integer codes).")
@click.option("--drop-columns", default="", help="Comma-separated columns that are not features (an id, say).")
@run_id_file_option
def cli(categorical_columns: str, drop_columns: str, run_id_file: Path | None, **options: Any) -> None:
    result = run_step_cli(
        "prepare",
        lambda settings: prepare(
            categorical_columns=parse_column_list(categorical_columns),
            drop_columns=parse_column_list(drop_columns),
            settings=settings,
            **options,
        ),
        run_id_file,
    )
    click.echo(f"prepare run {result.run_id}: rows {result.rows}, data sha256 {result.data_sha256[:12]}")


if __name__ == "__main__":
    cli()
