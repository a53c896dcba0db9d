# Stand-in for prom/pushgateway where no registry can be reached: Debian bookworm's Pushgateway 1.5 with the same
# entrypoint and a GET-capable wget for the health check (it answers HEAD with 405).
ARG BASE_IMAGE=local/python:3.11-bookworm
FROM ${BASE_IMAGE}
# Unpinned on purpose: a stand-in is whatever Debian bookworm ships now (its security updates included).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus-pushgateway wget \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/*
USER 65534:65534
EXPOSE 9091
# GET: wget --spider sends HEAD, which Pushgateway 1.5 answers with 405.
HEALTHCHECK --interval=15s --timeout=5s --retries=5 CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9091/-/healthy"]
ENTRYPOINT ["/usr/bin/prometheus-pushgateway"]
