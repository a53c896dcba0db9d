"""Where the microseconds of one gateway request go: the gateway's own app in-process (real Redis, the registered
production version), called as a WSGI server calls it, sampled by pyinstrument, each sample charged to one stage.

    .venv/bin/python scripts/profile_request.py --tracking-uri http://127.0.0.1:5000 --redis-url redis://127.0.0.1:6379/0

A sample is charged to the first stage found walking its stack from the innermost frame outwards (ONNX Runtime's
call inside the predictor is "ORT", a numpy call inside validation is "validation"). Each stage's share of the samples
is scaled to the wall time per request measured without the profiler (sampling inflates small calls). Prints a
Markdown table of microseconds per request by stage for /predict_ab with one row, through the scoring fast path (as
served) and through the Flask app alone (serving/fast_path.py's fallback), and the bare Flask + ONNX app's wall time
(scripts/bare_onnx_app.py) beside them; docs/benchmarks.md records a run. The HTTP server's own share is not in it:
that is what the wrk runs add.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ROW = {"values": [9, "rent", 60, 30, "married", "no", "freelance", 73, 129.0, 0.0, 0.0, 800, 846]}

# (stage, test on "function\0file") in the order a sample's frames are tried, innermost frame first.
STAGES: list[tuple[str, Callable[[str, str], bool]]] = [
    ("ORT session.run", lambda f, p: "onnxruntime" in p),
    ("request body: JSON parse", lambda f, p: p.endswith("fast_json.py") and f == "loads"),
    ("response: JSON out", lambda f, p: p.endswith("fast_json.py") or (f == "jsonify" and "flask" in p)),
    ("request body: model check (pydantic)", lambda f, p: "pydantic" in p),
    ("validation + feeds", lambda f, p: p.endswith("serving/validation.py")),
    ("A/B routing", lambda f, p: p.endswith("serving/router.py")),
    ("score points, bands", lambda f, p: p.endswith("scoring/points.py") or f == "_annotate"),
    ("prediction stream (queue)", lambda f, p: p.endswith("serving/prediction_log.py")),
    ("metrics", lambda f, p: "prometheus_client" in p or p.endswith("serving/metrics.py") or f == "_record"),
    ("access log", lambda f, p: p.endswith("serving/logs.py")),
    ("request id, latency, counter", lambda f, p: p.endswith("serving/telemetry.py")),
    # orjson.loads is a C call without a frame of its own: the fast path's parse is charged here.
    ("fast path (body read, JSON parse, WSGI glue)", lambda f, p: p.endswith("serving/fast_path.py")),
    ("body limit hook", lambda f, p: p.endswith("serving/body_limit.py")),
    ("predictor (rest)", lambda f, p: p.endswith("serving/predictor.py") or p.endswith("serving/model_store.py")),
    ("route (response dict)", lambda f, p: p.endswith("serving/routes/prediction.py")),
    ("flask-openapi3 (request model)", lambda f, p: "flask_openapi3" in p),
    ("Flask + Werkzeug (routing, request, response)", lambda f, p: "flask" in p or "werkzeug" in p),
]
OTHER = "other (interpreter, WSGI glue)"


def stage_of(stack: Iterable[str]) -> str:
    """The stage of one sample: its frames are identifiers "function\\0file\\0line...", outermost first."""
    for identifier in reversed(list(stack)):
        function, _, rest = identifier.partition("\x00")
        path = rest.partition("\x00")[0]
        for stage, matches in STAGES:
            if matches(function, path):
                return stage
    return OTHER


def wsgi_caller(app: Callable, path: str, body: bytes) -> Callable[[], int]:
    """One request as a WSGI server makes it (no test client in between); returns the status code."""
    base = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    status: list[str] = []

    def start_response(line: str, headers: list, exc_info: object = None) -> None:
        status.append(line)

    def call() -> int:
        status.clear()
        for _ in app({**base, "wsgi.input": io.BytesIO(body)}, start_response):
            pass
        return int(status[0][:3])

    return call


def profile(call: Callable[[], int], requests: int, interval_s: float) -> tuple[Counter[str], float]:
    """Seconds per stage over `requests` calls, and the wall time per request without the profiler."""
    from pyinstrument import Profiler

    for _ in range(500):  # warm: caches, label children, the log's writer thread
        assert call() == 200
    started = time.perf_counter()
    for _ in range(requests):
        call()
    unprofiled = (time.perf_counter() - started) / requests
    profiler = Profiler(interval=interval_s, async_mode="disabled")
    profiler.start()
    for _ in range(requests):
        call()
    session = profiler.stop()
    stages: Counter[str] = Counter()
    for stack, seconds in session.frame_records:
        stages[stage_of(stack)] += seconds
    return stages, unprofiled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000"))
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--model", default="credit-scoring")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--interval-us", type=float, default=100)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from mlflow.tracking import MlflowClient

    from registry.resolve import load_version
    from registry.settings import RegistrySettings
    from scripts.gateway_process import in_process_gateway
    from serving.logs import AccessLog
    from serving.service import gateway_of

    with in_process_gateway(
        arguments.tracking_uri,
        arguments.model,
        arguments.redis_url,
        prediction_stream="credit-scoring:predictions:profile",  # never the drift job's stream
    ) as (app, settings):
        logging.getLogger("serving.access").setLevel(logging.INFO)
        # The access line goes where a server's stdout would: a file, not this terminal.
        sink = open(os.devnull, "wb")  # closed below
        gateway_of(app).telemetry.access_log = AccessLog(sink)
        client = MlflowClient(arguments.tracking_uri)
        version = client.get_model_version_by_alias(arguments.model, "production").version
        production = load_version(
            client, arguments.model, version, RegistrySettings.of(settings, settings.model_cache_dir)
        )
        body = json.dumps({"batch": [ROW]}).encode()
        interval_s = arguments.interval_us / 1e6
        profiles = {
            "fast path (as served)": profile(wsgi_caller(app, "/predict_ab", body), arguments.requests, interval_s),
            "Flask app alone": profile(wsgi_caller(app.wsgi_app.flask_app, "/predict_ab", body), arguments.requests,
                                       interval_s),
        }  # fmt: skip
        bare = _bare_wall_time(production.onnx_path, production.feature_schema.features,
                               set(production.feature_schema.categorical), arguments.requests)  # fmt: skip
        sink.close()
    print(table(profiles, bare))
    return 0


def _bare_wall_time(onnx_path: Path, features: list[str], categorical: set[str], requests: int) -> float:
    """The bare Flask + ONNX app (scripts/bare_onnx_app.py) on the same version's graph, per request, in-process."""
    os.environ["BARE_ONNX_PATH"] = str(onnx_path)
    from scripts import bare_onnx_app

    row = dict(zip(features, ROW["values"], strict=True))
    inputs = {name: [[str(row[name]) if name in categorical else row[name]]] for name in features}
    call = wsgi_caller(bare_onnx_app.app, "/invocations", json.dumps({"inputs": inputs}).encode())
    for _ in range(500):
        assert call() == 200
    started = time.perf_counter()
    for _ in range(requests):
        call()
    return (time.perf_counter() - started) / requests


def table(profiles: dict[str, tuple[Counter[str], float]], bare_s: float) -> str:
    """µs per request by stage (each profile's sample shares scaled to its unprofiled wall time), largest first."""
    names = list(profiles)
    scaled = {
        name: {stage: seconds / sum(stages.values()) * wall * 1e6 for stage, seconds in stages.items()}
        for name, (stages, wall) in profiles.items()
    }
    order = sorted(
        {stage for stages in scaled.values() for stage in stages}, key=lambda s: -scaled[names[-1]].get(s, 0)
    )
    lines = [
        "/predict_ab, one row, in-process (µs per request; wall time without the profiler, split by pyinstrument's "
        f"samples); the bare Flask + ONNX app: {bare_s * 1e6:.0f} µs",
        "",
        "| stage | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for stage in order:
        lines.append(f"| {stage} | " + " | ".join(f"{scaled[n].get(stage, 0):.1f}" for n in names) + " |")
    lines.append("| **total** | " + " | ".join(f"**{profiles[n][1] * 1e6:.0f}**" for n in names) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
