#!/usr/bin/env bash
# The build stage of every image (docker/*.Dockerfile): install one lock file into /opt/venv with uv (wheels only, so
# no compiler anywhere) and drop what no container runs (pip, the packages' own test suites, type stubs). Nothing is
# byte-compiled here: docker/byte-compile.sh compiles what the image's entry points import, once the code is in.
#   docker/build-venv.sh /tmp/requirements-serving.lock
# A CA bundle in docker/build-ca/ca-certificates.crt (scripts/container_images.py copies the host's there where a proxy
# re-signs TLS) is trusted by pip and uv in this stage only; no runtime stage copies it.
set -euo pipefail
lock=$1
bundle=/tmp/build-ca/ca-certificates.crt
if [ -s "$bundle" ]; then
    export SSL_CERT_FILE=$bundle PIP_CERT=$bundle
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 UV_NO_CACHE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never

# uv in a throw-away venv of its own: neither it nor pip ends up in /opt/venv.
python -m venv /tmp/uv-venv
/tmp/uv-venv/bin/pip install --quiet "uv==0.13.9"
python -m venv --without-pip /opt/venv
/tmp/uv-venv/bin/uv pip install --python /opt/venv/bin/python --quiet --only-binary :all: -r "$lock"
rm -rf /tmp/uv-venv

# Test suites that ship inside wheels (tens of MB each for scipy, pandas, scikit-learn, statsmodels, pyarrow); only
# these packages', whose `tests` folders nothing imports at run time (Evidently's `tests` is a feature, kept).
site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for package in numpy pandas scipy sklearn statsmodels pyarrow matplotlib onnx libcst skops networkx mlflow; do
    [ -d "$site/$package" ] || continue
    find "$site/$package" -depth -type d \( -name tests -o -name test \) -exec rm -rf {} +
done
find "$site" -name '*.pyi' -delete
