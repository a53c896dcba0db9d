"""run_scripts.bat, checked statically (no Windows here): UTF-8 set up first, then prepare, train, convert, quantize
and benchmark in that order through `python -m steps.<step>`, with options the step's CLI has, each step's run id
read from the file the step before wrote (--run-id-file), a pause after each step, CRLF line endings."""

from __future__ import annotations

import importlib
import re

import click

from tests.deploy.conftest import REPO

BAT = REPO / "run_scripts.bat"
ORDER = ["prepare", "train", "convert", "quantize", "benchmark"]


def test_line_endings_are_crlf() -> None:
    raw = BAT.read_bytes()
    assert raw.count(b"\r\n") == raw.count(b"\n")


def test_steps_run_in_order_with_existing_options_and_chained_run_ids() -> None:
    lines = [line if not line.lower().startswith("rem") else "" for line in BAT.read_text().splitlines()]
    assert lines.index("chcp 65001 >nul") < lines.index("set PYTHONUTF8=1") < _first_step(lines)
    calls = [(i, re.search(r"-m (steps\.\w+)(.*)$", line)) for i, line in enumerate(lines)]
    calls = [(i, match.group(1), match.group(2)) for i, match in calls if match and lines[i].startswith('"%PYTHON%"')]
    assert [module.removeprefix("steps.") for _, module, _ in calls] == ORDER
    defined = {"MLFLOW_TRACKING_URI", "PYTHON", "RUNS"}
    for index, module, arguments in calls:
        command = importlib.import_module(module).cli
        assert isinstance(command, click.Command)
        known = {opt for param in command.params for opt in param.opts}
        used = set(re.findall(r"(?<!\S)(--[a-z][a-z-]*)", arguments))
        assert used <= known, f"{module}: unknown options {used - known}"
        required = {param.opts[0] for param in command.params if param.required}
        assert required <= used, f"{module} needs {required - used}"
        for variable in re.findall(r"%(\w+)%", arguments):
            assert variable in defined, f"{module} uses %{variable}% before it is set"
        step = module.removeprefix("steps.")
        run_id_file = f'--run-id-file "%RUNS%\\{step}.txt"'
        assert run_id_file in arguments
        following = lines[index + 1 : index + 4]
        assert following[0] == "if errorlevel 1 goto failed"
        assert following[1] == f'set /p {step.upper()}_RUN_ID=<"%RUNS%\\{step}.txt"'
        defined.add(f"{step.upper()}_RUN_ID")
        if step != ORDER[-1]:
            assert following[2] == "pause"
    assert ":failed" in lines and lines[-1].startswith("exit /b")


def _first_step(lines: list[str]) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith('"%PYTHON%" -m steps.'))
