"""Staging, gated promotion, audit trail, rollback and resolve, on SQLite- and PostgreSQL-backed tracking servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from registry import audit
from registry.errors import RegistryError
from registry.gate import GateRefusedError, GateReport
from registry.promotion import SchemaChangeError, gate_report, promote, record_decision, rollback, stage
from registry.resolve import resolve
from registry.settings import RegistrySettings
from registry.versions import PRODUCTION_ALIAS, STAGING_ALIAS, VersionSpec, registration, set_alias
from tests.registry.conftest import RegisteredVersions


def production(settings: RegistrySettings) -> str:
    return MlflowClient(settings.tracking_uri).get_model_version_by_alias(settings.model_name, PRODUCTION_ALIAS).version


def staged(settings: RegistrySettings) -> str | None:
    aliases = MlflowClient(settings.tracking_uri).get_registered_model(settings.model_name).aliases
    return aliases.get(STAGING_ALIAS)


def audit_records(settings: RegistrySettings) -> list[audit.AuditRecord]:
    return audit.history(MlflowClient(settings.tracking_uri), settings)


def test_main_deployed_its_first_candidate_through_the_gate(registered_versions: RegisteredVersions) -> None:
    settings = RegistrySettings(tracking_uri=registered_versions.url, model_name=registered_versions.model_name)
    client = MlflowClient(registered_versions.url)
    base = registered_versions.versions["base_fp32"]
    first = [r for r in audit.history(client, settings) if r.from_version is None and r.action == "promote"][-1]
    assert (first.action, first.to_version, first.gate_verdict, first.outcome) == ("promote", base, "passed", "moved")
    assert first.actor == f"main run {registered_versions.main_run_id}"
    assert client.get_model_version(registered_versions.model_name, base).tags["gate_verdict"] == "passed"


def test_a_passing_gate_moves_production_retires_staging_and_records_the_move(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    client = MlflowClient(registry_settings.tracking_uri)
    base, candidate = registered_versions.versions["base_fp32"], registered_versions.versions["copy_of_production"]
    set_alias(client, registry_settings.model_name, STAGING_ALIAS, candidate)
    result = promote(actor="tester@ci", reason="better model", settings=registry_settings)
    assert (result.action, result.from_version, result.to_version) == ("promote", base, candidate)
    assert result.report is not None and result.report.passed
    names = {check.name for check in result.report.checks}
    assert names == {"auc_floor", "auc_vs_incumbent", "parity", "latency", "schema"}
    assert production(registry_settings) == candidate and staged(registry_settings) is None
    promoted = client.get_model_version(registry_settings.model_name, candidate)
    assert promoted.tags["previous_production_version"] == base
    assert promoted.tags["promoted_by"] == "tester@ci"
    assert "archived_at" in client.get_model_version(registry_settings.model_name, base).tags
    (record,) = [r for r in audit_records(registry_settings) if r.run_id == result.audit_run_id]
    assert (record.action, record.from_version, record.to_version, record.outcome) == (
        "promote",
        base,
        candidate,
        "moved",
    )
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
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions, role, overrides, failed_check
) -> None:
    settings = registry_settings.model_copy(update=overrides)
    version = registered_versions.versions[role]
    before = len(audit_records(settings))
    with pytest.raises(GateRefusedError, match=f"gate refused version {version}: .*{failed_check}") as refused:
        promote(version, settings=settings)
    assert failed_check in {check.name for check in refused.value.report.failed_checks}
    assert production(settings) == registered_versions.versions["base_fp32"]
    records = audit_records(settings)
    assert len(records) == before + 1 and records[0].outcome == "refused" and records[0].to_version == version


def test_another_schema_is_refused_by_the_gate_naming_the_columns_that_differ(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    # The candidate has a column (Region) that no split of the incumbent's has: it is scored on its own data, the
    # incumbent cannot be, and the refusal names the difference.
    with pytest.raises(GateRefusedError) as refused:
        promote(registered_versions.versions["other_schema"], settings=registry_settings)
    checks = {check.name: check for check in refused.value.report.checks}
    assert checks["schema"].detail == "+Region, -Price"
    incumbent = checks["auc_vs_incumbent"]
    assert not incumbent.passed and incumbent.detail == "not comparable: the models take other inputs"
    assert audit_records(registry_settings)[0].gate_verdict == "refused"


def test_a_column_of_another_kind_is_refused_without_scoring_the_incumbent_on_it(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    # Seniority as text ("5", "" for missing) would not even convert to the incumbent's float input.
    version = registered_versions.versions["kind_change"]
    with pytest.raises(GateRefusedError, match=r"schema \(Seniority: numeric->categorical\)") as refused:
        promote(version, settings=registry_settings)
    assert {c.name for c in refused.value.report.failed_checks} == {"auc_vs_incumbent", "schema"}
    record = audit_records(registry_settings)[0]
    assert (record.action, record.to_version, record.outcome) == ("promote", version, "refused")


def test_a_forced_promotion_needs_a_reason_and_is_recorded_as_forced(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    other = registered_versions.versions["other_schema"]
    with pytest.raises(RegistryError, match="needs a reason"):
        promote(other, force=True, settings=registry_settings)
    result = promote(other, force=True, reason="new schema agreed with the risk team", settings=registry_settings)
    assert production(registry_settings) == other
    assert result.report is not None and result.report.verdict == "forced"
    record = audit_records(registry_settings)[0]
    assert record.forced and record.gate_verdict == "forced" and record.reason.startswith("new schema")


def test_promoting_the_production_version_is_a_no_op_that_says_so(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    before = len(audit_records(registry_settings))
    result = promote(registered_versions.versions["base_fp32"], settings=registry_settings)
    assert result.action == "no-op" and "already in production" in result.message
    assert len(audit_records(registry_settings)) == before


def test_staging_a_version_is_audited_and_repeating_it_moves_nothing(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    candidate = registered_versions.versions["weak_fp32"]
    result = stage(candidate, reason="try it on 10% of traffic", actor="tester@ci", settings=registry_settings)
    assert (result.action, result.from_version, result.to_version) == ("stage", None, candidate)
    assert staged(registry_settings) == candidate
    record = audit_records(registry_settings)[0]
    assert (record.action, record.to_version, record.outcome) == ("stage", candidate, "moved")
    assert record.actor == "tester@ci" and record.reason == "try it on 10% of traffic"
    before = len(audit_records(registry_settings))
    again = stage(candidate, settings=registry_settings)
    assert again.action == "no-op" and len(audit_records(registry_settings)) == before


def test_staging_refuses_production_itself_and_another_schema_unless_allowed(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    with pytest.raises(RegistryError, match="is in production"):
        stage(registered_versions.versions["base_fp32"], settings=registry_settings)
    other = registered_versions.versions["other_schema"]
    with pytest.raises(SchemaChangeError, match=r"takes other inputs .*\(\+Region, -Price\)"):
        stage(other, reason="try the new data", settings=registry_settings)
    assert staged(registry_settings) is None
    refusal = audit_records(registry_settings)[0]
    assert (refusal.action, refusal.to_version, refusal.outcome) == ("stage", other, "refused")
    assert refusal.reason == "try the new data; refused: other inputs than production (+Region, -Price)"
    assert stage(other, allow_schema_change=True, settings=registry_settings).to_version == other
    assert staged(registry_settings) == other


def test_rollback_returns_to_the_replaced_version_and_is_audited(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    base, candidate = registered_versions.versions["base_fp32"], registered_versions.versions["copy_of_production"]
    promote(candidate, settings=registry_settings)
    assert production(registry_settings) == candidate
    result = rollback(reason="complaints from underwriting", settings=registry_settings)
    assert (result.from_version, result.to_version) == (candidate, base)
    assert production(registry_settings) == base
    record = audit_records(registry_settings)[0]
    assert (record.action, record.from_version, record.to_version, record.outcome) == (
        "rollback",
        candidate,
        base,
        "moved",
    )
    assert record.reason == "complaints from underwriting"


def test_history_lists_moves_newest_first(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    promote(registered_versions.versions["copy_of_production"], settings=registry_settings)
    rollback(settings=registry_settings)
    records = audit_records(registry_settings)
    assert [r.action for r in records[:2]] == ["rollback", "promote"]
    assert records[0].at >= records[1].at


def test_first_deployment_checks_only_the_absolute_floors(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    client = MlflowClient(registry_settings.tracking_uri)
    source = client.get_model_version(registry_settings.model_name, registered_versions.versions["base_fp32"])
    fresh = registry_settings.model_copy(update={"model_name": f"{registry_settings.model_name}-fresh"})
    with registration(client, fresh.model_name, [VersionSpec(source.source, dict(source.tags))]) as created:
        set_alias(client, fresh.model_name, STAGING_ALIAS, created[0].version)
    result = promote(settings=fresh)
    assert result.from_version is None and result.report is not None and result.report.incumbent_version is None
    assert {c.name for c in result.report.checks} == {"auc_floor", "parity", "latency"}
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        rollback(settings=fresh)


def test_mirroring_moves_the_legacy_stages_too(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    base, candidate = registered_versions.versions["base_fp32"], registered_versions.versions["copy_of_production"]
    mirrored = registry_settings.model_copy(update={"mirror_stages": True})
    promote(candidate, settings=mirrored)
    rollback(settings=mirrored)
    stage(registered_versions.versions["weak_fp32"], settings=mirrored)
    client = MlflowClient(registry_settings.tracking_uri)
    assert client.get_model_version(registry_settings.model_name, base).current_stage == "Production"
    assert client.get_model_version(registry_settings.model_name, candidate).current_stage == "Archived"
    weak = registered_versions.versions["weak_fp32"]
    assert client.get_model_version(registry_settings.model_name, weak).current_stage == "Staging"


def test_resolve_downloads_once_and_reads_the_feature_schema(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    resolved = resolve(PRODUCTION_ALIAS, registry_settings)
    assert resolved.version == registered_versions.versions["base_fp32"] and resolved.precision == "fp32"
    assert resolved.onnx_path.is_file() and resolved.onnx_path.is_relative_to(registry_settings.cache_dir)
    assert resolved.feature_schema.categorical == ["Home", "Marital", "Records", "Job"]
    assert resolved.input_signature[0] == ("Seniority", "FLOAT")
    assert resolved.decision_threshold is not None and 0 < resolved.decision_threshold < 1
    stamp = resolved.onnx_path.stat().st_mtime_ns
    assert resolve(resolved.version, registry_settings).onnx_path.stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    ("target", "settings_update", "message"),
    [
        ("999", {}, "has no version 999"),
        ("champion", {}, "has no alias 'champion'"),
        ("production", {"model_name": "no-such-model"}, "registered model 'no-such-model' not found"),
    ],
)
def test_unknown_model_version_or_alias_is_a_clear_error(
    registry_settings: RegistrySettings, target, settings_update, message
) -> None:
    with pytest.raises(RegistryError, match=message):
        resolve(target, registry_settings.model_copy(update=settings_update))


def test_a_poller_never_sees_production_missing_during_repeated_promotions(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    base, candidate = registered_versions.versions["base_fp32"], registered_versions.versions["copy_of_production"]
    seen: list[str | None] = []
    errors: list[Exception] = []
    stop = threading.Event()

    def poll() -> None:
        reader = MlflowClient(registry_settings.tracking_uri)
        while not stop.is_set():
            try:
                seen.append(reader.get_model_version_by_alias(registry_settings.model_name, PRODUCTION_ALIAS).version)
            except Exception as error:  # any failure to read production is what we look for
                errors.append(error)
            time.sleep(0.003)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        for round_number in range(6):
            target = candidate if round_number % 2 == 0 else base
            promote(target, force=True, reason=f"concurrency round {round_number}", settings=registry_settings)
    finally:
        stop.set()
        poller.join(timeout=10)
    assert not errors, errors[:3]
    assert len(seen) > 20
    assert set(seen) <= {base, candidate}
    assert production(registry_settings) == base


def registry_cli(settings: RegistrySettings, *arguments: str) -> subprocess.CompletedProcess[str]:
    assert settings.tracking_uri is not None
    command = [sys.executable, "-m", "registry", "--tracking-uri", settings.tracking_uri]
    command += ["--model", settings.model_name]
    # MLflow draws its download progress bars only when asked to; the CLI must keep them out of its output itself.
    env = {**os.environ, "REGISTRY_CACHE_DIR": str(settings.cache_dir), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "true"}
    return subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=120, env=env)


def test_cli_status_and_history_show_versions_aliases_and_moves_and_nothing_else(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    candidate = registered_versions.versions["copy_of_production"]
    promote(candidate, reason="cli check", settings=registry_settings)
    status = registry_cli(registry_settings, "status")
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert lines[0] == f"model {registry_settings.model_name}"
    assert lines[1].split()[:4] == ["version", "aliases", "precision", "test"]
    versions = MlflowClient(registry_settings.tracking_uri).search_model_versions(
        f"name = '{registry_settings.model_name}'"
    )
    assert len(lines) == 2 + len(versions)
    row = next(line for line in lines if line.split()[0] == candidate)
    assert row.split()[1] == "production" and row.split()[2] == "fp32"
    assert status.stderr == ""
    history = registry_cli(registry_settings, "history", "--limit", "3")
    assert history.returncode == 0, history.stderr
    assert "promote" in history.stdout.splitlines()[1] and "cli check" in history.stdout


def test_cli_promote_output_is_the_report_and_the_message_without_progress_bars(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    promoted = registry_cli(
        registry_settings, "promote", "--version", registered_versions.versions["copy_of_production"]
    )
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.startswith("# Promotion gate:")
    previous = registered_versions.versions["base_fp32"]
    assert promoted.stdout.strip().splitlines()[-1].endswith(f"(gate passed; previous: {previous})")
    assert "Downloading artifacts" not in promoted.stdout + promoted.stderr and promoted.stderr == ""


def test_cli_refused_gate_prints_the_report_and_exits_3(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    weak = registered_versions.versions["weak_fp32"]
    refused = registry_cli(registry_settings, "promote", "--version", weak)
    assert refused.returncode == 3
    assert "| auc_vs_incumbent | FAIL |" in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith("error: gate refused version")
    assert "Traceback" not in refused.stderr
    # The gate's refusal parks the version: the promotion DAG does not propose it again on its own.
    parked = registry_cli(registry_settings, "parked", "--version", weak)
    assert f"version {weak} is parked: refused by the gate" in parked.stdout


def test_cli_refuses_another_schema_with_exit_3_and_records_the_refusal(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    other = registered_versions.versions["other_schema"]
    refused = registry_cli(registry_settings, "promote", "--version", other)
    assert refused.returncode == 3, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: gate refused version {other}:") and "schema (+Region, -Price)" in last
    assert "Traceback" not in refused.stderr
    record = audit_records(registry_settings)[0]
    assert (record.action, record.to_version, record.outcome) == ("promote", other, "refused")


def test_cli_stage_moves_staging_and_refuses_another_schema_in_one_line(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    weak, other = registered_versions.versions["weak_fp32"], registered_versions.versions["other_schema"]
    result = registry_cli(registry_settings, "stage", "--version", weak, "--reason", "shadow test")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{registry_settings.model_name} version {weak} is now staged (previous: none)"
    assert staged(registry_settings) == weak and audit_records(registry_settings)[0].reason == "shadow test"
    refused = registry_cli(registry_settings, "stage", "--version", other)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: version {other} takes other inputs") and "+Region, -Price" in line
    assert staged(registry_settings) == weak


def test_cli_unknown_model_is_one_line(registry_settings: RegistrySettings) -> None:
    result = registry_cli(registry_settings.model_copy(update={"model_name": "nope"}), "rollback")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: registered model 'nope' not found on {registry_settings.tracking_uri}"


def test_a_gate_report_moves_nothing_and_a_recorded_refusal_is_one_audit_record(
    registry_settings: RegistrySettings, registered_versions: RegisteredVersions
) -> None:
    client = MlflowClient(registry_settings.tracking_uri)
    base, candidate = registered_versions.versions["base_fp32"], registered_versions.versions["copy_of_production"]
    set_alias(client, registry_settings.model_name, STAGING_ALIAS, candidate)
    before = len(audit_records(registry_settings))

    evaluation = gate_report(settings=registry_settings)  # the staging version by default
    assert (evaluation.version, evaluation.incumbent_version) == (candidate, base) and evaluation.report is not None
    assert production(registry_settings) == base and staged(registry_settings) == candidate
    assert len(audit_records(registry_settings)) == before
    # Handed between two Airflow tasks as JSON, the report comes back the same.
    assert GateReport.from_dict(json.loads(json.dumps(evaluation.report.to_dict()))) == evaluation.report
    assert gate_report(base, registry_settings).report is None  # production itself: nothing to evaluate

    run_id = record_decision(
        registry_settings, evaluation, audit.REJECTED, "airflow x/run", "rejected by reviewer", approver="reviewer"
    )
    records = audit_records(registry_settings)
    assert len(records) == before + 1 and records[0].run_id == run_id
    rejection = records[0]
    assert (rejection.action, rejection.outcome, rejection.from_version, rejection.to_version) == (
        "promote",
        "rejected",
        base,
        candidate,
    )
    assert (rejection.actor, rejection.approver, rejection.reason) == (
        "airflow x/run",
        "reviewer",
        "rejected by reviewer",
    )
    assert production(registry_settings) == base and staged(registry_settings) == candidate

    # The rejection parks the version: `registry parked` says why; `registry unpark` (with a reason) asks again.
    client = MlflowClient(registry_settings.tracking_uri)
    assert audit.parked_by(client, registry_settings, candidate) == rejection
    shown = registry_cli(registry_settings, "parked")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(
        f"{registry_settings.model_name} version {candidate} is parked: rejected by reviewer"
    )
    refused = registry_cli(registry_settings, "unpark", "--version", candidate, "--reason", " ")
    assert (refused.returncode, refused.stderr.strip()) == (2, "error: unparking a version needs a reason (--reason)")
    unparked = registry_cli(registry_settings, "unpark", "--version", candidate, "--reason", "new evidence")
    assert unparked.returncode == 0, unparked.stderr
    assert audit.parked_by(client, registry_settings, candidate) is None
    assert audit_records(registry_settings)[0].action == "unpark"
    again = registry_cli(registry_settings, "unpark", "--version", candidate, "--reason", "twice")
    assert (again.returncode, again.stderr.strip()) == (
        2,
        f"error: {registry_settings.model_name} version {candidate} is not parked",
    )
    assert "is not parked" in registry_cli(registry_settings, "parked", "--version", candidate).stdout

    # Rejected again, then staging moves to it anew: that lifts the parking too.
    record_decision(registry_settings, evaluation, audit.REJECTED, "airflow x/run2", "no", approver="reviewer")
    assert audit.parked_by(client, registry_settings, candidate) is not None
    set_alias(client, registry_settings.model_name, STAGING_ALIAS, base)
    stage(candidate, reason="again", actor="tests", settings=registry_settings)
    assert audit.parked_by(client, registry_settings, candidate) is None
