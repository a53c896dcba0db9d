# The pipeline image: `mlflow run . -e main` (the trainer of compose/), `-e score` (portfolio scoring, local engine),
# the drift job, and the MLflow tracking server itself (`mlflow server`, PostgreSQL backend, artifacts on a volume or
# S3), installed from requirements-pipeline.lock.
#   docker build -f docker/trainer.Dockerfile -t credit-scoring/trainer .
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
COPY MLproject python_env.yaml conda.yaml requirements.lock ./
COPY data/ data/
COPY docker/trainer-entrypoint.sh docker/trainer-entrypoint.sh
# The basic-auth app's settings of the compose stack's `mlflow` service (MLFLOW_AUTH_CONFIG_PATH).
COPY docker/mlflow-auth.ini docker/mlflow-auth.ini
COPY scoring/ scoring/
COPY registry/ registry/
COPY steps/ steps/
COPY monitoring/ monitoring/
# The prediction stream's layout (serving.prediction_log), which the drift job reads.
COPY serving/ serving/
COPY portfolio/ portfolio/
# What its processes import: `mlflow run` and each step, the registry CLI, the drift and portfolio jobs, the server.
RUN /tmp/byte-compile.sh "scoring registry steps monitoring serving portfolio" steps.main steps.tune registry.cli \
        monitoring.drift monitoring.job portfolio.score portfolio.job portfolio.local_engine evidently.presets \
        registry.access mlflow.cli mlflow.projects mlflow.server.handlers mlflow.server.auth \
        mlflow.store.tracking.sqlalchemy_store psycopg

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /nonexistent --shell /usr/sbin/nologin app \
    && install -d -o app -g app /var/lib/mlflow/artifacts /var/lib/mlflow/auth /var/lib/mlflow/scrape
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/credit-scoring /opt/credit-scoring
WORKDIR /opt/credit-scoring
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/opt/credit-scoring \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    REGISTRY_CACHE_DIR=/tmp/credit-scoring/models \
    MLFLOW_DISABLE_TELEMETRY=true
USER 10001:10001
EXPOSE 5000
# Meaningful for the tracking server (`mlflow server` on 5000); the one-shot trainer exits before it matters.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=3)"]
CMD ["docker/trainer-entrypoint.sh"]
