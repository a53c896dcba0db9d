#!/usr/bin/env bash
# Build a Python 3.11 base image without any registry: debootstrap Debian bookworm (minbase + Debian's python3.11)
# into a temporary folder and `docker import` it. Used by scripts/container_images.py when the pinned python:3.11-slim
# base cannot be pulled; pass the result to the project's Dockerfiles with --build-arg PYTHON_IMAGE=<tag>.
#   docker/local/build-python-base.sh [TAG]        (default local/python:3.11-bookworm; root, debootstrap, docker)
# Debian's mirror is read over plain HTTP (apt checks the signatures), so no CA bundle goes into the image.
set -euo pipefail

tag=${1:-local/python:3.11-bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
rootfs=$(mktemp -d "${TMPDIR:-/tmp}/python-base.XXXXXX")
trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT

echo "python-base: debootstrap bookworm from $mirror into $rootfs"
debootstrap --variant=minbase \
    --include=python3,python3-venv,python3-pip,python-is-python3,ca-certificates \
    bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    echo "python-base: debootstrap failed; last lines of $rootfs.log:" >&2
    tail -n 20 "$rootfs.log" >&2
    exit 1
}
# The image's own pip installs into the system Python (uv, once, in build stages): lift Debian's PEP 668 marker.
rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
# Nothing a container needs: apt's package lists, docs, man pages, locales but C.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\n' "$mirror" "$mirror" >"$rootfs/etc/apt/sources.list"
# apt in later stages: no recommends, no docs.
printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' >"$rootfs/etc/apt/apt.conf.d/90container"

tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "debootstrap bookworm minbase + python3 (docker/local/build-python-base.sh)" \
    - "$tag" >/dev/null
echo "python-base: $tag ($(docker image inspect --format '{{.Size}}' "$tag" | awk '{printf "%d MB", $1 / 1e6}'))"
