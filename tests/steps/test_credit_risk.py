"""Credit-risk rigor in the pipeline: calibration carried into the ONNX graph, ECE with intervals, score scaling,
reason codes (and their INT8 stability), fairness slices, and the bring-your-own path on a second data set."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path

import mlflow
import numpy as np
import onnx
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from onnx import TensorProto, helper, numpy_helper

from registry.card import card_location
from registry.fairness import fairness_report
from registry.resolve import resolve
from registry.settings import RegistrySettings
from registry.slices import parse_slices
from scoring.calibration import Calibration, bootstrap_ece, ece_noise_floor, expected_calibration_error
from scoring.onnx_runtime import decisions, inference_session, onnx_inputs, predict_default_probability
from scoring.points import ScoreScaling, parse_bands
from scoring.reasons import Explainer, ExplanationSpec, ReasonCode
from scoring.schema import FeatureSchema
from serving.app import create_app, start_serving
from serving.service import gateway_of
from serving.settings import ServingSettings
from steps import calibration
from steps.convert import convert, perturbed_rows
from steps.credit_risk import read_reason_codes, reference_values, risk_options
from steps.data import features_and_target
from steps.errors import UserInputError
from steps.main import main
from steps.model import MLPParams
from steps.onnx_model import load_onnx_model, to_onnx
from steps.prepare import load_prepared
from steps.settings import PipelineSettings
from steps.train import train
from tests.conftest import PipelineRuns, RedisProcess


def test_ece_of_equal_mass_bins_by_hand() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.3, 0.6, 0.8])
    # two bins of two rows: |0 - 0.2| and |1 - 0.7|, each half the rows
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(0.5 * 0.2 + 0.5 * 0.3)


def test_a_distorted_model_is_calibrated_and_the_method_chosen_by_held_out_log_loss() -> None:
    generator = np.random.default_rng(0)
    truth = generator.uniform(0.02, 0.6, 4000)
    y = (generator.random(4000) < truth).astype(int)
    overconfident = 1 / (1 + np.exp(-3 * np.log(truth / (1 - truth))))  # log-odds tripled
    choice = calibration.choose(y[:2000], overconfident[:2000], seed=1)
    assert choice.calibration.method == "sigmoid"  # the distortion is exactly a sigmoid on the log-odds
    assert choice.cv_log_loss["sigmoid"] < choice.cv_log_loss["none"]
    before = expected_calibration_error(y[2000:], overconfident[2000:])
    after = expected_calibration_error(y[2000:], choice.calibration.apply(overconfident[2000:]))
    assert after < 0.5 * before and after < 0.03


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_every_calibration_method_in_the_graph_matches_numpy(pipeline_runs: PipelineRuns, method: str) -> None:
    prepared = load_prepared(pipeline_runs.prepared.run_id)
    schema = prepared.schema
    pipeline = mlflow.sklearn.load_model(pipeline_runs.trained.model_uri)
    x_validation, y_validation = features_and_target(prepared.splits.validation, schema)
    fitted = calibration.fit(method, y_validation, pipeline.predict_proba(x_validation)[:, 1])
    session = inference_session(fitted.append_to_graph(to_onnx(pipeline, schema)))
    for frame in (prepared.splits.test[schema.features], perturbed_rows(prepared.splits.test, schema, 3)):
        expected = fitted.apply(pipeline.predict_proba(frame)[:, 1])
        actual = predict_default_probability(session, onnx_inputs(frame, schema))
        assert np.abs(expected - actual).max() <= 1e-4
    assert Calibration.from_dict(json.loads(json.dumps(fitted.to_dict()))) == fitted


def test_train_logs_calibration_ece_intervals_fairness_and_the_risk_config(pipeline_runs: PipelineRuns) -> None:
    run = mlflow.get_run(pipeline_runs.trained.run_id)
    metrics, params, tags = run.data.metrics, run.data.params, run.data.tags
    # reproducible from the run: the logged model, calibration and test split, and the seed it logged
    prepared = load_prepared(params["prepare_run_id"])
    x_test, y_test = features_and_target(prepared.splits.test, prepared.schema)
    raw = mlflow.sklearn.load_model(pipeline_runs.trained.model_uri).predict_proba(x_test)[:, 1]
    stored = Calibration.from_dict(mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/calibration/calibration.json"))
    seed = int(params["calibration_seed"])
    for prefix, probabilities in (("test_ece", stored.apply(raw)), ("test_ece_uncalibrated", raw)):
        interval = bootstrap_ece(y_test, probabilities, seed)
        assert (interval.estimate, interval.low, interval.high) == pytest.approx(
            (metrics[prefix], metrics[f"{prefix}_ci_low"], metrics[f"{prefix}_ci_high"]), abs=1e-9
        ), prefix
        assert interval.low < interval.high
    assert metrics["test_ece_noise_floor"] == pytest.approx(ece_noise_floor(stored.apply(raw), seed), abs=1e-9)
    assert {f"calibration_cv_log_loss_{m}" for m in ("none", "sigmoid", "isotonic")} <= metrics.keys()
    chosen = tags["calibration_method"]
    assert metrics[f"calibration_cv_log_loss_{chosen}"] == min(
        metrics[f"calibration_cv_log_loss_{m}"] for m in ("none", "sigmoid", "isotonic")
    )
    assert params["calibration"] == "auto" and params["calibration_seed"] == "42"
    assert params["score_base"] == "600.0" and params["fairness_slices"] == "Age:25/35/50/65,Marital"
    artifacts = {a.path for folder in ("plots", "fairness", "risk", "calibration")
                 for a in MlflowClient().list_artifacts(run.info.run_id, folder)}  # fmt: skip
    assert {
        "plots/reliability_diagram.png",
        "plots/fairness_slices.png",
        "fairness/fairness.json",
        "fairness/fairness.md",
        "risk/config.json",
        "calibration/calibration.json",
    } <= artifacts
    fairness = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/fairness/fairness.json")
    assert [s["column"] for s in fairness["slices"]] == ["Age", "Marital"]
    age_groups = {g["Age"] for g in fairness["slices"][0]["groups"]}
    assert age_groups <= {"<25", "25-35", "35-50", "50-65", "65+", "missing"} and len(age_groups) >= 4
    assert "fairness_Marital_approval_rate_gap" in metrics


def test_the_registered_graph_serves_calibrated_probabilities(pipeline_runs: PipelineRuns) -> None:
    """The convert step's graph = sklearn's probabilities through the train run's calibration (parity <= 1e-4)."""
    converted = mlflow.get_run(pipeline_runs.converted.run_id)
    assert converted.data.metrics["parity_max_abs_diff"] <= 1e-4
    trained = pipeline_runs.trained
    prepared = load_prepared(pipeline_runs.prepared.run_id)
    frame = prepared.splits.test[prepared.schema.features]
    expected = trained.calibration.apply(mlflow.sklearn.load_model(trained.model_uri).predict_proba(frame)[:, 1])
    graph = load_onnx_model(pipeline_runs.converted.model_uri)
    actual = predict_default_probability(inference_session(graph), onnx_inputs(frame, prepared.schema))
    assert np.abs(expected - actual).max() <= 1e-4
    outputs = {output.name for output in graph.graph.output}
    assert ("uncalibrated_probabilities" in outputs) == (trained.calibration.method != "none")


def test_a_forced_isotonic_calibration_is_served_by_the_converted_graph(pipeline_runs: PipelineRuns) -> None:
    settings = pipeline_runs.settings
    params = MLPParams(hidden_layers=(16,), max_epochs=15, patience=5)
    trained = train(pipeline_runs.prepared.run_id, params, 0, False, settings, "isotonic")
    assert trained.calibration.method == "isotonic"
    converted = convert(trained.run_id, settings=settings)
    graph = load_onnx_model(converted.model_uri)
    assert "uncalibrated_probabilities" in {output.name for output in graph.graph.output}
    prepared = load_prepared(pipeline_runs.prepared.run_id)
    frame = prepared.splits.test[prepared.schema.features]
    expected = trained.calibration.apply(mlflow.sklearn.load_model(trained.model_uri).predict_proba(frame)[:, 1])
    served = predict_default_probability(inference_session(graph), onnx_inputs(frame, prepared.schema))
    assert np.abs(expected - served).max() <= 1e-4
    # the threshold was chosen on float32 values, as the graph serves them: no plateau decides differently
    threshold = mlflow.get_run(trained.run_id).data.metrics["decision_threshold"]
    assert np.array_equal(decisions(expected, threshold), decisions(served, threshold))


def _probability_graph() -> onnx.ModelProto:
    """A graph whose `probabilities` are [1 - p, p] of its input p: the calibration nodes alone under test."""
    nodes = [
        helper.make_node("Sub", ["one", "p"], ["q"]),
        helper.make_node("Concat", ["q", "p"], ["probabilities"], axis=1),
        helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "p",
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, [None, 1])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
        [numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    "calibration",
    [
        Calibration("isotonic", x=(0.1, 0.5, 0.5000000001), y=(0.05, 0.4, 0.6)),  # knots one float32 value apart
        Calibration("isotonic", x=(0.3,), y=(0.2,)),  # a constant map
        Calibration("sigmoid", slope=0.7, intercept=-0.4),
    ],
)
def test_the_calibration_nodes_match_numpy_everywhere(calibration: Calibration) -> None:
    # float32 inputs, as the network hands its probabilities to the calibration nodes
    p = np.concatenate([[0.0, 1e-9, 0.1, 0.3, 0.5, 0.5000000001, 0.7, 1.0], np.linspace(0, 1, 501)]).astype(np.float32)
    session = inference_session(calibration.append_to_graph(_probability_graph()))
    served = predict_default_probability(session, {"p": p.reshape(-1, 1)})
    assert not np.isnan(served).any()
    assert np.abs(served - calibration.apply(p)).max() <= 1e-6


def test_int8_gives_the_same_top3_reasons_for_most_rows(pipeline_runs: PipelineRuns) -> None:
    metrics = mlflow.get_run(pipeline_runs.quantized.run_id).data.metrics
    # measured on this fixture's small model: see docs/credit_risk.md for the shipped model's share
    assert metrics["reason_top3_agreement"] >= 0.8, metrics["reason_top3_agreement"]
    assert metrics["reason_top3_order_agreement"] <= metrics["reason_top3_agreement"]
    assert abs(metrics["test_ece_int8"] - metrics["test_ece_fp32"]) < 0.05


def test_reason_impacts_are_the_change_in_log_odds_against_the_reference(pipeline_runs: PipelineRuns) -> None:
    prepared = load_prepared(pipeline_runs.prepared.run_id)
    schema = prepared.schema
    session = inference_session(load_onnx_model(pipeline_runs.converted.model_uri))
    spec = risk_options().reason_codes
    explainer = Explainer(session, schema, _spec(prepared.splits.train, schema, spec))
    rows = prepared.splits.test[schema.features].head(20).reset_index(drop=True)
    impacts = explainer.impacts(onnx_inputs(rows, schema))
    base = predict_default_probability(session, onnx_inputs(rows, schema))
    for position, feature in enumerate(schema.features[:4]):
        changed = rows.copy()
        changed[feature] = explainer.spec.reference[feature]
        moved = predict_default_probability(session, onnx_inputs(changed, schema))
        expected = np.log(base / (1 - base)) - np.log(moved / (1 - moved))
        np.testing.assert_allclose(impacts[:, position], expected, atol=1e-3)
    reasons = explainer.explain(onnx_inputs(rows, schema), 3)
    listable = [position for position, name in enumerate(schema.features) if name not in ("Age", "Marital")]
    for row, row_reasons in enumerate(reasons):
        assert len(row_reasons) <= 3
        assert [r.impact for r in row_reasons] == sorted((r.impact for r in row_reasons), reverse=True)
        assert all(r.impact > 0 for r in row_reasons)
        if row_reasons:
            assert row_reasons[0].impact == pytest.approx(float(impacts[row, listable].max()), abs=1e-6)
    records = [r for row in reasons for r in row if r.feature == "Records"]
    assert all(r.code == "DEL01" and r.text == "Prior arrears on record" for r in records)
    # age and marital status push risk too, but are never given as an adverse-action reason
    listed = {r.feature for row in reasons for r in row}
    assert not listed & {"Age", "Marital"}
    protected = [schema.features.index(name) for name in ("Age", "Marital")]
    assert (impacts[:, protected] > 0).any()


def _spec(train: pd.DataFrame, schema: FeatureSchema, codes: dict[str, ReasonCode]) -> ExplanationSpec:
    return ExplanationSpec(reference_values(train, schema), {k: v for k, v in codes.items() if k in schema.features})


def test_score_points_double_the_odds_every_pdo() -> None:
    scaling = ScoreScaling()
    p_at_base = 1 / 51  # good:bad odds 50:1
    p_double = 1 / 101  # 100:1
    assert scaling.points(np.array([p_at_base, p_double])).tolist() == [600.0, 620.0]
    custom = ScoreScaling(500, 20, 40, parse_bands("A:520,B:480,C"))
    points = custom.points(np.array([1 / 41, 1 / 21, 1 / 6]))
    assert points.tolist() == [540.0, 500.0, round(500 + 40 * math.log2(5 / 20))]
    assert custom.band_names(points) == ["A", "B", "C"]
    assert ScoreScaling.from_dict(json.loads(json.dumps(custom.to_dict()))) == custom


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"bands": "A:700,:650,C"}, "parameter score-bands: score band ':650'"),
        ({"bands": "A:600,B:650,C"}, "highest minimum score down"),
        ({"bands": "A:x,B"}, "'x' is not a number"),
        ({"pdo": 0}, "PDO > 0"),
        ({"slices": "Age:30/20"}, "parameter fairness-slices: .*edges must increase"),
        ({"reason_codes": Path("no/such.json")}, "reason codes file no/such.json does not exist"),
    ],
)
def test_bad_risk_options_name_the_parameter(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        risk_options(**arguments)  # type: ignore[arg-type]


def test_a_reason_codes_file_without_text_is_named(tmp_path: Path) -> None:
    path = tmp_path / "codes.json"
    path.write_text(json.dumps({"Age": {"code": "A1"}}))
    with pytest.raises(UserInputError, match=f"reason codes file {path}: feature 'Age' needs a string code and text"):
        read_reason_codes(path)


def test_fairness_gaps_compare_only_groups_large_enough() -> None:
    frame = pd.DataFrame({"Age": [20] * 40 + [40] * 40 + [70] * 5, "Region": ["n"] * 85})
    y = np.array([0, 1] * 20 + [0] * 40 + [1] * 5)
    p = np.array([0.1] * 40 + [0.6] * 40 + [0.9] * 5)
    report = fairness_report(frame, y, p, 0.5, parse_slices("Age:30/60,Marital"), min_rows=30)
    assert report.skipped == {"Marital": "column 'Marital' is not in the data"}
    (age,) = report.slices
    assert age.table.loc["<30", "approval_rate"] == 1.0 and age.table.loc["30-60", "approval_rate"] == 0.0
    assert age.gaps["approval_rate"] == 1.0  # the 5-row 60+ group is shown but not compared
    assert age.extremes["approval_rate"] == ("30-60", "<30")
    assert age.table.loc["60+", "rows"] == 5


def test_fairness_with_nobody_approved_has_no_default_rate_among_the_approved() -> None:
    frame = pd.DataFrame({"Marital": ["single", "married"] * 40})
    y = np.array([0, 1] * 40)
    report = fairness_report(frame, y, np.full(80, 0.6), 0.5, parse_slices("Marital"))
    table = report.slices[0].table
    assert (table["approval_rate"] == 0).all() and table["default_rate_approved"].isna().all()


def test_a_second_data_set_with_another_target_goes_through(
    mlflow_server: str, tmp_path: Path, redis_server: RedisProcess
) -> None:
    """Bring your own data: another target and columns, no Age or Marital (slices skipped and said so), no reason
    texts for its features (generic ones), and a model card for each version."""
    generator = np.random.default_rng(5)
    rows = 1500
    limit = generator.normal(50_000, 15_000, rows).clip(5_000)
    utilisation = generator.uniform(0, 1.2, rows)
    education = generator.choice(["graduate", "university", "high school"], rows)
    late = generator.poisson(0.5, rows)
    risk = -3.0 + 3.5 * utilisation + 1.2 * late - limit / 40_000 + (education == "high school") * 1.0
    frame = pd.DataFrame(
        {
            "LIMIT_BAL": limit.round(),
            "UTILISATION": utilisation,
            "EDUCATION": education,
            "LATE_PAYMENTS": late,
            "default": (generator.random(rows) < 1 / (1 + np.exp(-risk))).astype(int),
        }
    )
    path = tmp_path / "cards.csv"
    frame.to_csv(path, index=False)
    name = f"byo-{uuid.uuid4().hex[:8]}"
    settings = PipelineSettings(tracking_uri=mlflow_server, experiment_name=f"{name}-runs", model_name=name)
    result = main(
        path,
        target="default",
        positive_label="1",
        params=MLPParams(hidden_layers=(16,), max_epochs=30, patience=5),
        cv_folds=0,
        batch_sizes=[1],
        benchmark_repeats=20,
        settings=settings,
        risk=risk_options(
            base_score=500, base_odds=20, pdo=40, bands="low:520,medium:480,high", slices="EDUCATION,Age:30"
        ),
    )
    client = MlflowClient(mlflow_server)
    train_run = client.get_run(_child(client, result.run_id, "train"))
    assert train_run.data.tags["fairness_skipped_Age"] == "column 'Age' is not in the data"
    fairness = mlflow.artifacts.load_dict(f"runs:/{train_run.info.run_id}/fairness/fairness.json")
    assert [s["column"] for s in fairness["slices"]] == ["EDUCATION"] and list(fairness["skipped"]) == ["Age"]
    registry_settings = RegistrySettings(tracking_uri=mlflow_server, model_name=name, cache_dir=tmp_path / "models")
    model = resolve(result.versions["fp32"], registry_settings)
    assert model.score_scaling.base_score == 500 and [b.name for b in model.score_scaling.bands] == [
        "low",
        "medium",
        "high",
    ]
    assert model.explanation is not None and model.explanation.code("UTILISATION").code == "UTILISATION"
    for version in result.versions.values():
        details = client.get_model_version(name, version)
        assert card_location(details.tags), details.tags
    # the gateway serves its score scale and bands, and explains with generic texts
    app = create_app(
        ServingSettings(
            tracking_uri=mlflow_server, model_name=name, redis_url=redis_server.url, reload_interval_s=0,
            model_cache_dir=str(tmp_path / "gateway-models"),
        )
    )  # fmt: skip
    start_serving(app)
    try:
        rows = [
            {"features": {k: v for k, v in row.items() if k != "default"}} for row in frame.head(20).to_dict("records")
        ]
        answer = app.test_client().post("/predict", json={"batch": rows, "explain": True})
        assert answer.status_code == 200, answer.json
        body = answer.json
        assert body["scores"] == model.score_scaling.points(np.array(body["predictions"])).astype(int).tolist()
        assert body["bands"] == model.score_scaling.band_names(np.array(body["scores"]))
        assert set(body["bands"]) <= {"low", "medium", "high"}
        texts = {reason["text"] for row in body["reasons"] for reason in row}
        assert texts and all(text.endswith("increased the estimated risk") for text in texts)
    finally:
        gateway_of(app).store.stop_polling()
        gateway_of(app).predictions.log.close()


def _child(client: MlflowClient, parent_run_id: str, step: str) -> str:
    parent = client.get_run(parent_run_id)
    (child,) = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_run_id}' and tags.step = '{step}'"
    )
    return child.info.run_id
