"""README.md's shell blocks, each marked on the line above its fence with what runs it:

    <!-- run by tests/notebooks/test_notebooks.py as "pipeline-main" -->   a test reads the block from here and runs it
    <!-- run by .ci/run -->                                                 CI runs each of its commands
    <!-- illustrative: the reason -->                                       not run as written, and why

so that what a test runs is the README's text itself. tests/test_readme.py checks that every block is marked and that
each mark is true.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import mlflow_cli_environment

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARK = re.compile(r"<!-- (?:run by (?P<runner>\S+)(?: as \"(?P<name>[\w-]+)\")?|illustrative: (?P<reason>.+?)) -->")


@dataclass(frozen=True)
class ShellBlock:
    line: int  # of the opening fence, 1-based
    mark: str  # the line above the fence
    text: str

    @property
    def commands(self) -> list[str]:
        """The block's commands: continuation lines joined, comments and blank lines dropped."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def shell_blocks() -> list[ShellBlock]:
    lines = README.read_text().splitlines()
    blocks = []
    for number, line in enumerate(lines):
        if line.strip() == "```bash":
            end = next(i for i in range(number + 1, len(lines)) if lines[i].strip() == "```")
            mark = lines[number - 1] if number else ""
            blocks.append(ShellBlock(number + 1, mark, "\n".join(lines[number + 1 : end]) + "\n"))
    return blocks


def readme_block(name: str) -> ShellBlock:
    """The block marked `as "name"`."""
    found = [block for block in shell_blocks() if (match := MARK.search(block.mark)) and match["name"] == name]
    assert len(found) == 1, f"README.md has {len(found)} blocks marked as {name!r}"
    return found[0]


def run_readme_text(
    text: str, *, tracking_uri: str, env: Mapping[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    """`text` in bash -e from the repository root, with the README's tracking server (127.0.0.1:5000) replaced by
    `tracking_uri`, in the environment of tests.conftest.mlflow_cli_environment (`tracking_uri` exported, as the
    README's first block does for the blocks after it)."""
    environment = mlflow_cli_environment(tracking_uri, **(env or {}))
    script = text.replace("http://127.0.0.1:5000", tracking_uri)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
