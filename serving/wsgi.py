"""WSGI entry point (one per gunicorn worker): JSON logs, the app, models loaded and polled in this process."""

import gc

from serving.app import create_app, start_serving
from serving.logs import configure_json_logging

configure_json_logging()
app = create_app()
start_serving(app)
# MLflow, pandas and friends leave many long-lived objects; full collections walking them showed up as the p99 of
# single-row requests (docs/serving.md). Frozen, they are skipped by every later collection (garbage collected first,
# so that start-up leftovers are not kept forever).
gc.collect()
gc.freeze()
