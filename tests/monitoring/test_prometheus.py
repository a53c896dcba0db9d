"""Prometheus configuration and alert rules with promtool, the Pushgateway receiving a real drift job's gauges, and
every Grafana panel's PromQL evaluated by a real Prometheus scraping a real gateway under load."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import requests

from monitoring.job import run_drift
from monitoring.settings import MonitoringSettings
from monitoring.window import WindowSpec
from scripts.local_monitoring import prometheus_command, pushgateway_command, start_process, write_config
from scripts.tracking_server import free_port, stop_group
from tests.monitoring.conftest import GatewayProcess, require_binary, send, wait_for_stream_rows

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "monitoring" / "prometheus"
DASHBOARD = REPO / "monitoring" / "grafana" / "dashboards" / "credit-api-overview.json"
ALERTS = {
    "CreditApiHigh5xxRatio", "CreditApiP99LatencyOverBudget", "CreditApiCacheErrors", "CreditApiModelReloadFailed",
    "CreditApiPredictionLogDropping", "CreditApiNoTrafficToStaging", "CreditDriftPsiOverThreshold",
    "CreditDriftShareOverThreshold", "CreditDriftReportMissing", "ScrapeTargetDown",
}  # fmt: skip


def promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    command = [require_binary("promtool"), *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)


def test_promtool_accepts_the_config_and_the_rules() -> None:
    config = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert config.returncode == 0, config.stdout + config.stderr
    rules = promtool("check", "rules", str(PROMETHEUS_DIR / "alerts.yml"))
    assert rules.returncode == 0 and "SUCCESS: 10 rules found" in rules.stdout, rules.stdout + rules.stderr


def test_promtool_unit_tests_show_every_alert_firing_and_quiet() -> None:
    result = promtool("test", "rules", str(PROMETHEUS_DIR / "tests" / "alerts_test.yml"))
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
    tests = (PROMETHEUS_DIR / "tests" / "alerts_test.yml").read_text()
    for alert in ALERTS:  # each alert has a case where it fires and one where it stays quiet
        cases = re.findall(rf"alertname: {alert}\b.*?\n\s+exp_alerts:(.*?)\n", tests, flags=re.S)
        assert any(case.strip() == "[]" for case in cases), f"{alert}: no quiet case"
        assert any(case.strip() == "" for case in cases), f"{alert}: no firing case"


@dataclass(frozen=True)
class Monitoring:
    prometheus: str
    pushgateway: str


@pytest.fixture(scope="module")
def monitoring(
    gateway_process: GatewayProcess, mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Monitoring]:
    """A real Pushgateway and Prometheus (1 s scrapes, the repository's rules) scraping the test gateway and MLflow."""
    require_binary("prometheus")
    require_binary("prometheus-pushgateway")
    state = tmp_path_factory.mktemp("prometheus")
    push_port, prometheus_port = free_port(), free_port()
    pushgateway = f"http://127.0.0.1:{push_port}"
    targets = {
        "credit-scoring-api": [gateway_process.url.removeprefix("http://")],
        "pushgateway": [f"127.0.0.1:{push_port}"],
        "mlflow": [mlflow_server.removeprefix("http://")],
        "prometheus": [f"127.0.0.1:{prometheus_port}"],
    }
    config = write_config(state / "prometheus.yml", targets, scrape_interval="1s")
    processes = [start_process(pushgateway_command(state, push_port), state / "push.log", f"{pushgateway}/-/ready")]
    try:
        processes.append(
            start_process(
                prometheus_command(state, config, prometheus_port),
                state / "prometheus.log",
                f"http://127.0.0.1:{prometheus_port}/-/ready",
            )
        )
        yield Monitoring(f"http://127.0.0.1:{prometheus_port}", pushgateway)
    finally:
        for process in reversed(processes):
            stop_group(process.pid, timeout=10, process=process)


def query(prometheus: str, expr: str) -> list[dict[str, object]]:
    answer = requests.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return answer["data"]["result"]


METRIC_NAME = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")
GROUPING = re.compile(r"\bby \(([^)]*)\)")


def series_of(prometheus: str, metric: str) -> list[dict[str, str]]:
    answer = requests.get(f"{prometheus}/api/v1/series", params={"match[]": metric}, timeout=10).json()
    assert answer["status"] == "success", f"{metric}: {answer}"
    return answer["data"]


def substituted(expr: str, model: str) -> str:
    """Grafana's variables as Grafana would fill them for 'All' endpoints and this model, 1 s scrapes."""
    replacements = {"$__rate_interval": "15s", "$__range": "2m", "$__interval": "5s", "$endpoint": ".*"}
    for variable, value in replacements.items():
        expr = expr.replace(variable, value)
    return expr.replace("$model", model)  # a single value: Grafana inserts it as it is


@pytest.mark.integration
def test_a_drift_job_pushes_and_every_dashboard_panel_returns_data(
    monitoring: Monitoring, gateway_process: GatewayProcess, credit_frame: pd.DataFrame, tmp_path: Path
) -> None:
    applicants = credit_frame.drop(columns=["Status"]).sample(n=600, random_state=3).reset_index(drop=True)
    redis_client = gateway_process.redis()
    redis_client.delete("credit-scoring:predictions")
    # A short load over every kind of request the panels show: production, cached (twice: hits), A/B with B, a 422.
    sent = send(gateway_process.url, applicants.iloc[:400])
    send(gateway_process.url, applicants.iloc[400:500], "predict_cached", batch=20)
    send(gateway_process.url, applicants.iloc[400:500], "predict_cached", batch=20)
    sent += send(gateway_process.url, applicants.iloc[500:], "predict_ab", batch=20, variant="B")
    bad = requests.post(f"{gateway_process.url}/predict", json={"batch": [{"values": [1]}]}, timeout=10)
    assert bad.status_code == 422
    wait_for_stream_rows(redis_client, sent + 200)  # the cached calls are logged too

    settings = MonitoringSettings(
        tracking_uri=gateway_process.tracking_uri,
        model_name=gateway_process.model_name,
        redis_url=gateway_process.redis_url,
        experiment_name=f"monitoring-{tmp_path.name}",
        model_cache_dir=tmp_path / "models",
        pushgateway_url=monitoring.pushgateway,
        min_rows=50,
    )
    outcomes = run_drift(settings, WindowSpec())
    assert [outcome.version for outcome in outcomes if outcome.reported] == ["1", "2"]
    pushed = requests.get(f"{monitoring.pushgateway}/metrics", timeout=10).text
    labels = f'feature="Income",instance="",job="credit_drift",model="{gateway_process.model_name}",version="1"'
    assert f"credit_drift_psi{{{labels}}} " in pushed, pushed[-2000:]

    for _ in range(3):  # a few more seconds of traffic, so rates over the last 15 s have samples on both sides
        send(gateway_process.url, applicants.iloc[:100])
        send(gateway_process.url, applicants.iloc[400:420], "predict_cached", batch=20)
        time.sleep(2)
    deadline = time.monotonic() + 30
    while not query(monitoring.prometheus, f'credit_drift_psi{{model="{gateway_process.model_name}"}}'):
        assert time.monotonic() < deadline, "Prometheus did not scrape the Pushgateway"
        time.sleep(0.5)

    # Scraped every second with a one-second timeout: one slow answer on a busy machine marks a target down until
    # the next scrape, so its health is read until all are up (or the deadline).
    expected = {"credit-scoring-api": "up", "pushgateway": "up", "mlflow": "up", "prometheus": "up"}
    deadline = time.monotonic() + 20
    while True:
        targets = requests.get(f"{monitoring.prometheus}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        health = {target["labels"]["job"]: target["health"] for target in targets}
        if health == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert health == expected, targets
    rules = requests.get(f"{monitoring.prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
    assert {rule["name"] for group in rules for rule in group["rules"]} == ALERTS

    dashboard = json.loads(DASHBOARD.read_text())
    evaluated = 0
    for panel in dashboard["panels"]:
        if panel["datasource"]["type"] != "prometheus":
            continue  # the Loki panel: no Loki here (docs/monitoring.md)
        for target in panel["targets"]:
            expr = substituted(target["expr"], gateway_process.model_name)
            result = query(monitoring.prometheus, expr)
            assert result, f"panel {panel['title']!r}: no data for {expr}"
            # "Returns data" alone would pass a misspelt metric behind `or vector(0)`, or a misspelt label that
            # collapses `by (...)` into one unlabelled series: each metric must exist, each grouping label be set.
            for metric in set(METRIC_NAME.findall(expr)):
                assert series_of(monitoring.prometheus, metric), f"panel {panel['title']!r}: no series {metric}"
            grouped = {label for group in GROUPING.findall(expr) for label in re.split(r"\s*,\s*", group)}
            for label in grouped - {"", "le"}:  # histogram_quantile consumes `le`
                assert all(series["metric"].get(label) for series in result), f"{panel['title']!r}: {label} unset"
            evaluated += 1
    assert evaluated >= 16
    for variable in dashboard["templating"]["list"]:  # label_values(metric, label) is Grafana's; this is its query
        metric, label = re.fullmatch(r"label_values\((.*), (\w+)\)", variable["query"]["query"]).groups()  # type: ignore[union-attr]
        values = requests.get(
            f"{monitoring.prometheus}/api/v1/label/{label}/values", params={"match[]": metric}, timeout=10
        ).json()["data"]
        assert values, variable["name"]
