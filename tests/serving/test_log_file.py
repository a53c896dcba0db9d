"""The gateway's log file writer (serving/log_file.py): bounded files, whole lines, nothing lost at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from serving.log_file import RotatingFile, copy


def lines_in(folder: Path, name: str = "gateway.log") -> list[bytes]:
    files = sorted(folder.glob(f"{name}*"), key=lambda f: -int(f.suffix[1:]) if f.suffix[1:].isdigit() else 0)
    return [line for f in files for line in f.read_bytes().splitlines()]  # oldest file first


def test_files_stay_within_the_limit_and_rotate_at_line_boundaries(tmp_path: Path) -> None:
    target = RotatingFile(tmp_path / "gateway.log", max_bytes=100, backups=2)
    written = [f"line {i:03d} {'x' * 20}".encode() for i in range(30)]  # 29 bytes with the newline
    for line in written:
        target.write(line + b"\n")
    target.close()
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["gateway.log", "gateway.log.1", "gateway.log.2"]
    assert all(f.stat().st_size <= 100 for f in files)
    assert lines_in(tmp_path) == written[-len(lines_in(tmp_path)) :]  # the newest lines, whole and in order


def test_a_line_longer_than_a_file_gets_one_of_its_own_and_an_existing_file_is_continued(tmp_path: Path) -> None:
    (tmp_path / "gateway.log").write_bytes(b"from before\n")
    target = RotatingFile(tmp_path / "gateway.log", max_bytes=50, backups=3)
    target.write(b"short\n" + b"L" * 120 + b"\n" + b"after\n")
    target.close()
    assert lines_in(tmp_path) == [b"from before", b"short", b"L" * 120, b"after"]


def test_copy_keeps_a_partial_line_until_its_end_and_writes_the_last_without_newline(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.write(write, b'{"a": 1}\n{"b"')
    os.write(write, b': 2}\n{"c": 3}')
    os.close(write)
    target = RotatingFile(tmp_path / "gateway.log", max_bytes=1000, backups=1)
    assert copy(read, target) == 0
    target.close()
    assert (tmp_path / "gateway.log").read_bytes() == b'{"a": 1}\n{"b": 2}\n{"c": 3}'


def test_the_writer_ignores_sigterm_and_ends_with_its_input(tmp_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-m", "serving.log_file", str(tmp_path / "gateway.log"), "--max-bytes", "1000"],
        stdin=subprocess.PIPE,
    )
    assert writer.stdin is not None
    writer.stdin.write(b"before the signal\n")
    writer.stdin.flush()
    log = tmp_path / "gateway.log"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (log.exists() and log.read_bytes()):  # running, signals set
        time.sleep(0.05)
    writer.terminate()  # a stop of the whole process group: the writer outlives it to write the workers' last lines
    writer.stdin.write(b"after the signal\n")
    writer.stdin.close()
    assert writer.wait(10) == 0
    assert (tmp_path / "gateway.log").read_bytes() == b"before the signal\nafter the signal\n"


def test_an_unwritable_path_is_named_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "serving.log_file", str(tmp_path / "missing" / "gateway.log")],
        input=b"", capture_output=True,
    )  # fmt: skip
    assert result.returncode == 2 and b"Traceback" not in result.stderr
    assert result.stderr.startswith(b"error: ") and b"missing" in result.stderr
