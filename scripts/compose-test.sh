#!/usr/bin/env bash
# The container tier (`make compose-test`; .ci/run runs it after the test suite): build every image and run the compose
# stack end to end (tests/compose), on a machine that has nothing of it installed. Run it as root, or as a user of the
# `docker` group with password-less sudo (for apt and dockerd).
#   1. Debian's docker.io (engine and client) when no engine answers and none is installed, docker-compose (1.29;
#      compose v2 is used instead where its plugin answers) and debootstrap (for the local Python base) when missing;
#   2. a Docker engine: the one that answers, else a `dockerd` started here and stopped again on exit (only that one);
#   3. .venv (scripts/bootstrap.sh), then pytest on tests/compose, which builds the images (the local Python base and
#      stand-ins where no registry can be pulled from, the host's CA bundle for their build stages), starts the stack,
#      checks it and tears it down.
# Extra arguments go to pytest. A failure ends with one line starting "compose-test:" naming what failed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "compose-test: $*" >&2
    exit 1
}

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || no_root=yes
    as_root=(sudo -n)
fi

engine_answers() { docker info >/dev/null 2>&1; }

missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker.io)
if [ ${#missing[@]} -eq 0 ] && ! engine_answers && ! command -v dockerd >/dev/null 2>&1; then
    missing+=(docker.io)
fi
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    [ -z "${no_root:-}" ] || fail "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
    command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]} and no apt-get to install them with"
    echo "compose-test: installing ${missing[*]}"
    scripts/apt-install.sh "${missing[@]}" >/dev/null || fail "apt-get install ${missing[*]} failed"
fi

started_engine=
engine_log=
stop_engine() {
    [ -n "$started_engine" ] || return 0
    echo "compose-test: stopping the dockerd it started (pid $started_engine)"
    "${as_root[@]}" kill "$started_engine" 2>/dev/null || true
    for _ in $(seq 30); do
        "${as_root[@]}" kill -0 "$started_engine" 2>/dev/null || break
        sleep 1
    done
    if "${as_root[@]}" kill -0 "$started_engine" 2>/dev/null; then
        echo "compose-test: dockerd (pid $started_engine) did not stop in 30 s: killing it" >&2
        "${as_root[@]}" kill -KILL "$started_engine" 2>/dev/null || true
    fi
    rm -f "$engine_log"
}
if ! engine_answers; then
    [ -z "${no_root:-}" ] || fail "no Docker engine answers, and starting dockerd needs root"
    engine_log=$(mktemp "${TMPDIR:-/tmp}/dockerd.XXXXXX")
    echo "compose-test: no Docker engine answers; starting dockerd (log $engine_log)"
    "${as_root[@]}" dockerd >"$engine_log" 2>&1 &
    started_engine=$!
    trap stop_engine EXIT
    for _ in $(seq 60); do
        engine_answers && break
        "${as_root[@]}" kill -0 "$started_engine" 2>/dev/null || break
        sleep 1
    done
    if ! engine_answers; then
        if "${as_root[@]}" docker info >/dev/null 2>&1; then
            fail "dockerd runs, but $(id -un) may not use it: add the user to the docker group, or run as root"
        fi
        fail "dockerd did not start; last lines of its log:
$(tail -n 20 "$engine_log")"
    fi
fi

scripts/bootstrap.sh
failure_file=$(mktemp "${TMPDIR:-/tmp}/compose-test-failure.XXXXXX")
export CREDIT_COMPOSE_TEST=1 MLFLOW_DISABLE_TELEMETRY=true COMPOSE_TEST_FAILURE_FILE=$failure_file
# -x: the stack is one fixture of the session; once it failed, every later check would only repeat that.
if ! .venv/bin/python -m pytest tests/compose -x -p no:cacheprovider "$@"; then
    # What failed first, in one line (tests/compose/conftest.py writes it): the stack itself, or a check.
    reason=$(head -n 1 "$failure_file")
    rm -f "$failure_file"
    fail "${reason:-tests/compose failed (see above)}"
fi
rm -f "$failure_file"
