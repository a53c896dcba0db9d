"""WSGI entry point (one per gunicorn worker): JSON logs, the app, models loaded and polled in this process."""

from serving.app import create_app, start_serving
from serving.logs import configure_json_logging

configure_json_logging()
app = create_app()
start_serving(app)
