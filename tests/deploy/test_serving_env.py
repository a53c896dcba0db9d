"""The gateway without the training stack: its import path imports no pandas, scikit-learn, matplotlib or Evidently
(statically, in this environment), and it serves a real registered model under gunicorn in .venv-serving, the
environment of requirements-serving.lock alone (where those packages are not even installed)."""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from scripts.gateway_memory import heavy_libraries
from scripts.gateway_process import server_workers
from tests.conftest import RedisProcess, Served, running_gateway
from tests.deploy.conftest import REPO, SERVING_VENV, missing_tool

FORBIDDEN = {"pandas", "sklearn", "matplotlib", "evidently", "scipy", "skl2onnx", "pyarrow", "steps", "monitoring"}
ROW = {"values": [9, "rent", 60, 30, "married", "no", "freelance", 73, 129.0, 0.0, 0.0, 800, 846]}


def module_imports(path: Path) -> set[str]:
    """Top-level packages imported when the module is imported (not inside functions, not under TYPE_CHECKING)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for child in ast.walk(node) if not isinstance(node, ast.FunctionDef | ast.ClassDef) else []:
            if isinstance(child, ast.Import):
                found |= {alias.name for alias in child.names}
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
    return found


def gateway_modules() -> dict[str, set[str]]:
    """Every project module serving.wsgi imports, transitively: module -> what it imports."""
    seen: dict[str, set[str]] = {}
    todo = ["serving.wsgi", "serving.gunicorn_conf"]
    while todo:
        module = todo.pop()
        path = REPO / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = REPO / module.replace(".", "/") / "__init__.py"
        if module in seen or not path.is_file():
            continue
        seen[module] = module_imports(path)
        todo += [
            name
            for name in seen[module]
            if name.split(".")[0] in {"serving", "registry", "scoring", "steps", "monitoring"}
        ]
        todo += [module.rsplit(".", 1)[0]] if "." in module else []
    return seen


def test_the_gateways_import_path_imports_no_training_stack() -> None:
    modules = gateway_modules()
    assert {"serving.app", "serving.model_store", "registry.resolve", "scoring.schema"} <= set(modules)
    for module, imported in modules.items():
        heavy = {name for name in imported if name.split(".")[0] in FORBIDDEN}
        assert not heavy, f"{module} imports {heavy} at import time: the gateway image does not have them"


@pytest.fixture
def serving_gateway(served: Served, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """The gateway as tests/conftest.running_gateway starts it, but with .venv-serving's interpreter."""
    python = SERVING_VENV / "bin" / "python"
    if not python.is_file():
        missing_tool(".venv-serving is missing (scripts/bootstrap.sh serving)")
    redis_server = RedisProcess(tmp_path)
    redis_server.start()
    try:
        with running_gateway(served.url, served.model_name, tmp_path, redis_server.url, python=python) as gateway:
            yield gateway.url, gateway.process
    finally:
        redis_server.stop()


@pytest.mark.integration
def test_the_gateway_serves_a_real_model_in_the_serving_only_environment(serving_gateway) -> None:
    installed = subprocess.run(
        [str(SERVING_VENV / "bin" / "python"), "-c",
         "import importlib.util as u; print(sorted(m for m in ('pandas', 'sklearn', 'matplotlib') if u.find_spec(m)))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert installed.stdout.strip() == "[]", "the serving environment must not even have the training stack"
    url, process = serving_gateway
    with requests.Session() as session:
        for _ in range(20):
            answer = session.post(f"{url}/predict", json={"batch": [ROW, ROW]}, timeout=10)
            assert answer.status_code == 200, answer.text
            assert len(answer.json()["predictions"]) == 2
        assert session.post(f"{url}/predict_ab", json={"batch": [ROW]}, timeout=10).status_code == 200
        assert session.get(f"{url}/metrics", timeout=10).status_code == 200
    for worker in server_workers(process.pid):
        assert heavy_libraries(worker) == [], f"worker {worker} mapped {heavy_libraries(worker)}"
