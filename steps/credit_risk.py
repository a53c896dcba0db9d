"""What a run decides about a version beyond its network: score scaling, decision bands, fairness slices and the
reason-code texts. The train step checks and logs them (`risk/config.json`); convert and quantize put them into each
ONNX model's metadata, with the calibration and the explanation reference, so the gateway serves what was decided.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
import mlflow
import numpy as np
import pandas as pd

from registry.slices import DEFAULT_SLICES, SliceSpec, parse_slices
from scoring.calibration import METHODS as CALIBRATION_METHODS
from scoring.calibration import Calibration
from scoring.points import ScoreScaling, parse_bands
from scoring.reasons import ExplanationSpec, ReasonCode
from scoring.schema import MISSING_CATEGORY, FeatureSchema
from steps.errors import UserInputError
from steps.onnx_model import RiskMetadata

logger = logging.getLogger(__name__)

RISK_CONFIG_ARTIFACT = "risk/config.json"
CALIBRATION_ARTIFACT = "calibration/calibration.json"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REASON_CODES = REPO_ROOT / "data" / "reason_codes.json"
CALIBRATION_CHOICES = ("auto", *CALIBRATION_METHODS)


def check_calibration_choice(method: str) -> None:
    if method not in CALIBRATION_CHOICES:
        raise UserInputError(f"parameter calibration must be one of {', '.join(CALIBRATION_CHOICES)}, got {method!r}")


@dataclass(frozen=True)
class RiskOptions:
    scaling: ScoreScaling = field(default_factory=ScoreScaling)
    slices: str = DEFAULT_SLICES
    reason_codes: dict[str, ReasonCode] = field(default_factory=dict)
    reason_codes_file: str = ""

    @property
    def slice_specs(self) -> list[SliceSpec]:
        return parse_slices(self.slices)

    def as_params(self) -> dict[str, object]:
        return {
            "score_base": self.scaling.base_score,
            "score_base_odds": self.scaling.base_odds,
            "score_pdo": self.scaling.pdo,
            "score_bands": ",".join(
                f"{band.name}:{band.min_score:g}" if np.isfinite(band.min_score) else band.name
                for band in self.scaling.bands
            ),
            "fairness_slices": self.slices,
            "reason_codes": self.reason_codes_file,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "score_scaling": self.scaling.to_dict(),
            "fairness_slices": self.slices,
            "reason_codes": {name: code.to_dict() for name, code in self.reason_codes.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RiskOptions:
        codes = {name: ReasonCode.from_dict(entry) for name, entry in data["reason_codes"].items()}
        return cls(ScoreScaling.from_dict(data["score_scaling"]), str(data["fairness_slices"]), codes)


def risk_options(
    base_score: float = 600.0,
    base_odds: float = 50.0,
    pdo: float = 20.0,
    bands: str = "",
    slices: str = DEFAULT_SLICES,
    reason_codes: Path | None = DEFAULT_REASON_CODES,
) -> RiskOptions:
    """Checked options; each error names the parameter (or the file) that is wrong."""
    try:
        parsed_bands = parse_bands(bands)
    except ValueError as error:
        raise UserInputError(f"parameter score-bands: {error}") from None
    try:
        scaling = ScoreScaling(base_score, base_odds, pdo, parsed_bands)
    except ValueError as error:
        raise UserInputError(f"parameters score-base/score-base-odds/score-pdo/score-bands: {error}") from None
    try:
        parse_slices(slices)
    except ValueError as error:
        raise UserInputError(f"parameter fairness-slices: {error}") from None
    codes = read_reason_codes(reason_codes) if reason_codes else {}
    return RiskOptions(scaling, slices, codes, str(reason_codes or ""))


@dataclass(frozen=True)
class RiskArguments:
    """The risk options as typed on a command line; checked by `options()` inside the step (one-line errors)."""

    calibration: str
    score_base: float
    score_base_odds: float
    score_pdo: float
    score_bands: str
    fairness_slices: str
    reason_codes: str

    def options(self) -> RiskOptions:
        return risk_options(
            self.score_base,
            self.score_base_odds,
            self.score_pdo,
            self.score_bands,
            self.fairness_slices,
            Path(self.reason_codes) if self.reason_codes else None,
        )


F = TypeVar("F", bound=Callable[..., Any])


def risk_cli_options(command: F) -> F:
    """`--calibration/--score-base/--score-base-odds/--score-pdo/--score-bands/--fairness-slices/--reason-codes`,
    handed to the command as one `risk_arguments` (train and main share them)."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        calibration: str,
        score_base: float,
        score_base_odds: float,
        score_pdo: float,
        score_bands: str,
        fairness_slices: str,
        reason_codes: str,
        **kwargs: Any,
    ) -> Any:
        arguments = RiskArguments(
            calibration, score_base, score_base_odds, score_pdo, score_bands, fairness_slices, reason_codes
        )
        return command(*args, risk_arguments=arguments, **kwargs)

    options = [
        click.option(
            "--calibration",
            type=click.Choice(CALIBRATION_CHOICES),
            default="auto",
            show_default=True,
            help="Calibration map fitted on the validation split; auto: the lowest cross-validated log loss.",
        ),
        click.option("--score-base", type=float, default=600.0, show_default=True, help="Points at the base odds."),
        click.option(
            "--score-base-odds", type=float, default=50.0, show_default=True, help="Good:bad odds at the base score."
        ),
        click.option("--score-pdo", type=float, default=20.0, show_default=True, help="Points to double the odds."),
        click.option("--score-bands", default="", help="Decision bands by minimum score, e.g. A:680,B:640,C:600,D."),
        click.option(
            "--fairness-slices",
            default=DEFAULT_SLICES,
            show_default=True,
            help="Slicing columns; numbers cut into bands at the given edges (Age:25/35/50/65).",
        ),
        click.option(
            "--reason-codes",
            default=str(DEFAULT_REASON_CODES),
            show_default=str(DEFAULT_REASON_CODES.relative_to(REPO_ROOT)),
            help="JSON file: feature -> {code, text[, adverse_action]} of its reason ('' = generic texts).",
        ),
    ]
    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


def read_reason_codes(path: Path) -> dict[str, ReasonCode]:
    """`{"feature": {"code": "...", "text": "...", "adverse_action": true}}` from a JSON file, named in every
    error (`adverse_action` false: never given as a reason)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserInputError(f"reason codes file {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as error:
        raise UserInputError(f"reason codes file {path}: cannot read it as JSON ({error})") from None
    if not isinstance(data, dict):
        raise UserInputError(f"reason codes file {path}: expected an object of feature -> {{code, text}}")
    codes = {}
    for feature, entry in data.items():
        try:
            codes[feature] = ReasonCode.from_dict(entry if isinstance(entry, dict) else {})
        except ValueError as error:
            raise UserInputError(f"reason codes file {path}: feature {feature!r} {error}") from None
    return codes


def codes_for(options: RiskOptions, schema: FeatureSchema) -> dict[str, ReasonCode]:
    """The reason codes of this schema's features; the others are reported once (another data set's file?)."""
    unknown = sorted(set(options.reason_codes) - set(schema.features))
    if unknown:
        logger.warning("reason codes for feature(s) not in this data set ignored: %s", ", ".join(unknown))
    without = [name for name in schema.features if name not in options.reason_codes]
    if without:
        logger.info("feature(s) without a reason-code text get a generic one: %s", ", ".join(without))
    return {name: code for name, code in options.reason_codes.items() if name in schema.features}


def reference_values(train: pd.DataFrame, schema: FeatureSchema) -> dict[str, float | str]:
    """A typical applicant: the training split's median of each number, most frequent category of each category."""
    reference: dict[str, float | str] = {}
    for name in schema.features:
        if name in schema.numeric:
            median = pd.to_numeric(train[name], errors="coerce").median()
            reference[name] = float(median) if median == median else 0.0
        else:
            present = train[name][train[name] != MISSING_CATEGORY]
            reference[name] = str(present.mode().iloc[0]) if len(present) else MISSING_CATEGORY
    return reference


def explanation_spec(train: pd.DataFrame, schema: FeatureSchema, options: RiskOptions) -> ExplanationSpec:
    return ExplanationSpec(reference_values(train, schema), codes_for(options, schema))


def risk_metadata(train_run_id: str, train: pd.DataFrame, schema: FeatureSchema) -> RiskMetadata:
    """The version metadata that follows from a train run's decisions and its training split."""
    options, calibration = load_risk_config(train_run_id)
    return RiskMetadata(calibration, options.scaling, explanation_spec(train, schema, options))


def log_risk_config(options: RiskOptions, calibration: Calibration) -> None:
    mlflow.log_dict(options.to_dict(), RISK_CONFIG_ARTIFACT)
    mlflow.log_dict(calibration.to_dict(), CALIBRATION_ARTIFACT)


def load_risk_config(train_run_id: str) -> tuple[RiskOptions, Calibration]:
    """What the train run decided. A train run from before calibration existed (no `calibration` param) reads as
    the defaults, uncalibrated; any other failure to read them stops the step (never an uncalibrated graph by
    accident)."""
    if "calibration" not in mlflow.get_run(train_run_id).data.params:
        logger.warning("train run %s predates calibration and score scaling: defaults, uncalibrated", train_run_id)
        return RiskOptions(), Calibration()
    options = RiskOptions.from_dict(mlflow.artifacts.load_dict(f"runs:/{train_run_id}/{RISK_CONFIG_ARTIFACT}"))
    calibration = Calibration.from_dict(mlflow.artifacts.load_dict(f"runs:/{train_run_id}/{CALIBRATION_ARTIFACT}"))
    return options, calibration
