# Stand-in for the redis image where no registry can be reached: Debian bookworm's Redis 7.0, run as the redis user
# with its data in /data (the compose stack passes the whole command line: redis-server --requirepass …).
ARG BASE_IMAGE=local/python:3.11-bookworm
FROM ${BASE_IMAGE}
# Unpinned on purpose: a stand-in is whatever Debian bookworm ships now (its security updates included).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
    && install -d -o redis -g redis /data
WORKDIR /data
# The user the package created (its uid is Debian's choice, so a name).
# hadolint ignore=DL3066
USER redis
EXPOSE 6379
HEALTHCHECK --interval=5s --timeout=3s --retries=20 CMD ["redis-cli", "ping"]
CMD ["redis-server", "--protected-mode", "no"]
