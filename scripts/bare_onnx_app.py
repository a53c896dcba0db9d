"""The benchmark's ceiling: a bare Flask app that only parses column arrays and runs the ONNX model.

BARE_ONNX_PATH=/path/model.onnx gunicorn -w 2 -b 127.0.0.1:8003 scripts.bare_onnx_app:app
"""

import os

import numpy as np
import onnxruntime as ort
from flask import Flask, jsonify, request

options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(os.environ["BARE_ONNX_PATH"], options, providers=["CPUExecutionProvider"])
kinds = {i.name: i.type for i in session.get_inputs()}
app = Flask(__name__)


@app.get("/ping")
def ping():
    return "ok"


@app.post("/invocations")
def invocations():
    columns = request.get_json()["inputs"]
    feed = {
        name: np.asarray(values, dtype=np.float32 if kind == "tensor(float)" else object)
        for name, values in columns.items()
        for kind in [kinds[name]]
    }
    (probabilities,) = session.run(["probabilities"], feed)
    return jsonify({"predictions": probabilities[:, 1].tolist()})
