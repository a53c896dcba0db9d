# Stand-in for the postgres image where no registry can be reached: Debian bookworm's PostgreSQL 15 with the same
# interface the compose stack uses (POSTGRES_USER/POSTGRES_PASSWORD, /var/lib/postgresql/data,
# /docker-entrypoint-initdb.d/*.sh on the first start, pg_isready). Built by scripts/container_images.py on the local base.
ARG BASE_IMAGE=local/python:3.11-bookworm
FROM ${BASE_IMAGE}
# Unpinned on purpose: a stand-in is whatever Debian bookworm ships now (its security updates included).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /var/lib/postgresql/15 \
    && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
    && install -d -o postgres -g postgres /var/run/postgresql /docker-entrypoint-initdb.d
COPY docker/local/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
# The user the package created (its uid is Debian's choice, so a name).
# hadolint ignore=DL3066
USER postgres
EXPOSE 5432
HEALTHCHECK --interval=10s --timeout=5s --retries=10 CMD ["pg_isready", "--host", "127.0.0.1"]
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
