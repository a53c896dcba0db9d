# syntax=docker/dockerfile:1
# The Airflow image: Airflow 3 (api-server, scheduler, dag-processor, triggerer; LocalExecutor) with the pipeline's
# packages, so that the DAGs' tasks call orchestration/ (and through it steps/, registry/, monitoring/) in-process. Installed from
# requirements-pipeline.lock (the `pipeline` and `airflow` extras). The DAGs are mounted at /opt/airflow/dags.
#   docker build -f docker/airflow.Dockerfile -t credit-scoring/airflow .
# The base is pinned by tag and by the digest of its multi-architecture index (docs/deployment.md).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install --no-cache-dir "uv==0.13.9" \
    && python -m venv /opt/venv
COPY requirements-pipeline.lock /tmp/requirements-pipeline.lock
RUN uv pip install --python /opt/venv/bin/python --no-cache --only-binary :all: \
        -r /tmp/requirements-pipeline.lock
WORKDIR /opt/credit-scoring
COPY MLproject python_env.yaml ./
COPY data/ data/
COPY docker/airflow-init.sh docker/airflow-init.sh
COPY scoring/ scoring/
COPY registry/ registry/
COPY steps/ steps/
COPY monitoring/ monitoring/
COPY orchestration/ orchestration/
RUN /opt/venv/bin/python -m compileall -q scoring registry steps monitoring orchestration

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 airflow \
    && useradd --system --uid 10001 --gid airflow --home-dir /opt/airflow --shell /usr/sbin/nologin airflow \
    && install -d -o airflow -g airflow /opt/airflow /opt/airflow/dags /opt/airflow/logs /opt/airflow/auth
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/credit-scoring /opt/credit-scoring
WORKDIR /opt/airflow
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/credit-scoring \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AIRFLOW_HOME=/opt/airflow \
    TMPDIR=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    REGISTRY_CACHE_DIR=/tmp/credit-scoring/models \
    MLFLOW_DISABLE_TELEMETRY=true
USER 10001:10001
EXPOSE 8080
# The api-server's health; the scheduler, dag-processor and triggerer get their own checks in compose/.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=5 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/api/v2/monitor/health', timeout=5)"]
ENTRYPOINT []
CMD ["airflow", "api-server", "--port", "8080"]
