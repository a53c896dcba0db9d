"""`make stop` signals only what the local helpers started (scripts/pidfile.py): real processes, real signals."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from scripts import pidfile


def sleeper(**options: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], **options)  # type: ignore[call-overload]


def state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return None


def test_a_recorded_process_is_stopped_and_its_file_removed(tmp_path: Path) -> None:
    process = sleeper()
    pid_file = tmp_path / "gateway.pid"
    pidfile.record(pid_file, process.pid)
    assert pidfile.recorded(pid_file) == process.pid
    assert pidfile.stop(pid_file, "gateway") == f"stopped gateway (pid {process.pid})"
    assert process.wait(5) != 0 and not pid_file.exists()


def test_a_stale_file_naming_another_process_signals_nothing(tmp_path: Path) -> None:
    bystander = sleeper()  # holds a pid the file names, but is not the process the file recorded
    pid_file = tmp_path / "gateway.pid"
    pid_file.write_text(f"{bystander.pid} 1\n")  # started at another time than the bystander
    try:
        message = pidfile.stop(pid_file, "gateway")
        time.sleep(0.2)
        assert bystander.poll() is None, "a process the file did not record was signalled"
        assert "gone: nothing signalled" in message and not pid_file.exists()
        pid_file.write_text(f"{bystander.pid}\n")  # a bare pid, as older versions wrote: cannot be trusted either
        assert "nothing signalled" in pidfile.stop(pid_file, "gateway")
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_whole_group_is_stopped_and_a_missing_file_is_said(tmp_path: Path) -> None:
    leader = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
         "'import time; time.sleep(60)']); time.sleep(60)"],
        start_new_session=True,
    )  # fmt: skip
    pid_file = tmp_path / "standalone.pid"
    pidfile.record(pid_file, leader.pid)
    deadline = time.monotonic() + 10  # the child starts when the leader's interpreter has: slow on a busy machine
    while True:
        children = subprocess.run(["pgrep", "-g", str(leader.pid)], capture_output=True, text=True).stdout.split()
        if len(children) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(children) == 2
    assert pidfile.main(["stop", str(pid_file), "--name", "Airflow", "--group"]) == 0
    leader.wait(5)
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-g", str(leader.pid)], capture_output=True, text=True).stdout.split()
    # The child is gone too (a zombie at most, until this machine's init reaps it).
    assert all(state(int(pid)) in {"Z", None} for pid in left), left
    assert pidfile.stop(pid_file, "Airflow") == f"Airflow: not started here (no {pid_file})"
    assert pidfile.main(["alive", str(pid_file)]) == 1
