"""The Grafana provisioning and the "Credit API Overview" dashboard, checked structurally with the models of
grafana-foundation-sdk (Grafana itself does not run here; test_prometheus.py evaluates the panels' PromQL)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models import loki, prometheus

from serving import metrics

GRAFANA = Path(__file__).resolve().parents[2] / "monitoring" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "credit-api-overview.json"
# What the issue asks the dashboard to show, as the metric each needs.
REQUIRED_METRICS = {
    "request rate and latency per endpoint": "flask_http_request_duration_seconds",
    "error ratio": "flask_http_request_total",
    "A/B split": "gateway_predictions_total",
    "per-variant probability distribution": "gateway_probability_of_default_bucket",
    "cache hit ratio": "gateway_cache_rows_total",
    "loaded model versions": "gateway_model_info",
    "reloads": "gateway_model_reloads_total",
    "prediction-log drops": "gateway_prediction_log_dropped_rows_total",
    "PSI per feature": "credit_drift_psi",
    "drift share": "credit_drift_share",
}


@pytest.fixture(scope="module")
def raw() -> dict[str, object]:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def dashboard(raw: dict[str, object]) -> models.Dashboard:
    register_default_plugins()  # typed panel options and data queries instead of plain dicts
    return models.Dashboard.from_json(raw)


def test_the_dashboard_decodes_into_typed_grafana_models(dashboard: models.Dashboard, raw: dict) -> None:
    assert dashboard.title == "Credit API Overview" and dashboard.uid == "credit-api-overview"
    panels = dashboard.panels or []
    assert len(panels) == len(raw["panels"]) >= 12
    for panel in panels:
        assert isinstance(panel, models.Panel) and panel.title and panel.grid_pos is not None
        assert not isinstance(panel.options, dict), f"{panel.title}: options of an unknown panel type {panel.type_val}"
        expected = loki.Dataquery if panel.datasource and panel.datasource.type_val == "loki" else prometheus.Dataquery
        assert panel.targets and all(isinstance(target, expected) for target in panel.targets), panel.title
        assert all(target.expr for target in panel.targets), panel.title
    # What the SDK writes back is what the file says (nothing was dropped as unknown).
    again = json.loads(json.dumps(dashboard, cls=JSONEncoder))
    assert [panel["title"] for panel in again["panels"]] == [panel["title"] for panel in raw["panels"]]
    assert [t["expr"] for p in again["panels"] for t in p["targets"]] == [
        t["expr"] for p in raw["panels"] for t in p["targets"]
    ]


def test_panels_fit_the_grid_and_have_unique_ids(raw: dict) -> None:
    ids = [panel["id"] for panel in raw["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in raw["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        covered = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered


def test_datasources_variables_and_metrics_match(raw: dict) -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "datasources.yml").read_text())
    uids = {source["uid"]: source["type"] for source in provisioned["datasources"]}
    assert uids == {"prometheus": "prometheus", "loki": "loki"}
    variables = {variable["name"] for variable in raw["templating"]["list"]}
    exprs = []
    for panel in raw["panels"]:
        assert uids[panel["datasource"]["uid"]] == panel["datasource"]["type"], panel["title"]
        for target in panel["targets"]:
            exprs.append(target["expr"])
            used = set(re.findall(r"\$(\w+)", target["expr"])) - {"__rate_interval", "__range", "__interval"}
            assert used <= variables, f"{panel['title']}: undefined variable(s) {used - variables}"
    text = "\n".join(exprs)
    for what, metric in REQUIRED_METRICS.items():
        assert metric in text, f"no panel shows {what} ({metric})"
    assert '{container="credit-scoring-api"' in text  # the Loki label Alloy sets (test_logs_config.py)


def test_the_gateway_metric_names_are_the_ones_serving_exports() -> None:
    source = Path(metrics.__file__).read_text()
    for metric in REQUIRED_METRICS.values():
        if not metric.startswith("credit_drift"):
            name = metric.removesuffix("_bucket")
            assert f'"{name}"' in source, f"serving/metrics.py exports no {name}"


def test_the_dashboards_provider_points_at_a_folder() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"].startswith("/var/lib/grafana/dashboards")
