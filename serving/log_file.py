"""The gateway's log file, bounded: everything read from stdin is appended to a file that is rotated by size.

    python -m serving.log_file .gateway/gateway.log --max-bytes 52428800 --backups 3

serving/server.py starts it with SERVING_LOG_FILE set, as the one writer every worker's output goes through (a pipe):
rotation then never races between processes. Files rotate at a line boundary (PATH -> PATH.1 -> ... -> PATH.N, the
oldest dropped), so the whole set stays within about (N + 1) x max-bytes. SIGTERM, SIGINT and SIGHUP are ignored: the
writer ends when the last writer of the pipe has closed it, after the last line (a stop of the server's whole
process group must not lose the lines its workers write while they drain).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 16


class RotatingFile:
    def __init__(self, path: Path, max_bytes: int, backups: int):
        self.path, self.max_bytes, self.backups = path, max_bytes, backups
        self._file: BinaryIO | None = self._open()

    def _open(self) -> BinaryIO:
        return self.path.open("ab", buffering=0)

    def write(self, data: bytes) -> None:
        """Append `data`, rotating first at the last line boundary that keeps the file within max_bytes."""
        file = self._file = self._file or self._open()
        while data:
            room = self.max_bytes - file.tell()
            if len(data) <= room:
                file.write(data)
                return
            cut = data.rfind(b"\n", 0, max(room, 0)) + 1
            if cut == 0 and file.tell() == 0:  # one line longer than a whole file: it gets a file of its own
                cut = data.find(b"\n") + 1 or len(data)
            file.write(data[:cut])
            file = self.rotate()
            data = data[cut:]

    def rotate(self) -> BinaryIO:
        if self._file is not None:
            self._file.close()
            self._file = None
        for number in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{number}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{number + 1}"))
        if self.path.exists():
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._file = self._open()
        return self._file

    def reopen(self) -> None:
        """After a failed write: the next write opens the file again (it may have been removed or rotated away)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        self._file = None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def copy(source: int, target: RotatingFile) -> int:
    """Copy from the file descriptor `source` until end of file, writing whole lines (a partial last line waits for
    the rest of it, or for the end); returns the bytes that could not be written.

    A failed write (a full disk, a rotation refused) is said once on stderr and the lines are dropped, but reading
    goes on: the server's workers must never block on a full pipe, and later writes are tried again."""
    partial = b""
    lost = 0

    def write(data: bytes) -> None:
        nonlocal lost
        try:
            target.write(data)
        except OSError as error:
            if not lost:
                sys.stderr.write(f"log file {target.path}: {error.strerror}: dropping lines until it can be written\n")
            lost += len(data)
            target.reopen()

    while chunk := os.read(source, CHUNK):
        data = partial + chunk
        end = data.rfind(b"\n") + 1
        partial = data[end:]
        if end:
            write(data[:end])
        if len(partial) > target.max_bytes:  # no newline for a whole file's worth: write it as it is
            write(partial)
            partial = b""
    if partial:
        write(partial)
    return lost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path)
    parser.add_argument("--max-bytes", type=int, default=50 << 20)
    parser.add_argument("--backups", type=int, default=3)
    arguments = parser.parse_args(argv)
    if arguments.max_bytes < 1 or arguments.backups < 1:
        parser.error("--max-bytes and --backups must be at least 1")
    for ignored in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(ignored, signal.SIG_IGN)
    try:
        target = RotatingFile(arguments.path, arguments.max_bytes, arguments.backups)
    except OSError as error:
        sys.stderr.write(f"error: {arguments.path}: {error.strerror}\n")
        return 2
    try:
        lost = copy(sys.stdin.fileno(), target)
    finally:
        target.close()
    if lost:
        sys.stderr.write(f"log file {arguments.path}: {lost} bytes could not be written\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
