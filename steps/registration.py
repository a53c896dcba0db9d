"""Registering what one pipeline run produced: both ONNX precisions as versions, the candidate staged, and the very
first deployment. `main` and the retraining DAG both call `register_candidate` with the benchmark run's id.

Everything is read back from the runs (the benchmark run's lineage names every upstream run), so the caller passes
one run id and registration can run on another worker. Re-running it for the same runs registers nothing twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from registry import audit
from registry.card import refresh_card
from registry.errors import RegistryError
from registry.gate import GateRefusedError
from registry.promotion import promote, require_production_schema, stage
from registry.resolve import version_for_alias
from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS, VersionSpec, model_exists, registration, set_alias
from scoring import contract
from scoring.schema import FeatureSchema
from steps.prepare import load_schema
from steps.settings import PipelineSettings
from steps.tracking import lineage, tracking_server

logger = logging.getLogger(__name__)

CANDIDATE_CHOICES = ("auto", "fp32", "int8")
PRECISIONS = ("fp32", "int8")
# INT8 becomes the candidate under "auto" only if it costs (almost) nothing and actually buys speed.
INT8_MIN_AGREEMENT = 0.99
INT8_MAX_AUC_LOSS = 0.002
INT8_MIN_SPEEDUP = 1.1


@dataclass(frozen=True)
class Int8Evidence:
    """What quantization cost and bought, as the quantize and benchmark runs measured it."""

    decision_agreement: float  # share of test decisions equal to fp32's
    auc_delta: float  # INT8 test ROC AUC minus fp32's
    single_row_speedup: float  # fp32 p50 / INT8 p50 at the smallest benchmarked batch


@dataclass(frozen=True)
class PipelineOutput:
    """One pipeline run's models as the registry will see them."""

    benchmark_run_id: str
    prepare_run_id: str
    schema: FeatureSchema
    specs: dict[str, VersionSpec]  # precision -> logged model and version tags
    int8: Int8Evidence


@dataclass(frozen=True)
class RegistrationResult:
    model_name: str
    versions: dict[str, str]  # precision -> version number
    candidate: str  # the precision chosen as candidate
    reused: bool = False  # the versions existed already (a re-run for the same runs): nothing was registered
    first_deployment: str | None = None  # what happened to `production` when none existed before
    aliases: dict[str, list[str]] = field(default_factory=dict)  # version -> its aliases afterwards


def choose_candidate(requested: str, evidence: Int8Evidence) -> str:
    """fp32 unless asked for int8, or "auto" and INT8 agrees with fp32, keeps AUC and is faster on one row."""
    if requested not in CANDIDATE_CHOICES:
        raise ValueError(f"candidate must be one of {', '.join(CANDIDATE_CHOICES)}, got {requested!r}")
    if requested != "auto":
        return requested
    good_enough = (
        evidence.decision_agreement >= INT8_MIN_AGREEMENT
        and evidence.auc_delta >= -INT8_MAX_AUC_LOSS
        and evidence.single_row_speedup >= INT8_MIN_SPEEDUP
    )
    return "int8" if good_enough else "fp32"


def pipeline_output(client: MlflowClient, benchmark_run_id: str) -> PipelineOutput:
    """Read the version tags and INT8 evidence of both precisions from the runs behind a benchmark run."""
    ids = lineage(benchmark_run_id, "benchmark")
    runs = {key: client.get_run(run_id) for key, run_id in ids.items()}
    prepared, trained = runs[contract.PREPARE_RUN_ID], runs[contract.TRAIN_RUN_ID]
    converted, quantized = runs[contract.CONVERT_RUN_ID], runs[contract.QUANTIZE_RUN_ID]
    bench = runs[contract.BENCHMARK_RUN_ID_TAG]  # lineage names the run itself `<step>_run_id` too
    smallest = min(int(size) for size in bench.data.params["batch_sizes"].split())

    def bench_metric(precision: str, statistic: str) -> float:
        return bench.data.metrics[f"onnx_{precision}_b{smallest}_{statistic}"]

    common = {
        contract.PREPARE_RUN_ID: prepared.info.run_id,
        contract.TRAIN_RUN_ID: trained.info.run_id,
        contract.BENCHMARK_RUN_ID_TAG: benchmark_run_id,
        contract.DATA_SHA256_TAG: prepared.data.tags[contract.DATA_SHA256_TAG],
        contract.DECISION_THRESHOLD_TAG: f"{trained.data.metrics['decision_threshold']:.6f}",
        contract.GIT_COMMIT_TAG: trained.data.tags.get(contract.GIT_COMMIT_TAG, "unknown"),
    }
    if "fairness_slices" in trained.data.params:
        common[contract.FAIRNESS_SLICES_TAG] = trained.data.params["fairness_slices"]
    q = quantized.data.metrics
    specs = {
        "fp32": VersionSpec(
            _model_uri(converted),
            {
                **common,
                contract.PRECISION_TAG: "fp32",
                contract.SOURCE_RUN_ID_TAG: converted.info.run_id,
                contract.TEST_ROC_AUC_TAG: f"{trained.data.metrics['test_roc_auc']:.6f}",
                contract.PARITY_TAG: f"{converted.data.metrics['parity_max_abs_diff']:.3g}",
                **_ece_tag(trained.data.metrics.get("test_ece")),
                contract.LATENCY_P99_TAG: f"{bench_metric('fp32', 'p99_ms'):.4f}",
            },
        ),
        "int8": VersionSpec(
            _model_uri(quantized),
            {
                **common,
                contract.PRECISION_TAG: "int8",
                contract.SOURCE_RUN_ID_TAG: quantized.info.run_id,
                contract.FP32_SOURCE_RUN_ID_TAG: converted.info.run_id,
                contract.TEST_ROC_AUC_TAG: f"{q['test_roc_auc_int8']:.6f}",
                contract.PARITY_TAG: f"{q['max_abs_diff']:.3g}",
                contract.DECISION_AGREEMENT_TAG: f"{q['decision_agreement']:.6f}",
                **_ece_tag(q.get("test_ece_int8")),
                contract.LATENCY_P99_TAG: f"{bench_metric('int8', 'p99_ms'):.4f}",
            },
        ),
    }
    evidence = Int8Evidence(
        decision_agreement=q["decision_agreement"],
        auc_delta=q["test_roc_auc_delta"],
        single_row_speedup=bench_metric("fp32", "p50_ms") / bench_metric("int8", "p50_ms"),
    )
    return PipelineOutput(benchmark_run_id, prepared.info.run_id, load_schema(prepared.info.run_id), specs, evidence)


def _ece_tag(ece: float | None) -> dict[str, str]:
    """The test ECE as a version tag (runs from before calibration have none)."""
    return {} if ece is None else {contract.TEST_ECE_TAG: f"{ece:.6f}"}


def _model_uri(run: Run) -> str:
    return run.data.tags[contract.MODEL_URI_TAG]


def check_schema(schema: FeatureSchema, settings: PipelineSettings, allow_schema_change: bool = False) -> None:
    """Refuse a model whose inputs differ from production's (see `registry.promotion.require_production_schema`).

    `main` calls it right after `prepare`, so a mismatch costs seconds rather than a training run.
    """
    registry_settings = RegistrySettings.of(settings)
    client = MlflowClient(registry_settings.tracking_uri)
    require_production_schema(client, registry_settings, schema, "the new model", allow_schema_change)


def register_candidate(
    benchmark_run_id: str,
    candidate: str = "auto",
    allow_schema_change: bool = False,
    promote_first: bool = True,
    actor: str | None = None,
    settings: PipelineSettings | None = None,
) -> RegistrationResult:
    """Register the fp32 and INT8 models behind `benchmark_run_id` and stage the candidate, all or nothing; with no
    production version yet (and `promote_first`), deploy the candidate through the gate and stage the other one.

    Safe to run again for the same runs (a retried task): versions registered from them are reused, and the candidate
    is staged only if no earlier attempt staged it, so nothing is registered twice and no alias is moved back.
    """
    settings = settings or PipelineSettings()
    registry_settings = RegistrySettings.of(settings)
    client = MlflowClient(registry_settings.tracking_uri)
    name = settings.model_name
    actor = actor or f"pipeline run {benchmark_run_id}"
    with tracking_server(settings):  # the runs' artifacts are read through MLflow's fluent API
        output = pipeline_output(client, benchmark_run_id)
    chosen = choose_candidate(candidate, output.int8)
    existing = _registered_from(client, name, output)
    missing = [precision for precision in PRECISIONS if precision not in existing]
    if missing:
        require_production_schema(client, registry_settings, output.schema, "the new model", allow_schema_change)
        previous_staging = version_for_alias(client, name, STAGING_ALIAS) if model_exists(client, name) else None
        try:
            with registration(client, name, [output.specs[p] for p in missing]) as created:
                versions = {**existing, **{p: v.version for p, v in zip(missing, created, strict=True)}}
                _stage_once(client, registry_settings, versions[chosen], actor, allow_schema_change)
        except BaseException:
            # Deleting the new versions took the staging alias with them if it had moved: the old candidate gets it
            # back, so a failed registration leaves staging as it found it.
            _restore_staging(client, registry_settings, previous_staging.version if previous_staging else None)
            raise
    else:
        versions = existing
        logger.info("%s versions %s were registered from these runs already", name, sorted(versions.values()))
        _stage_once(client, registry_settings, versions[chosen], actor, allow_schema_change)
    first_deployment = None
    if promote_first and version_for_alias(client, name, PRODUCTION_ALIAS) is None:
        first_deployment = _deploy_first(registry_settings, versions, chosen, actor, allow_schema_change)
    for precision in missing:  # the new versions' model cards
        if first_deployment is not None and precision == chosen:
            continue  # the first deployment's gate verdict (passed or refused) has just written this one's
        refresh_card(client, registry_settings, versions[precision])
    aliases = {v: list(client.get_model_version(name, v).aliases) for v in versions.values()}
    return RegistrationResult(name, versions, chosen, not missing, first_deployment, aliases)


def _registered_from(client: MlflowClient, name: str, output: PipelineOutput) -> dict[str, str]:
    """precision -> version of `name` already registered from this output's source runs (a re-run)."""
    found = {}
    for precision, spec in output.specs.items():
        source_run_id = spec.tags[contract.SOURCE_RUN_ID_TAG]
        matches = client.search_model_versions(f"name = '{name}' and run_id = '{source_run_id}'")
        if matches:
            found[precision] = min(matches, key=lambda version: int(version.version)).version
    return found


def _stage_once(
    client: MlflowClient, registry_settings: RegistrySettings, version: str, actor: str, allow_schema_change: bool
) -> None:
    """Stage the candidate unless that already happened once (per the audit trail) or it is in production: a re-run
    must not move staging back to it after someone staged another version since."""
    production = version_for_alias(client, registry_settings.model_name, PRODUCTION_ALIAS)
    if production is not None and production.version == version:
        return
    staged_before = audit.history(
        client, registry_settings, audit.query(action="stage", outcome=audit.MOVED, to_version=version)
    )
    if staged_before:
        return
    stage(version, "candidate of a new pipeline run", actor, allow_schema_change, registry_settings)


def _restore_staging(client: MlflowClient, registry_settings: RegistrySettings, previous: str | None) -> None:
    name = registry_settings.model_name
    if previous is None or not model_exists(client, name):
        return
    current = version_for_alias(client, name, STAGING_ALIAS)
    if current is None:
        set_alias(client, name, STAGING_ALIAS, previous, registry_settings.mirror_stages)
        logger.warning("registration failed: %s staging restored to version %s", name, previous)


def _deploy_first(
    registry_settings: RegistrySettings, versions: dict[str, str], chosen: str, actor: str, allow_schema_change: bool
) -> str:
    """With no `production` yet, promote the candidate through the gate and stage the other precision as challenger.

    A refused gate is reported, not raised: the versions are registered correctly, they just are not good enough to
    serve. Promotion after this is the gate's job (`python -m registry promote`, or the scheduled DAG).
    """
    try:
        result = promote(versions[chosen], reason="first deployment", actor=actor, settings=registry_settings)
    except GateRefusedError as error:
        logger.warning("first deployment refused by the gate: %s", error)
        _tag_active_run("first_deployment", f"refused: {error}")
        return f"refused: {error}"
    challenger = next(version for precision, version in versions.items() if precision != chosen)
    try:
        stage(challenger, "challenger of the first deployment", actor, allow_schema_change, registry_settings)
    except RegistryError as error:
        logger.warning("the challenger version %s was not staged: %s", challenger, error)
    _tag_active_run("first_deployment", f"production -> version {result.to_version}")
    return result.message


def _tag_active_run(key: str, value: str) -> None:
    if mlflow.active_run() is not None:
        mlflow.set_tag(key, value[:5000])
