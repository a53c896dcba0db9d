# syntax=docker/dockerfile:1
# The gateway image: gunicorn + the Flask gateway (serving/) with the registry client (registry/) and the shared
# scoring contract (scoring/), installed from requirements-serving.lock: mlflow-skinny, onnxruntime, Flask, redis.
# Neither the training stack (mlflow, pandas, scikit-learn, matplotlib, evidently) nor Airflow is in it.
#   docker build -f docker/gateway.Dockerfile -t credit-scoring/gateway .
# The base is pinned by tag and by the digest of its multi-architecture index (docs/deployment.md).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==0.13.9" \
    && python -m venv /opt/venv
COPY requirements-serving.lock /tmp/requirements-serving.lock
# Wheels only: no compiler is needed, and none is in either stage.
RUN uv pip install --python /opt/venv/bin/python --no-cache --only-binary :all: \
        -r /tmp/requirements-serving.lock
WORKDIR /opt/credit-scoring
COPY scoring/ scoring/
COPY registry/ registry/
COPY serving/ serving/
RUN /opt/venv/bin/python -m compileall -q scoring registry serving

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
