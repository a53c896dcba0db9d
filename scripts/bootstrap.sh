#!/usr/bin/env bash
# Create .venv with the locked dependencies. Idempotent: re-installs only when requirements.lock changed.
# Extra environments, named as arguments (scripts/test.sh asks for both):
#   serving   .venv-serving from requirements-serving.lock: the gateway's environment alone (what its image holds),
#             where tests/deploy checks that the gateway runs without the training stack
#   validate  .venv-validate from requirements-validate.lock: checkov, whose pins would constrain the pipeline's and
#             Airflow's environment (requirements-validate.in says why)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))' 2>/dev/null; then
    echo "error: bootstrap: Python 3.11 or 3.12 is needed (tried '$python'; set PYTHON=/path/to/python3.11)" >&2
    exit 2
fi

# install_locked VENV LOCK: (re)create VENV's packages from LOCK when LOCK changed since the last install.
install_locked() {
    local venv=$1 lock=$2 stamp wanted
    if [ ! -x "$venv/bin/python" ]; then
        echo "bootstrap: creating $venv with $("$python" --version)"
        "$python" -m venv "$venv"
    fi
    stamp=$venv/.requirements-lock.sha256
    wanted=$("$venv/bin/python" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$lock")
    if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
        echo "bootstrap: installing $lock into $venv (uv; about a minute on a fresh machine)"
        # sync, not install: a package dropped from the lock is removed too, so that .venv-serving stays what the
        # gateway image holds.
        .venv/bin/uv pip sync --quiet --python "$venv/bin/python" --compile-bytecode "$lock"
        echo "$wanted" >"$stamp"
    fi
}

if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $("$python" --version)"
    "$python" -m venv .venv
fi
# The uv of the images (docker/*.Dockerfile) and of requirements.lock (the dev extra), so that sync keeps it.
uv_version=0.13.9
if [ "$(.venv/bin/uv --version 2>/dev/null | cut -d' ' -f2)" != "$uv_version" ]; then
    .venv/bin/python -m pip --version >/dev/null 2>&1 || .venv/bin/python -m ensurepip --upgrade >/dev/null
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$uv_version"
fi
# Bytecode compiled up front: where PYTHONDONTWRITEBYTECODE is set, importing mlflow otherwise takes ~8 s.
install_locked .venv requirements.lock

for extra in "$@"; do
    case $extra in
        serving) install_locked .venv-serving requirements-serving.lock ;;
        validate) install_locked .venv-validate requirements-validate.lock ;;
        *) echo "error: bootstrap: unknown environment '$extra' (serving, validate)" >&2; exit 2 ;;
    esac
done
