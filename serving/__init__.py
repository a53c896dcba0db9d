"""The Flask gateway: serves the ONNX versions behind `production` and `staging` (A/B), with cache, metrics and docs."""
