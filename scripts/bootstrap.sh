#!/usr/bin/env bash
# Create .venv with the locked dependencies. Idempotent: re-installs only when requirements.lock changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))' 2>/dev/null; then
    echo "error: bootstrap: Python 3.11 or 3.12 is needed (tried '$python'; set PYTHON=/path/to/python3.11)" >&2
    exit 2
fi
if [ ! -x .venv/bin/python ]; then
    echo "bootstrap: creating .venv with $("$python" --version)"
    "$python" -m venv .venv
fi

stamp=.venv/.requirements-lock.sha256
wanted=$(.venv/bin/python -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' requirements.lock)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
    echo "bootstrap: installing locked dependencies into .venv (uv; about a minute on a fresh machine)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"
    # Bytecode compiled up front: where PYTHONDONTWRITEBYTECODE is set, importing mlflow otherwise takes ~8 s.
    .venv/bin/uv pip install --quiet --python .venv/bin/python --compile-bytecode -r requirements.lock
    echo "$wanted" >"$stamp"
fi
