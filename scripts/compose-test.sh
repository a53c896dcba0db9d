#!/usr/bin/env bash
# The container tier (`make compose-test`; .ci/run runs it after the test suite): build every image and run the compose
# stack end to end (tests/compose), on a machine that has nothing of it installed.
#   1. Debian's docker.io (engine and client), docker-compose (1.29; compose v2 is used instead where installed) and
#      debootstrap, when missing (root, or sudo without a password);
#   2. a Docker engine: the one that answers, else a `dockerd` started here and stopped again on exit (only that one);
#   3. the CA bundle that pip on this machine trusts, for the images' build stages (docker/build-ca/, git-ignored);
#   4. .venv (scripts/bootstrap.sh), then pytest on tests/compose, which builds the images (the local Python base and
#      stand-ins where no registry can be pulled from), starts the stack, checks it and tears it down.
# Extra arguments go to pytest. Every failure ends with one line starting "compose-test:".
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "compose-test: $*" >&2
    exit 1
}

as_root=()
if [ "$(id -u)" -ne 0 ]; then
    sudo -n true 2>/dev/null || as_root_missing=yes
    as_root=(sudo -n)
fi

missing=()
command -v docker >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    [ -z "${as_root_missing:-}" ] || fail "missing ${missing[*]}: install them (apt-get install ${missing[*]}) or run as root"
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
    rm -f "$engine_log"
}
if ! docker info >/dev/null 2>&1; then
    [ -z "${as_root_missing:-}" ] || fail "no Docker engine answers and starting dockerd needs root"
    engine_log=$(mktemp "${TMPDIR:-/tmp}/dockerd.XXXXXX")
    echo "compose-test: no Docker engine answers; starting dockerd (log $engine_log)"
    "${as_root[@]}" dockerd >"$engine_log" 2>&1 &
    started_engine=$!
    trap stop_engine EXIT
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        "${as_root[@]}" kill -0 "$started_engine" 2>/dev/null || break
        sleep 1
    done
    docker info >/dev/null 2>&1 || fail "dockerd did not start; last lines of its log:
$(tail -n 20 "$engine_log")"
fi

# The CA bundle pip trusts here (PIP_CERT, else pip's configured `cert`, else Python's default): the build stages
# trust it too, so that they reach PyPI through a proxy that re-signs TLS. Only build stages see it (docker/build-ca/).
bundle=${PIP_CERT:-}
[ -n "$bundle" ] || bundle=$(python3 -m pip config get global.cert 2>/dev/null || true)
[ -n "$bundle" ] || bundle=$(python3 -c 'import ssl; print(ssl.get_default_verify_paths().cafile or "")')
if [ -n "$bundle" ] && [ -s "$bundle" ]; then
    cp "$bundle" docker/build-ca/ca-certificates.crt
fi

scripts/bootstrap.sh
export CREDIT_COMPOSE_TEST=1 MLFLOW_DISABLE_TELEMETRY=true
.venv/bin/python -m pytest tests/compose -p no:cacheprovider "$@" || fail "tests/compose failed (see above)"
