# Developer shortcuts; every target is a thin wrapper over scripts/ so the README's commands stay the source of truth.
.DEFAULT_GOAL := help
SHELL := /bin/bash
PORT ?= 5000
STATE ?= .mlflow
SERVING_PORT ?= 8000
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: soak profile-request compose-test images gateway-memory notebooks help venv run test test-fast lint format server stop-server serve stop lock time-main bench clean bench-batch bench-explain monitoring drift drift-shifted airflow stop-airflow

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

venv: ## Create .venv from requirements.lock (only when the lock changed)
	scripts/bootstrap.sh

run: ## README command 1: start the local tracking server and run the whole pipeline
	MLFLOW_PORT=$(PORT) MLFLOW_STATE_DIR=$(STATE) scripts/run-main.sh

test: ## README command 2: lint + the whole test suite
	scripts/test.sh

test-fast: venv ## Unit tests only (no `mlflow run` subprocesses)
	python -m pytest -m "not integration"

lint: venv ## ruff check + format check + mypy (strict for scoring, registry, serving, monitoring)
	ruff check . && ruff format --check . && mypy

format: venv ## ruff format + autofix
	ruff format . && ruff check --fix .

server: venv ## Start the local MLflow tracking server on $(PORT) (state in $(STATE))
	python scripts/tracking_server.py start --root $(STATE) --port $(PORT)

stop-server: venv ## Stop the server started by `make server` / `make run`
	python scripts/tracking_server.py stop --root $(STATE)

serve: venv ## Run the gateway in the foreground (granian, 2 workers; SERVING_SERVER=gunicorn for gunicorn) against $$MLFLOW_TRACKING_URI and $$REDIS_URL
	python -m serving

monitoring: venv ## Start Prometheus + Pushgateway on 127.0.0.1:9090/9091 scraping the gateway and tracking server (state in .monitoring)
	python scripts/local_monitoring.py start --state .monitoring --gateway 127.0.0.1:$(SERVING_PORT) --mlflow 127.0.0.1:$(PORT)

drift: venv ## Drift report of the gateway's prediction stream (MLflow experiment "monitoring", pushed to `make monitoring`'s Pushgateway); needs `make run`
	MLFLOW_TRACKING_URI=http://127.0.0.1:$(PORT) REDIS_URL=$$(python scripts/local_redis.py ensure --state .redis) \
		MONITORING_PUSHGATEWAY_URL=$${MONITORING_PUSHGATEWAY_URL:-$$(python scripts/local_monitoring.py pushgateway-url)} \
		python -m monitoring.drift

drift-shifted: venv ## Drift report of a shifted copy of the data (income halved, a new housing category): drift flagged
	python scripts/shifted_applicants.py .monitoring/shifted_applicants.csv
	MLFLOW_TRACKING_URI=http://127.0.0.1:$(PORT) \
		MONITORING_PUSHGATEWAY_URL=$${MONITORING_PUSHGATEWAY_URL:-$$(python scripts/local_monitoring.py pushgateway-url)} \
		python -m monitoring.drift --file .monitoring/shifted_applicants.csv

stop: venv ## Stop what `make run`, `make monitoring` and `make airflow` started (only while the recorded process still runs): gateway, Airflow, local Redis, tracking server, Prometheus
	python scripts/pidfile.py stop .gateway/gateway.pid --name gateway
	python scripts/pidfile.py stop .airflow/standalone.pid --name Airflow --group
	python scripts/local_monitoring.py stop --state .monitoring
	python scripts/local_redis.py stop --state .redis
	python scripts/tracking_server.py stop --root $(STATE)

airflow: venv ## Airflow 3 (standalone: scheduler, API/UI on 127.0.0.1:8080) running airflow/dags against `make run`'s stack (state in .airflow)
	MLFLOW_PORT=$(PORT) scripts/local_airflow.sh

stop-airflow: venv ## Stop what `make airflow` started (only while the recorded process still runs)
	python scripts/pidfile.py stop .airflow/standalone.pid --name Airflow --group

compose-test: ## The container tier: install Docker if missing, build every image, run the compose stack end to end (tests/compose; root)
	scripts/compose-test.sh

images: venv ## Build the stack's images (local base and stand-ins where nothing can be pulled); print sizes, build times, a code-only rebuild
	python -m scripts.container_images --rebuild-after-code-change

notebooks: venv ## Open notebooks/ in JupyterLab (127.0.0.1:8888) against the tracking server on $(PORT)
	PYTHONPATH=$(CURDIR) MLFLOW_TRACKING_URI=$${MLFLOW_TRACKING_URI:-http://127.0.0.1:$(PORT)} \
		jupyter lab --ip 127.0.0.1 --port 8888 --no-browser $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/

lock: venv ## Re-resolve the lock files (full, serving-only, pipeline, validators) from pyproject.toml
	scripts/lock.sh

gateway-memory: venv ## Worker RSS and installed size: full .venv vs serving-only .venv-serving (needs `make run` first)
	scripts/bootstrap.sh serving
	python scripts/gateway_memory.py --tracking-uri http://127.0.0.1:$(PORT) --redis-url $$(python scripts/local_redis.py ensure --state .redis)

time-main: venv ## Time `mlflow run . -e main` 3 times against a running server (issue target: median <= 90 s)
	python scripts/time_main.py --tracking-uri http://127.0.0.1:$(PORT) --rounds 3

bench-batch: venv ## Portfolio scoring: bare ORT vs local engine vs Spark vs mlflow.pyfunc on a 5 M-row synthetic book, RSS at 20 M (needs `make run`; ~15 min)
	python scripts/bench_batch.py --tracking-uri http://127.0.0.1:$(PORT)

bench-explain: venv ## One row in-process with and without reason codes, and the explainer alone (needs `make run`; ~1 min)
	python scripts/bench_explain.py --tracking-uri http://127.0.0.1:$(PORT)

bench: venv ## Gateway vs mlflow models serve vs bare Flask+ONNX, on granian and gunicorn, kept-alive and new connections (needs wrk and `make run`; ~10 min)
	python scripts/bench_gateway.py --tracking-uri http://127.0.0.1:$(PORT) --duration 8 --rounds 2

soak: venv ## One hour of 20-row bodies at 8 kept-alive connections: worker RSS, Redis, stream, p99 per 5 min, log size; plot in .soak (needs wrk and `make run`; not in CI)
	python scripts/soak.py --tracking-uri http://127.0.0.1:$(PORT) --redis-url $$(python scripts/local_redis.py ensure --state .redis) --minutes 60 --output .soak

profile-request: venv ## Where one /predict_ab request's microseconds go, in-process under pyinstrument (needs `make run`)
	python scripts/profile_request.py --tracking-uri http://127.0.0.1:$(PORT) --redis-url $$(python scripts/local_redis.py ensure --state .redis)

clean: ## Remove caches (keeps .venv and the tracking server state)
	rm -rf .pytest_cache .ruff_cache; find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
