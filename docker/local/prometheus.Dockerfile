# Stand-in for prom/prometheus where no registry can be reached: Debian bookworm's Prometheus 2.42, with the same
# entrypoint (the compose stack passes only flags), data folder (/prometheus, user nobody) and a GET-capable wget for
# the health check.
ARG BASE_IMAGE=local/python:3.11-bookworm
FROM ${BASE_IMAGE}
# Unpinned on purpose: a stand-in is whatever Debian bookworm ships now (its security updates included).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus wget \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
    && install -d -o nobody -g nogroup /prometheus
WORKDIR /prometheus
USER 65534:65534
EXPOSE 9090
HEALTHCHECK --interval=15s --timeout=5s --retries=5 CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9090/-/healthy"]
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
