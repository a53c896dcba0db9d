"""Request and response models: they generate /openapi.json and check the body's structure.

Feature values are checked against the served model's own schema by `serving.validation` (the models here cannot
know which features a registered version has).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, StrictInt, StrictStr, WithJsonSchema

# Documented as number | string | null, but passed through unchecked here: `serving.validation` checks each value
# against the model's feature schema and names the feature in its error (pydantic would only know the position).
FeatureValue = Annotated[Any, WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]})]
ApplicantId = StrictStr | StrictInt


class Row(BaseModel):
    """One applicant: `values` in the model's feature order, or `features` by name. null = missing."""

    model_config = ConfigDict(extra="forbid")

    values: list[FeatureValue] | None = Field(default=None, examples=[[9, "rent", 60, 30, "married", "no"]])
    features: dict[str, FeatureValue] | None = Field(default=None, examples=[{"Age": 30, "Home": "rent"}])
    applicant_id: ApplicantId | None = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Documented as a list of Row, checked by `serving.validation` against the served model's schema (row index and
    # field in every error); validating it here as well would only cost time (docs/serving.md).
    batch: SkipValidation[list[Row]] = Field(
        min_length=1, description="Rows to score (at most the configured batch limit)."
    )
    applicant_id: ApplicantId | None = Field(default=None, description="Applies to rows without their own id.")
    explain: bool = Field(
        default=False,
        description="Also return each row's reason codes (at most SERVING_MAX_EXPLAIN_ROWS rows per request).",
    )


class ABPredictRequest(PredictRequest):
    variant: Literal["A", "B"] | None = Field(default=None, description="Force A (production) or B (staging).")


class ModelRef(BaseModel):
    name: str
    version: str
    alias: str


PREDICTIONS = "Probability of default per row, in request order."
SCORES = "Score points per row (the model's points-to-double-odds scale: higher is safer)."
BANDS = "Decision band per row, when a model that scored the batch defines bands (empty for rows of one without)."
REASONS = "With explain: per row, the features that raised its risk most, largest impact first."


class Reason(BaseModel):
    feature: str
    code: str = Field(description="The adverse-action reason code the lender gave this feature.")
    text: str = Field(description="The reason in words an applicant reads.")
    impact: float = Field(description="Log-odds of default this value added against a typical applicant's.")


class RiskFields(BaseModel):
    scores: list[int] = Field(description=SCORES)
    bands: list[str] | None = Field(default=None, description=BANDS)
    reasons: list[list[Reason]] | None = Field(default=None, description=REASONS)


class PredictResponse(RiskFields):
    request_id: str
    model: ModelRef
    predictions: list[float] = Field(description=PREDICTIONS)


class CachedPredictResponse(PredictResponse):
    cached: bool = Field(description="True when every row came from the cache.")
    cache_hits: int


class ABPredictResponse(RiskFields):
    request_id: str
    variant: Literal["A", "B", "mixed"]
    staging_available: bool = Field(description="Whether rows could go to B (a staging model taking the same inputs).")
    predictions: list[float] = Field(description=PREDICTIONS)
    variants: list[Literal["A", "B"]]
    versions: list[str]
    models: dict[str, ModelRef] = Field(description="The model behind each variant that served a row.")


class ErrorDetail(BaseModel):
    row: int | None = None
    field: str
    message: str


class ErrorBody(BaseModel):
    status: int
    code: str
    message: str
    details: list[ErrorDetail] | None = None
    request_id: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    status: Literal["ready"]
    production_version: str
    staging_version: str | None


class AliasVersion(BaseModel):
    alias: str
    version: str


class ReloadResponse(BaseModel):
    loaded: list[AliasVersion]
    unchanged: list[AliasVersion]
    removed: list[str] = Field(description="Aliases no longer set (their models were unloaded).")
    failed: dict[str, str] = Field(description="Alias -> why its new version could not be loaded (the old one serves).")


class FeatureSchemaInfo(BaseModel):
    features: list[str]
    numeric: list[str]
    categorical: list[str]
    categories: dict[str, list[str]]


class LoadedModelInfo(BaseModel):
    alias: str
    name: str
    version: str
    precision: str
    loaded_at: str
    warmup_ms: float
    decision_threshold: float | None
    feature_schema: FeatureSchemaInfo


class ABTestInfo(BaseModel):
    staging_routable: bool = Field(description="False when no staging model is loaded or it takes other inputs.")
    staging_input_differences: list[str] = Field(
        description="How staging's inputs differ from production's (+added, -removed, kind changes, order)."
    )


class ModelsResponse(BaseModel):
    production: LoadedModelInfo | None
    staging: LoadedModelInfo | None
    ab_test: ABTestInfo
