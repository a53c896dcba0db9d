"""Monitoring of the served model: the drift job (Evidently reports with credit PSI) and the Prometheus, Grafana and
Loki configuration that watch the gateway."""
