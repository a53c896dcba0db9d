"""Pid files that name one process, not one number: the pid and the process's start time (/proc/<pid>/stat).

A pid file outlives its process (a crash, a reboot) and the number is handed to another process sooner or later;
`make stop` must then leave that process alone. Every local helper records what it starts here and signals it only
while the same process still holds the pid.
    python scripts/pidfile.py record PID FILE            # after starting PID (scripts/run-main.sh, local_airflow.sh)
    python scripts/pidfile.py stop FILE --name gateway [--group]
    python scripts/pidfile.py alive FILE                 # exit 0 while the recorded process runs
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None when no process has that pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22; the command name (field 2) may hold spaces and parentheses, so count from its closing one.
    return stat.rpartition(")")[2].split()[19]


def record(pid_file: Path, pid: int) -> None:
    started = start_time(pid)
    if started is None:
        raise ProcessLookupError(f"no process {pid} to record in {pid_file}")
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{pid} {started}\n")


def recorded(pid_file: Path) -> int | None:
    """The recorded pid while the same process still holds it; None for a missing, stale or unreadable file (a bare
    pid, as older versions wrote, cannot be told from a reused one either)."""
    try:
        pid_text, started = pid_file.read_text().split()
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    return pid if start_time(pid) == started else None


def stop(pid_file: Path, name: str, group: bool = False, timeout: float = 30.0) -> str:
    """SIGTERM the recorded process (its whole process group with `group`) if it is still the one recorded, wait for
    it (the group: every member) to exit, SIGKILL after `timeout` s, remove the file; returns what was done, in
    words."""
    if not pid_file.exists():
        return f"{name}: not started here (no {pid_file})"
    fields = pid_file.read_text().split()
    pid = recorded(pid_file)
    pid_file.unlink()
    if pid is None:
        if len(fields) == 1:  # written before pid files named the process: it may still run, or be another one
            return (f"{name}: {pid_file} held a bare pid ({fields[0]}) that cannot be told from a reused one: nothing "
                    "signalled, file removed; stop that process yourself if it is still the "
                    f"{name}")  # fmt: skip
        return f"{name}: {pid_file} named a process that is gone: nothing signalled, file removed"
    if group:
        stop_group(pid, timeout)
    else:
        _stop_one(pid, timeout)
    return f"stopped {name} (pid {pid})"


def _stop_one(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and start_time(pid) is not None and not _zombie(pid):
            time.sleep(0.1)
        if start_time(pid) is not None and not _zombie(pid):
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def stop_group(pid: int, timeout: float = 10.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the process group `pid` leads; SIGKILL it if any member is still there after `timeout` s.

    MLflow's queue consumers and Airflow's children can take far longer than their leader to act on SIGTERM. Pass
    `process` when the group's leader is a child of this process: until it is reaped it stays in the group as a
    zombie, and the wait would always last the whole timeout.
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None:
            process.poll()
        if not _group_running(pid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _group_running(pgid: int) -> bool:
    """Whether a member of the process group still runs (zombies, dead and waiting for a parent, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    recording = commands.add_parser("record", help="record PID (just started) in FILE")
    recording.add_argument("pid", type=int)
    recording.add_argument("file", type=Path)
    stopping = commands.add_parser("stop", help="stop the process FILE records, if it still runs")
    stopping.add_argument("file", type=Path)
    stopping.add_argument("--name", default="process")
    stopping.add_argument("--group", action="store_true", help="signal its whole process group")
    checking = commands.add_parser("alive", help="exit 0 while the process FILE records runs")
    checking.add_argument("file", type=Path)
    arguments = parser.parse_args(argv)
    if arguments.command == "record":
        try:
            record(arguments.file, arguments.pid)
        except ProcessLookupError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    if arguments.command == "alive":
        return 0 if recorded(arguments.file) is not None else 1
    print(stop(arguments.file, arguments.name, arguments.group))
    return 0


if __name__ == "__main__":
    sys.exit(main())
