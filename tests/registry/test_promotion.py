"""Gated promotion, audit trail, rollback and resolve, on SQLite- and PostgreSQL-backed tracking servers."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from registry import audit
from registry.errors import GateRefusedError, RegistryError
from registry.promotion import promote, rollback
from registry.resolve import resolve
from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS, VersionSpec, register_versions


def production(settings: RegistrySettings) -> str:
    return MlflowClient(settings.tracking_uri).get_model_version_by_alias(settings.model_name, PRODUCTION_ALIAS).version


def audit_records(settings: RegistrySettings) -> list[audit.AuditRecord]:
    return audit.history(MlflowClient(settings.tracking_uri), settings)


def test_main_deployed_its_first_candidate_through_the_gate(registry_models) -> None:
    settings = RegistrySettings(tracking_uri=registry_models.url, model_name=registry_models.model_name)
    client = MlflowClient(registry_models.url)
    first = [r for r in audit.history(client, settings) if r.from_version is None and r.outcome == "moved"][-1]
    assert (first.action, first.to_version, first.gate_verdict) == ("promote", "1", "passed")
    assert first.actor == f"main run {registry_models.main_run_id}"
    assert client.get_model_version(registry_models.model_name, "1").tags["gate_verdict"] == "passed"


def test_a_passing_gate_moves_production_retires_staging_and_records_the_move(registry) -> None:
    client = MlflowClient(registry.tracking_uri)
    client.set_registered_model_alias(registry.model_name, STAGING_ALIAS, "7")
    result = promote(actor="tester@ci", reason="better model", settings=registry)
    assert (result.action, result.from_version, result.to_version) == ("promote", "1", "7")
    assert result.report.passed
    names = {check.name for check in result.report.checks}
    assert names == {"auc_floor", "auc_vs_incumbent", "parity", "latency", "schema"}
    assert production(registry) == "7"
    assert STAGING_ALIAS not in client.get_registered_model(registry.model_name).aliases
    promoted = client.get_model_version(registry.model_name, "7")
    assert promoted.tags["previous_production_version"] == "1"
    assert promoted.tags["promoted_by"] == "tester@ci"
    assert "archived_at" in client.get_model_version(registry.model_name, "1").tags
    (record,) = [r for r in audit_records(registry) if r.run_id == result.audit_run_id]
    assert (record.action, record.from_version, record.to_version, record.outcome) == ("promote", "1", "7", "moved")
    assert record.reason == "better model" and record.actor == "tester@ci"
    artifacts = {a.path for a in client.list_artifacts(result.audit_run_id, "gate")}
    assert artifacts == {"gate/report.json", "gate/report.md"}
    markdown = client.download_artifacts(result.audit_run_id, "gate/report.md")
    assert "| auc_vs_incumbent | pass |" in open(markdown).read()


@pytest.mark.parametrize(
    ("role", "overrides", "failed_check"),
    [
        ("weak_fp32", {}, "auc_vs_incumbent"),
        ("copy_of_production", {"auc_floor": 0.999}, "auc_floor"),
        ("bad_parity", {}, "parity"),
        ("bad_agreement", {}, "int8_agreement"),
        ("copy_of_production", {"latency_budget_ms": 1e-6}, "latency"),
        ("other_schema", {}, "schema"),
    ],
)
def test_each_failing_check_refuses_the_promotion_and_moves_nothing(
    registry, registry_models, role, overrides, failed_check
) -> None:
    settings = registry.model_copy(update=overrides)
    version = registry_models.versions[role]
    before = len(audit_records(settings))
    with pytest.raises(GateRefusedError, match=f"gate refused version {version}: .*{failed_check}") as refused:
        promote(version, settings=settings)
    assert failed_check in {check.name for check in refused.value.report.failed_checks}
    assert production(settings) == "1"
    records = audit_records(settings)
    assert len(records) == before + 1 and records[0].outcome == "refused" and records[0].to_version == version


def test_schema_mismatch_names_the_difference(registry, registry_models) -> None:
    with pytest.raises(GateRefusedError) as refused:
        promote(registry_models.versions["other_schema"], settings=registry)
    (schema,) = [c for c in refused.value.report.checks if c.name == "schema"]
    assert schema.detail == "-Price"


def test_a_forced_promotion_needs_a_reason_and_is_recorded_as_forced(registry, registry_models) -> None:
    other = registry_models.versions["other_schema"]
    with pytest.raises(RegistryError, match="needs a reason"):
        promote(other, force=True, settings=registry)
    result = promote(other, force=True, reason="new schema agreed with the risk team", settings=registry)
    assert production(registry) == other
    assert result.report.verdict == "forced"
    record = audit_records(registry)[0]
    assert record.forced and record.gate_verdict == "forced" and record.reason.startswith("new schema")


def test_promoting_the_production_version_is_a_no_op_that_says_so(registry) -> None:
    before = len(audit_records(registry))
    result = promote("1", settings=registry)
    assert result.action == "no-op" and "already in production" in result.message
    assert len(audit_records(registry)) == before


def test_rollback_returns_to_the_replaced_version_and_is_audited(registry, registry_models) -> None:
    promote(registry_models.versions["copy_of_production"], settings=registry)
    assert production(registry) == "7"
    result = rollback(reason="complaints from underwriting", settings=registry)
    assert (result.from_version, result.to_version) == ("7", "1")
    assert production(registry) == "1"
    record = audit_records(registry)[0]
    assert (record.action, record.from_version, record.to_version, record.outcome) == ("rollback", "7", "1", "moved")
    assert record.reason == "complaints from underwriting"


def test_history_lists_moves_newest_first(registry, registry_models) -> None:
    promote(registry_models.versions["copy_of_production"], settings=registry)
    rollback(settings=registry)
    records = audit_records(registry)
    assert [r.action for r in records[:2]] == ["rollback", "promote"]
    assert records[0].at >= records[1].at


def test_first_deployment_checks_only_the_absolute_floors(registry, registry_models) -> None:
    client = MlflowClient(registry.tracking_uri)
    source = client.get_model_version(registry.model_name, "1")
    fresh = replace_name(registry, f"{registry.model_name}-fresh")
    register_versions(fresh.model_name, [VersionSpec(source.source, dict(source.tags))], STAGING_ALIAS)
    result = promote(settings=fresh)
    assert result.from_version is None and result.report.incumbent_version is None
    assert {c.name for c in result.report.checks} == {"auc_floor", "parity", "latency"}
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(settings=fresh)


def test_mirroring_moves_the_legacy_stages_too(registry, registry_models) -> None:
    mirrored = registry.model_copy(update={"mirror_stages": True})
    promote(registry_models.versions["copy_of_production"], settings=mirrored)
    rollback(settings=mirrored)
    client = MlflowClient(registry.tracking_uri)
    assert client.get_model_version(registry.model_name, "1").current_stage == "Production"
    assert client.get_model_version(registry.model_name, "7").current_stage == "Archived"


def test_resolve_downloads_once_and_reads_the_feature_schema(registry) -> None:
    resolved = resolve(PRODUCTION_ALIAS, registry)
    assert resolved.version == "1" and resolved.precision == "fp32"
    assert resolved.onnx_path.is_file() and resolved.onnx_path.is_relative_to(registry.cache_dir)
    assert resolved.feature_schema.categorical == ["Home", "Marital", "Records", "Job"]
    assert resolved.input_signature[0] == ("Seniority", "FLOAT")
    assert 0 < resolved.decision_threshold < 1
    stamp = resolved.onnx_path.stat().st_mtime_ns
    assert resolve("1", registry).onnx_path.stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("target", "settings_update", "message"),
    [
        ("999", {}, "has no version 999"),
        ("champion", {}, "has no alias 'champion'"),
        ("production", {"model_name": "no-such-model"}, "registered model 'no-such-model' not found"),
    ],
)
def test_unknown_model_version_or_alias_is_a_clear_error(registry, target, settings_update, message) -> None:
    with pytest.raises(RegistryError, match=message):
        resolve(target, registry.model_copy(update=settings_update))


def test_a_poller_never_sees_production_missing_during_repeated_promotions(registry, registry_models) -> None:
    client = MlflowClient(registry.tracking_uri)
    seen: list[str | None] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def poll() -> None:
        reader = MlflowClient(registry.tracking_uri)
        while not stop.is_set():
            try:
                seen.append(reader.get_model_version_by_alias(registry.model_name, PRODUCTION_ALIAS).version)
            except Exception as error:  # noqa: BLE001 - any failure to read production is what we look for
                errors.append(error)
            time.sleep(0.003)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        for round_number in range(6):
            target = registry_models.versions["copy_of_production"] if round_number % 2 == 0 else "1"
            promote(target, force=True, reason=f"concurrency round {round_number}", settings=registry)
    finally:
        stop.set()
        poller.join(timeout=10)
    assert not errors, errors[:3]
    assert len(seen) > 20
    assert set(seen) <= {"1", registry_models.versions["copy_of_production"]}
    assert client.get_model_version_by_alias(registry.model_name, PRODUCTION_ALIAS).version == "1"


def replace_name(settings: RegistrySettings, name: str) -> RegistrySettings:
    return settings.model_copy(update={"model_name": name})


def registry_cli(settings: RegistrySettings, *arguments: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "registry", "--tracking-uri", settings.tracking_uri]
    command += ["--model", settings.model_name]
    env = {**os.environ, "REGISTRY_CACHE_DIR": str(settings.cache_dir)}
    return subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=120, env=env)


def test_cli_status_and_history_show_versions_aliases_and_moves(registry, registry_models) -> None:
    promote(registry_models.versions["copy_of_production"], reason="cli check", settings=registry)
    status = registry_cli(registry, "status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[1].split()[:4] == ["version", "aliases", "precision", "test"]
    row = next(line for line in lines if line.split()[0] == "7")
    assert row.split()[1] == "production" and row.split()[2] == "fp32"
    history = registry_cli(registry, "history", "--limit", "3")
    assert history.returncode == 0, history.stderr
    assert "promote" in history.stdout.splitlines()[1] and "cli check" in history.stdout


def test_cli_refused_gate_prints_the_report_and_exits_3(registry, registry_models) -> None:
    refused = registry_cli(registry, "promote", "--version", registry_models.versions["weak_fp32"])
    assert refused.returncode == 3
    assert "| auc_vs_incumbent | FAIL |" in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("error: gate refused version")
    assert "Traceback" not in refused.stderr


def test_cli_unknown_model_is_one_line(registry) -> None:
    result = registry_cli(registry.model_copy(update={"model_name": "nope"}), "rollback")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: registered model 'nope' not found"
