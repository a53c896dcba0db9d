# The gateway image: granian (or gunicorn) + the Flask gateway (serving/) with the registry client (registry/) and the shared
# scoring contract (scoring/), installed from requirements-serving.lock: mlflow-skinny, onnxruntime, Flask, redis.
# Neither the training stack (mlflow, pandas, scikit-learn, matplotlib, evidently) nor Airflow is in it.
#   docker build -f docker/gateway.Dockerfile -t credit-scoring/gateway .
# The base is pinned by tag and by the digest of its multi-architecture index (docs/deployment.md).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
# Wheels only (docker/build-venv.sh): no compiler is needed, and none is in either stage. docker/build-ca/ holds the
# CA bundle of a TLS-re-signing proxy when there is one (scripts/container_images.py); only this stage sees it.
COPY docker/build-ca/ /tmp/build-ca/
COPY docker/build-venv.sh docker/byte-compile.sh /tmp/
COPY requirements-serving.lock /tmp/requirements-serving.lock
RUN /tmp/build-venv.sh /tmp/requirements-serving.lock \
    # onnxruntime's C library (for C/C++ callers: its Python binding links its own copy, `ldd` shows no use of it)
    # and its offline tools (quantization, transformer optimisers): 44 MB the gateway never loads. onnx's backend test
    # data and numpy's own test suites: 34 MB more that no import reaches (room for granian's 22 MB server binary).
    && site=/opt/venv/lib/python3.11/site-packages && ort=$site/onnxruntime \
    && rm -rf "$ort"/capi/libonnxruntime.so.* "$ort"/quantization "$ort"/tools "$ort"/transformers \
    && rm -rf "$site"/onnx/backend/test \
    && find "$site"/numpy -type d -name tests -prune -exec rm -rf {} +
WORKDIR /opt/credit-scoring
COPY scoring/ scoring/
COPY registry/ registry/
COPY serving/ serving/
# What the server and a worker import: granian (the default) and gunicorn's sync worker, the app, the registry
# client and MLflow's artifact download.
RUN /tmp/byte-compile.sh "scoring registry serving" serving.app serving.server serving.gunicorn_conf granian \
        granian.server.mp granian.wsgi granian.log gunicorn.app.wsgiapp gunicorn.workers.sync gunicorn.glogging \
        mlflow.artifacts mlflow.store.artifact.mlflow_artifacts_repo mlflow.store.artifact.http_artifact_repo

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/credit-scoring /opt/credit-scoring
WORKDIR /opt/credit-scoring
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/credit-scoring \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    SERVING_BIND=0.0.0.0:8000 \
    SERVING_MODEL_CACHE_DIR=/tmp/models \
    PROMETHEUS_MULTIPROC_DIR=/tmp/gateway-metrics
USER 10001:10001
EXPOSE 8000
# /health: the process answers. Orchestrators that route traffic ask /ready instead (compose/, deploy/kubernetes/).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]
ENTRYPOINT ["python", "-m", "serving"]
