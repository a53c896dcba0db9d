"""Loki and Grafana Alloy configurations, checked statically (neither runs here): the Alloy file parses, its
components are wired to one another, and the labels and fields it extracts are the ones the gateway writes."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from tests.monitoring.alloy_syntax import AlloySyntaxError, Block, Call, parse, references
from tests.monitoring.conftest import GatewayProcess, send

REPO = Path(__file__).resolve().parents[2]
ALLOY = REPO / "monitoring" / "alloy" / "config.alloy"
LOKI = REPO / "monitoring" / "loki" / "loki-config.yaml"
DASHBOARD = REPO / "monitoring" / "grafana" / "dashboards" / "credit-api-overview.json"
# Alloy components used here: required arguments and what each exports (from Alloy's component reference).
COMPONENTS = {
    "local.file_match": ({"path_targets"}, {"targets"}),
    "loki.source.file": ({"targets", "forward_to"}, set()),
    "discovery.docker": ({"host"}, {"targets"}),
    "discovery.relabel": ({"targets"}, {"output", "rules"}),
    "loki.source.docker": ({"host", "targets", "forward_to"}, set()),
    "loki.process": ({"forward_to"}, {"receiver"}),
    "loki.write": (set(), {"receiver"}),
}
STAGES = {"stage.json", "stage.timestamp", "stage.labels", "stage.structured_metadata"}
FUNCTIONS = {("sys", "env"), ("coalesce",)}
ACCESS_FIELDS = {"request_id", "endpoint", "status", "latency_ms", "variant", "version"}  # serving/telemetry.py


@pytest.fixture(scope="module")
def blocks() -> dict[str, Block]:
    return {f"{block.name}.{block.label}": block for block in parse(ALLOY.read_text())}


def test_the_parser_refuses_broken_syntax() -> None:
    text = ALLOY.read_text()
    with pytest.raises(AlloySyntaxError, match="line"):
        parse(text.replace("forward_to = [loki.write.default.receiver]", "forward_to = [loki.write.default.receiver"))
    with pytest.raises(AlloySyntaxError):
        parse(text + "\nloki.write {")


def test_components_are_known_complete_and_wired(blocks: dict[str, Block]) -> None:
    for key, block in blocks.items():
        assert block.name in COMPONENTS, f"unknown component {block.name}"
        required, _ = COMPONENTS[block.name]
        assert required <= set(block.attributes), f"{key} lacks {required - set(block.attributes)}"
        for path in (path for value in block.attributes.values() for path in references(value)):
            target, export = ".".join(path[:-1]), path[-1]
            assert target in blocks, f"{key} refers to undefined {target}"
            assert export in COMPONENTS[blocks[target].name][1], f"{key}: {blocks[target].name} exports no {export}"
    for value in (v for block in blocks.values() for v in block.attributes.values()):
        for call in _calls(value):
            assert tuple(call.function) in FUNCTIONS, f"unknown function {'.'.join(call.function)}"
    # Both sources end in the one processing pipeline, and it in Loki.
    for source in ("loki.source.file.gateway_log", "loki.source.docker.gateway_container"):
        assert references(blocks[source].attributes["forward_to"]) == [["loki", "process", "gateway", "receiver"]]
    assert references(blocks["loki.process.gateway"].attributes["forward_to"]) == [
        ["loki", "write", "default", "receiver"]
    ]
    (endpoint,) = blocks["loki.write.default"].blocks
    assert endpoint.name == "endpoint" and "url" in endpoint.attributes


def _calls(value: object) -> list[Call]:
    if isinstance(value, Call):
        return [value, *(c for argument in value.arguments for c in _calls(argument))]
    if isinstance(value, list):
        return [c for item in value for c in _calls(item)]
    if isinstance(value, dict):
        return [c for item in value.values() for c in _calls(item)]
    left, right = getattr(value, "left", None), getattr(value, "right", None)
    return _calls(left) + _calls(right) if left is not None or right is not None else []


def pipeline(blocks: dict[str, Block]) -> dict[str, dict[str, object]]:
    stages = {stage.name: stage.attributes for stage in blocks["loki.process.gateway"].blocks}
    assert set(stages) == STAGES
    return stages


def test_labels_and_fields_are_the_ones_the_docs_promise(blocks: dict[str, Block]) -> None:
    (target,) = blocks["local.file_match.gateway_log"].attributes["path_targets"]
    assert target["container"] == "credit-scoring-api"
    rules = blocks["discovery.relabel.gateway_container"].blocks
    assert any(rule.attributes.get("target_label") == "container" for rule in rules)
    assert any(
        rule.attributes.get("regex") == "/credit-scoring-api" and rule.attributes["action"] == "keep" for rule in rules
    )
    stages = pipeline(blocks)
    extracted = stages["stage.json"]["expressions"]
    assert ACCESS_FIELDS <= set(extracted)  # type: ignore[arg-type]
    labels, metadata = set(stages["stage.labels"]["values"]), set(stages["stage.structured_metadata"]["values"])  # type: ignore[arg-type]
    assert labels | metadata <= set(extracted)  # type: ignore[arg-type]
    assert "request_id" in metadata and "request_id" not in labels  # one value per request: never a label
    assert stages["stage.timestamp"] == {"source": "ts", "format": "RFC3339"}
    # The dashboard's Loki panel selects on labels Alloy sets.
    panels = json.loads(DASHBOARD.read_text())["panels"]
    (logs,) = [panel for panel in panels if panel["datasource"]["type"] == "loki"]
    selector = re.match(r"\{(.*?)\}", logs["targets"][0]["expr"]).group(1)  # type: ignore[union-attr]
    assert {pair.split("=")[0].strip() for pair in selector.split(",")} <= labels | {"container", "service"}


def test_the_loki_config_has_what_structured_metadata_needs() -> None:
    config = yaml.safe_load(LOKI.read_text())
    assert {"server", "common", "schema_config", "limits_config"} <= set(config)
    (schema,) = config["schema_config"]["configs"]
    assert (schema["store"], schema["schema"]) == ("tsdb", "v13") and config["limits_config"][
        "allow_structured_metadata"
    ]
    port = config["server"]["http_listen_port"]
    datasources = yaml.safe_load((REPO / "monitoring/grafana/provisioning/datasources/datasources.yml").read_text())
    (loki,) = [source for source in datasources["datasources"] if source["type"] == "loki"]
    assert loki["url"].endswith(f":{port}") and f":{port}" in ALLOY.read_text()


@pytest.mark.integration
def test_the_fields_alloy_extracts_are_in_the_gateways_real_log_lines(
    blocks: dict[str, Block], gateway_process: GatewayProcess, credit_frame
) -> None:
    send(gateway_process.url, credit_frame.drop(columns=["Status"]).head(20), batch=5)
    send(gateway_process.url, credit_frame.drop(columns=["Status"]).head(5), "predict_ab", batch=5, variant="B")
    stages = pipeline(blocks)
    expressions: dict[str, str] = stages["stage.json"]["expressions"]  # type: ignore[assignment]
    label_sets = set()
    predictions = 0
    for line in gateway_process.log_path.read_text().splitlines():
        if not line.startswith("{"):
            continue  # gunicorn's own lines: Alloy passes them through unparsed
        entry = json.loads(line)
        datetime.fromisoformat(entry["ts"])  # what stage.timestamp parses as RFC3339
        if entry.get("message") != "request" or entry.get("endpoint") not in ("predict", "predict_ab"):
            continue
        predictions += 1
        extracted = {name: entry[field] for name, field in expressions.items() if field in entry}
        assert ACCESS_FIELDS <= set(extracted), f"the gateway wrote no {ACCESS_FIELDS - set(extracted)}: {line}"
        label_sets.add(tuple(str(extracted.get(label)) for label in stages["stage.labels"]["values"]))  # type: ignore[union-attr]
    assert predictions >= 5
    assert 1 < len(label_sets) <= 20  # variants and versions vary, but the label values stay few
