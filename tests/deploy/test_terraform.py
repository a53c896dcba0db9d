"""deploy/terraform: every file parses (python-hcl2), is `terraform fmt`-clean where terraform is installed, every
module call (the root's four modules, and their calls of the shared `kms-key` and `iam-role` submodules) gives only
variables the module declares and every variable it requires, every module output read exists, every variable and
output is described, providers are pinned, KMS keys and IAM roles are declared once (in the shared submodules), and
every `moved` block points from an address that is gone to one that exists."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import hcl2
import pytest

from tests.deploy.conftest import TERRAFORM, missing_tool, run

MODULES = {"network", "kubernetes", "storage", "monitoring"}  # what the root calls
SHARED = {"kms-key", "iam-role"}  # what those modules call instead of repeating the blocks
FOLDERS = [TERRAFORM, *(TERRAFORM / "modules" / m for m in sorted(MODULES | SHARED))]
# A resource declared only in its shared submodule: where it is declared -> resource type.
DECLARED_ONCE = {"kms-key": "aws_kms_key", "iam-role": "aws_iam_role"}


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


def resources(folder: Path) -> dict[str, dict[str, Any]]:
    """The managed resources of a module: "type.name" -> body."""
    return {
        f"{unquote(kind)}.{name}": body
        for block in parse(folder).get("resource", [])
        for kind, named in attributes(block).items()
        for name, body in names([named]).items()
    }


def calls(folder: Path) -> dict[str, tuple[dict[str, Any], Path]]:
    """The module calls of a module: name -> (body, the called module's folder)."""
    return {
        name: (body, (folder / unquote(body["source"])).resolve())
        for name, body in names(parse(folder).get("module", [])).items()
    }


def label(folder: Path) -> str:
    return "root" if folder == TERRAFORM else folder.name


def text_without_moved_blocks(folder: Path) -> str:
    # `moved` blocks name resources inside module calls (module.x.aws_kms_key.this), not outputs.
    text = "\n".join(path.read_text() for path in sorted(folder.glob("*.tf")))
    return re.sub(r"^moved\s*\{.*?^\}", "", text, flags=re.S | re.M)


@pytest.fixture(scope="module")
def root() -> dict[str, list[Any]]:
    return parse(TERRAFORM)


def test_every_file_parses() -> None:
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert len(files) >= 25
    for path in files:
        with path.open() as handle:
            assert hcl2.load(handle), path


def test_the_root_uses_the_four_modules_and_they_the_shared_submodules() -> None:
    assert {path.name for path in (TERRAFORM / "modules").iterdir() if path.is_dir()} == MODULES | SHARED
    assert {name: unquote(body["source"]) for name, (body, _) in calls(TERRAFORM).items()} == {
        name: f"./modules/{name}" for name in MODULES
    }
    used = set()
    for module in MODULES:
        for name, (_, source) in calls(TERRAFORM / "modules" / module).items():
            assert source.parent == TERRAFORM / "modules" and source.name in SHARED, f"{module}: module {name}"
            used.add(source.name)
    assert used == SHARED, f"shared submodules no module uses: {SHARED - used}"
    for shared in SHARED:
        assert not calls(TERRAFORM / "modules" / shared), f"{shared} calls other modules"


@pytest.mark.parametrize("folder", FOLDERS, ids=label)
def test_every_module_call_gives_the_variables_its_module_declares(folder: Path) -> None:
    for name, (body, source) in calls(folder).items():
        declared = names(parse(source)["variable"])
        given = set(attributes(body)) - {"source", "depends_on", "providers", "count", "for_each"}
        assert given <= set(declared), f"{label(folder)}: module {name} is given undeclared {given - set(declared)}"
        required = {var for var, spec in declared.items() if "default" not in spec}
        assert required <= given, f"{label(folder)}: module {name} lacks required {required - given}"


@pytest.mark.parametrize("folder", FOLDERS, ids=label)
def test_every_module_output_read_exists(folder: Path) -> None:
    called = calls(folder)
    for module, output in set(re.findall(r"module\.([\w-]+)\.(\w+)", text_without_moved_blocks(folder))):
        assert module in called, f"{label(folder)} reads module.{module}, which it does not call"
        source = called[module][1]
        outputs = names(parse(source).get("output", []))
        assert output in outputs, f"{label(folder)}: module.{module}.{output} is not an output of modules/{source.name}"


@pytest.mark.parametrize("folder", FOLDERS, ids=label)
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


@pytest.mark.parametrize("folder", FOLDERS, ids=label)
def test_for_each_keys_do_not_wait_for_other_resources(folder: Path) -> None:
    # for_each over a set of values unknown until apply (ids of another module's resources) fails the first plan
    # ("Invalid for_each argument"): such values go in a map with static keys instead, and a map given to a
    # for_each needs keys written out.
    for name, (body, source) in calls(folder).items():
        text = "\n".join(path.read_text() for path in source.glob("*.tf"))
        for variable in re.findall(r"for_each\s*=\s*toset\(var\.(\w+)\)", text):
            given = str(body.get(variable, ""))
            assert "module." not in given, f"module {name}: for_each over toset(var.{variable}) = {given}"
        for variable in re.findall(r"for_each\s*=\s*var\.(\w+)\s*$", text, flags=re.M):
            given = body.get(variable, {})
            assert isinstance(given, dict), f"module {name}: {variable} must be a map written out, not {given}"
            assert all("${" not in key for key in given), f"module {name}: computed keys in {variable}"
    if folder == TERRAFORM:
        storage = str(calls(TERRAFORM)["storage"][0]["allowed_security_group_ids"])
        assert "eks_nodes" in storage and "module.kubernetes.node_security_group_id" in storage


def test_kms_keys_and_iam_roles_are_declared_only_in_the_shared_submodules() -> None:
    for folder in TERRAFORM.rglob("*"):
        if not folder.is_dir() or not any(folder.glob("*.tf")):
            continue
        declared = {address.split(".")[0] for address in resources(folder)}
        for shared, kind in DECLARED_ONCE.items():
            if folder.name != shared:
                assert kind not in declared, f"{folder.relative_to(TERRAFORM)} declares {kind}: use modules/{shared}"
    key = resources(TERRAFORM / "modules" / "kms-key")["aws_kms_key.this"]
    assert key["enable_key_rotation"] is True
    assert "AccountAdministers" in str(parse(TERRAFORM / "modules" / "kms-key")["data"])


@pytest.mark.parametrize("folder", FOLDERS, ids=label)
def test_moved_blocks_point_from_a_gone_address_to_an_existing_one(folder: Path) -> None:
    # Nothing here can plan (no providers), so this is the only check of the moved blocks that keep an applied
    # state's KMS keys and IAM roles when they went into the shared submodules.
    own = resources(folder)
    called = calls(folder)
    for block in parse(folder).get("moved", []):
        source, target = (str(block[key]).removeprefix("${").removesuffix("}") for key in ("from", "to"))
        assert source not in own, f"{label(folder)}: moved from {source}, which is still declared"
        match = re.fullmatch(r"module\.([\w-]+)\.(\w+\.\w+)(\[.+\])?", target)
        assert match, f"{label(folder)}: moved to {target}, not a resource of a module call"
        module, address, key = match.groups()
        assert module in called, f"{label(folder)}: moved to module.{module}, which it does not call"
        theirs = resources(called[module][1])
        assert address in theirs, f"{label(folder)}: {address} is not a resource of module.{module}"
        assert source.split(".")[0] == address.split(".")[0], f"{label(folder)}: {source} -> {target}"
        assert bool(key) == ("for_each" in theirs[address]), f"{label(folder)}: {target} and its for_each"
        if key:
            maps = [value for value in called[module][0].values() if isinstance(value, dict)]
            assert any(key.strip('[]"') in map(unquote, given) for given in maps), f"{label(folder)}: {target}"
