#!/usr/bin/env bash
# The build stage's last step (docker/*.Dockerfile): byte-compile the project's code and every module that the image's
# entry points import, by importing them once. Compiling the whole venv instead would add ~315 MB of .pyc to the
# pipeline images (66 MB to the gateway's) for modules no process of theirs loads; a module left out is compiled
# in memory when first imported, as without any .pyc. PYTHONHASHSEED=0 keeps the files identical from build to build,
# so that a code change does not renew the venv layer of the runtime stage.
#   docker/byte-compile.sh "scoring registry serving" serving.app gunicorn.app.wsgiapp ...
set -euo pipefail
packages=$1
shift
scratch=$(mktemp -d)
# What some imports read: a writable matplotlib cache, the metrics folder of prometheus_client's multiprocess mode.
PYTHONHASHSEED=0 MPLCONFIGDIR=$scratch PROMETHEUS_MULTIPROC_DIR=$scratch AIRFLOW_HOME=$scratch \
    /opt/venv/bin/python -c 'import importlib, sys; [importlib.import_module(name) for name in sys.argv[1:]]' "$@"
# shellcheck disable=SC2086 # the package folders are one word each
PYTHONHASHSEED=0 /opt/venv/bin/python -m compileall -q $packages
rm -rf "$scratch"
