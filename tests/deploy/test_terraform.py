"""deploy/terraform: every file parses (python-hcl2), is `terraform fmt`-clean where terraform is installed, every
module the root uses exists with the variables it is given (and is given every variable it requires), every module
output the root reads exists, every variable and output is described, and providers are pinned."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.deploy.conftest import TERRAFORM, missing_tool, run

MODULES = {"network", "kubernetes", "storage", "monitoring"}


def parse(folder: Path) -> dict[str, list[Any]]:
    """Every block of a module's .tf files, merged: {"variable": [...], "module": [...], ...}."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(folder.glob("*.tf")):
        with path.open() as handle:
            for key, blocks in hcl2.load(handle).items():
                merged.setdefault(key, []).extend(blocks)
    return merged


def names(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {unquote(name): body for block in blocks for name, body in attributes(block).items()}


def attributes(block: dict[str, Any]) -> dict[str, Any]:
    # python-hcl2 8 marks blocks with an `__is_block__` key.
    return {key: value for key, value in block.items() if not key.startswith("__")}


def unquote(value: str) -> str:
    # python-hcl2 8 keeps the quotes of block labels and strings.
    return value[1:-1] if isinstance(value, str) and value.startswith('"') and value.endswith('"') else value


@pytest.fixture(scope="module")
def root() -> dict[str, list[Any]]:
    return parse(TERRAFORM)


def test_every_file_parses() -> None:
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert len(files) >= 15
    for path in files:
        with path.open() as handle:
            assert hcl2.load(handle), path


def test_the_root_uses_the_four_modules_with_the_variables_they_declare(root) -> None:
    modules = names(root["module"])
    assert set(modules) == MODULES
    for name, body in modules.items():
        source = unquote(body["source"])
        assert source == f"./modules/{name}"
        module = parse(TERRAFORM / source)
        declared = names(module["variable"])
        given = set(attributes(body)) - {"source", "depends_on", "providers", "count", "for_each"}
        assert given <= set(declared), f"module {name} is given undeclared {given - set(declared)}"
        required = {var for var, spec in declared.items() if "default" not in spec}
        assert required <= given, f"module {name} lacks required {required - given}"


def test_every_module_output_the_root_reads_exists() -> None:
    text = "\n".join(path.read_text() for path in TERRAFORM.glob("*.tf"))
    for module, output in set(re.findall(r"module\.(\w+)\.(\w+)", text)):
        outputs = names(parse(TERRAFORM / "modules" / module).get("output", []))
        assert output in outputs, f"module.{module}.{output} is not an output of modules/{module}"


@pytest.mark.parametrize("folder", [TERRAFORM, *(TERRAFORM / "modules" / m for m in sorted(MODULES))], ids=str)
def test_variables_and_outputs_are_typed_and_described(folder: Path) -> None:
    parsed = parse(folder)
    for name, spec in names(parsed.get("variable", [])).items():
        assert spec.get("description") and spec.get("type"), f"{folder.name}: variable {name}"
    for name, spec in names(parsed.get("output", [])).items():
        assert spec.get("description"), f"{folder.name}: output {name}"
    assert (folder / "variables.tf").is_file() and (folder / "outputs.tf").is_file()


def test_providers_and_terraform_are_pinned(root) -> None:
    (settings,) = root["terraform"]
    assert settings["required_version"]
    (providers,) = settings["required_providers"]
    providers = attributes(providers)
    assert {"aws", "random", "tls"} <= set(providers)
    for name, spec in providers.items():
        assert re.match(r"~> \d+\.\d+", unquote(spec["version"])), name


def test_terraform_fmt_is_clean() -> None:
    # Optional like every other validator: skipped here without it, a failure under CI (missing_tool).
    terraform = shutil.which("terraform")
    if terraform is None:
        missing_tool("terraform is not installed (.ci/run installs it; python-hcl2 parsing above runs regardless)")
        return
    result = run(terraform, "fmt", "-recursive", "-check", "-diff", str(TERRAFORM))
    assert result.returncode == 0, result.stdout + result.stderr


def test_for_each_keys_do_not_wait_for_other_resources(root) -> None:
    # for_each over a set of values unknown until apply (ids of another module's resources) fails the first plan
    # ("Invalid for_each argument"): such values go in a map with static keys instead.
    modules = names(root["module"])
    for name, body in modules.items():
        text = "\n".join(path.read_text() for path in (TERRAFORM / "modules" / name).glob("*.tf"))
        for variable in re.findall(r"for_each\s*=\s*toset\(var\.(\w+)\)", text):
            given = str(body.get(variable, ""))
            assert "module." not in given, f"module {name}: for_each over toset(var.{variable}) = {given}"
    storage = str(modules["storage"]["allowed_security_group_ids"])
    assert "eks_nodes" in storage and "module.kubernetes.node_security_group_id" in storage
