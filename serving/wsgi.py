"""WSGI entry point (one per server worker): JSON logs, the app, models loaded and polled in this process."""

import atexit
import gc

from serving.app import create_app, start_serving, stop_serving
from serving.logs import configure_json_logging
from serving.metrics import forget_dead_workers, forget_this_worker

configure_json_logging()
forget_dead_workers()
app = create_app()
start_serving(app)
# A worker's exit (SIGTERM, a reload) sends what its prediction log still holds. Under gunicorn its worker_exit hook
# does so too (the second call finds nothing queued).
atexit.register(forget_this_worker)
atexit.register(stop_serving, app)  # atexit runs the last registered first: the log is flushed before the rest
# MLflow, pandas and friends leave many long-lived objects; full collections walking them showed up as the p99 of
# single-row requests (docs/serving.md). Frozen, they are skipped by every later collection (garbage collected first,
# so that start-up leftovers are not kept forever).
gc.collect()
gc.freeze()
