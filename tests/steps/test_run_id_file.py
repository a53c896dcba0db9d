"""--run-id-file: a step's CLI writes its run id to a file (what run_scripts.bat chains steps with)."""

from __future__ import annotations

from pathlib import Path

from steps.cli import write_run_id
from tests.steps.test_cli import run_cli


def test_write_run_id_writes_the_id_alone_and_nothing_without_a_path(tmp_path: Path) -> None:
    target = tmp_path / "runs" / "prepare.txt"
    write_run_id(target, "0123456789abcdef0123456789abcdef")
    assert target.read_bytes() == b"0123456789abcdef0123456789abcdef"  # no newline: `set /p` reads it whole
    write_run_id(None, "ignored")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["prepare.txt", "runs"]


def test_prepare_writes_the_run_id_it_prints(mlflow_server: str, small_csv: Path, tmp_path: Path) -> None:
    target = tmp_path / "prepare.txt"
    result = run_cli(
        "steps.prepare", "--data-path", str(small_csv), "--run-id-file", str(target), tracking_uri=mlflow_server
    )
    assert result.returncode == 0, result.stderr
    run_id = target.read_text()
    assert len(run_id) == 32 and f"prepare run {run_id}:" in result.stdout


def test_an_unwritable_run_id_file_is_one_line_before_the_step_runs(small_csv: Path, tmp_path: Path) -> None:
    # The folder the file should go in is a file: refused before any run is made (no tracking server is needed).
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    target = blocker / "prepare.txt"
    uri = f"sqlite:///{tmp_path / 'never-created.db'}"
    result = run_cli("steps.prepare", "--data-path", str(small_csv), "--run-id-file", str(target), tracking_uri=uri)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: prepare: --run-id-file {target}: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "never-created.db").exists(), "the step ran before the path was checked"
