# The Airflow image: Airflow 3 (api-server, scheduler, dag-processor, triggerer; LocalExecutor) with the pipeline's
# packages, so that the DAGs' tasks call orchestration/ (and through it steps/, registry/, monitoring/, portfolio/)
# in-process. Installed from requirements-pipeline.lock (the `pipeline` and `airflow` extras). The DAGs are mounted at
# /opt/airflow/dags.
#   docker build -f docker/airflow.Dockerfile -t credit-scoring/airflow .
# The base is pinned by tag and by the digest of its multi-architecture index (docs/deployment.md).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
# Wheels only (docker/build-venv.sh): no compiler is needed, and none is in either stage. docker/build-ca/ holds the
# CA bundle of a TLS-re-signing proxy when there is one (scripts/container_images.py); only this stage sees it.
COPY docker/build-ca/ /tmp/build-ca/
COPY docker/build-venv.sh docker/byte-compile.sh /tmp/
COPY requirements-pipeline.lock /tmp/requirements-pipeline.lock
RUN /tmp/build-venv.sh /tmp/requirements-pipeline.lock
WORKDIR /opt/credit-scoring
COPY MLproject python_env.yaml ./
COPY data/ data/
COPY docker/airflow-init.sh docker/airflow-init.sh
COPY scoring/ scoring/
COPY registry/ registry/
COPY steps/ steps/
COPY monitoring/ monitoring/
# The prediction stream's layout (serving.prediction_log), which the drift job reads.
COPY serving/ serving/
# The portfolio job (portfolio.job.score_portfolio), which credit_portfolio_score runs.
COPY portfolio/ portfolio/
COPY orchestration/ orchestration/
# What its processes import: Airflow's CLI, scheduler, api-server, dag-processor and triggerer, the Task SDK, and
# what the DAGs' tasks call (orchestration/ and, through it, the steps, the registry, the drift and portfolio jobs).
RUN /tmp/byte-compile.sh "scoring registry steps monitoring serving portfolio orchestration" airflow.cli.cli_parser \
        airflow.jobs.scheduler_job_runner airflow.jobs.triggerer_job_runner airflow.api_fastapi.app \
        airflow.dag_processing.manager airflow.sdk airflow.providers.standard.operators.hitl \
        orchestration.retrain orchestration.promotion orchestration.drift orchestration.portfolio \
        portfolio.local_engine steps.main evidently.presets psycopg

FROM ${PYTHON_IMAGE} AS runtime
# /data/portfolio: credit_portfolio_score's book and month folders (compose mounts the volume `portfolio-data` there;
# a new named volume takes the folders, and their owner, from the image).
RUN groupadd --system --gid 10001 airflow \
    && useradd --system --uid 10001 --gid airflow --home-dir /opt/airflow --shell /usr/sbin/nologin airflow \
    && install -d -o airflow -g airflow /opt/airflow /opt/airflow/dags /opt/airflow/logs /opt/airflow/auth \
        /data/portfolio/book /data/portfolio/scores
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
