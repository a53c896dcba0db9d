"""Every shell block of README.md is run as written by a test or by CI, or marked illustrative with its reason
(tests/readme_blocks.py): a block added without a mark, or a mark that names a test that does not run it, fails here."""

from __future__ import annotations

from tests.readme_blocks import MARK, REPO, readme_block, shell_blocks


def test_every_shell_block_is_marked_with_what_runs_it() -> None:
    blocks = shell_blocks()
    assert len(blocks) >= 8, "README.md's shell blocks were not found"
    for block in blocks:
        match = MARK.fullmatch(block.mark.strip())
        assert match, f"README.md line {block.line}: no `<!-- run by ... -->` or `<!-- illustrative: ... -->` above"
        if match["reason"] is not None:
            assert len(match["reason"]) > 20, f"README.md line {block.line}: say why the block is not run"


def test_each_run_by_mark_is_true() -> None:
    names = []
    for block in shell_blocks():
        match = MARK.fullmatch(block.mark.strip())
        if match is None or match["runner"] is None:
            continue
        runner = REPO / match["runner"]
        assert runner.is_file(), f"README.md line {block.line}: {match['runner']} does not exist"
        if match["name"]:
            # A test that reads the block from README.md by its name and runs it.
            names.append(match["name"])
            assert f'readme_block("{match["name"]}")' in runner.read_text(), (
                f"README.md line {block.line}: {match['runner']} does not run the block {match['name']!r}"
            )
        else:
            # A script (.ci/run) that runs each command of the block as written.
            script = runner.read_text()
            for command in block.commands:
                assert command in script.splitlines(), f"README.md line {block.line}: {runner.name} lacks {command!r}"
    assert len(names) == len(set(names)), "two README blocks share a name"


def test_a_named_block_is_found_and_split_into_commands() -> None:
    block = readme_block("pipeline-main")
    assert block.commands[0].startswith("export MLFLOW_TRACKING_URI=http://127.0.0.1:5000")
    assert any(command.startswith(".venv/bin/mlflow run . -e main --env-manager local") for command in block.commands)
