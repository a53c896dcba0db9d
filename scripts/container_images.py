"""The images compose/docker-compose.yml runs, built on this machine with the legacy builder (no buildx here).

The project's three (docker/*.Dockerfile) on the pinned Python base, or, when that cannot be pulled (no registry is
reachable), on a Debian bookworm base made with debootstrap (docker/local/build-python-base.sh); PostgreSQL, Redis,
Prometheus and the Pushgateway are the published images when they can be pulled, else stand-ins from Debian's packages
(docker/local/*.Dockerfile). Each multi-stage build also tags its build stage (`<image>-build`), which is the layer
cache of the next build; an image a rebuild replaces is removed, so no dangling image is left behind.

Used by tests/compose (`make compose-test`). As a command it builds everything and prints sizes and build times:
    python -m scripts.container_images [--rebuild-after-code-change]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
LOCAL_PYTHON_BASE = "local/python:3.11-bookworm"
# The compose file's image variable -> the stand-in's Dockerfile and tag (docker/local/).
STAND_INS = {
    "POSTGRES_IMAGE": ("docker/local/postgres.Dockerfile", "local/postgres:bookworm"),
    "REDIS_IMAGE": ("docker/local/redis.Dockerfile", "local/redis:bookworm"),
    "PROMETHEUS_IMAGE": ("docker/local/prometheus.Dockerfile", "local/prometheus:bookworm"),
    "PUSHGATEWAY_IMAGE": ("docker/local/pushgateway.Dockerfile", "local/pushgateway:bookworm"),
}
PROJECT_IMAGES = ("gateway", "trainer", "airflow")
# A comment appended to one module of each image's code: what `--rebuild-after-code-change` changes.
CODE_CHANGE = {"gateway": "serving/app.py", "trainer": "steps/main.py", "airflow": "orchestration/drift.py"}
BUILD_TIMEOUT_S = 1800
LOG_TAIL_LINES = 25

log = logging.getLogger(__name__)


class ImageError(RuntimeError):
    """An image could not be pulled or built: one line naming it, then the tail of the builder's output."""


@dataclass(frozen=True)
class BuiltImage:
    name: str
    tag: str
    seconds: float
    size_bytes: int
    base_size_bytes: int

    @property
    def above_base_bytes(self) -> int:
        return self.size_bytes - self.base_size_bytes


@dataclass(frozen=True)
class StackImages:
    """What the compose file needs to run the images built here: its variables, and what was built."""

    variables: dict[str, str]
    built: list[BuiltImage]


def docker(
    *args: str, timeout: float = 120, env: Mapping[str, str] | None = None, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """The docker client; with `check`, a non-zero exit raises CalledProcessError."""
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=env, check=check)


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def image_id(tag: str) -> str | None:
    result = docker("image", "inspect", "--format", "{{.Id}}", tag)
    return result.stdout.strip() if result.returncode == 0 else None


def image_size(tag: str) -> int:
    result = docker("image", "inspect", "--format", "{{.Size}}", tag)
    if result.returncode != 0:
        raise ImageError(f"image {tag} does not exist: {result.stderr.strip()}")
    return int(result.stdout)


def pinned_python_image() -> str:
    """The base the Dockerfiles pin (their ARG PYTHON_IMAGE default; tests/deploy checks that all three agree)."""
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (REPO / "docker" / "gateway.Dockerfile").read_text(), re.M)
    if match is None:
        raise ImageError("docker/gateway.Dockerfile has no ARG PYTHON_IMAGE=<default>")
    return match.group(1)


def published_image(variable: str) -> str:
    """The published image the compose file runs when `variable` is unset (`${VARIABLE:-image}`)."""
    match = re.search(r"\$\{" + variable + r":-([^}]+)\}", COMPOSE_FILE.read_text())
    if match is None:
        raise ImageError(f"{COMPOSE_FILE.relative_to(REPO)} has no image ${{{variable}:-...}}")
    return match.group(1)


# What `docker pull` says when no registry can be reached at all (as opposed to a registry that has no such image).
UNREACHABLE = ("no such host", "dial tcp", "i/o timeout", "connection refused", "network is unreachable",
               "tls handshake timeout", "server misbehaving", "temporary failure in name resolution")  # fmt: skip


def available(image: str, timeout: float = 120) -> bool:
    """Present in the engine, or pulled now; False when no registry answers. An image a registry answers for but does
    not have (a wrong tag or digest) is an error: falling back to a local build would hide it."""
    if image_id(image) is not None:
        return True
    try:
        result = docker("pull", "--quiet", image, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    if result.returncode == 0:
        return True
    if any(marker in result.stderr.lower() for marker in UNREACHABLE):
        return False
    raise ImageError(f"{image} cannot be pulled: {tail(result.stderr, 3)}")


def python_base() -> tuple[str, BuiltImage | None]:
    """The pinned base if it can be had, else the local debootstrap one (built once, then reused; returned as built
    when this call built it)."""
    pinned = pinned_python_image()
    if available(pinned):
        return pinned, None
    if image_id(LOCAL_PYTHON_BASE) is not None:
        return LOCAL_PYTHON_BASE, None
    log.info("%s cannot be pulled: building %s with debootstrap (~1-3 min)", pinned, LOCAL_PYTHON_BASE)
    script = REPO / "docker" / "local" / "build-python-base.sh"
    started = time.perf_counter()
    result = subprocess.run(
        [str(script), LOCAL_PYTHON_BASE], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise ImageError(
            f"building the Python base {LOCAL_PYTHON_BASE} ({script.relative_to(REPO)}) failed; last lines:\n"
            + tail(result.stdout + result.stderr)
        )
    size = image_size(LOCAL_PYTHON_BASE)
    return LOCAL_PYTHON_BASE, BuiltImage("base", LOCAL_PYTHON_BASE, time.perf_counter() - started, size, size)


def build(
    name: str,
    dockerfile: str,
    tag: str,
    base: str,
    build_args: Mapping[str, str],
    context: Path = REPO,
    build_stage: bool = False,
) -> BuiltImage:
    """`docker build` (legacy builder) of one image; with `build_stage`, its build stage is tagged `<tag>-build` too."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    arguments = [f"--build-arg={key}={value}" for key, value in build_args.items()]
    targets = [("build", build_stage_tag(tag))] if build_stage else []
    started = time.perf_counter()
    for target, target_tag in [*targets, (None, tag)]:
        replaced = image_id(target_tag)
        # --force-rm: a failed step's container goes too (plain --rm keeps it after a failure).
        command = ["build", "--force-rm", "--file", str(context / dockerfile), "--tag", target_tag, *arguments]
        command += ["--target", target] if target else []
        log.info("building %s%s from %s", target_tag, f" (stage {target})" if target else "", dockerfile)
        try:
            result = docker(*command, str(context), timeout=BUILD_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired as error:
            raise ImageError(f"building {target_tag} from {dockerfile} took over {BUILD_TIMEOUT_S} s") from error
        if result.returncode != 0:
            raise ImageError(
                f"building {target_tag} from {dockerfile} failed (exit {result.returncode}); last lines:\n"
                + tail(result.stdout + result.stderr)
            )
        if replaced is not None and replaced != image_id(target_tag):
            # The image this build replaced, now untagged; kept if a container still uses it.
            docker("image", "rm", replaced)
    seconds = time.perf_counter() - started
    return BuiltImage(name, tag, seconds, image_size(tag), image_size(base))


def build_project_image(name: str, tag: str, base: str, context: Path = REPO) -> BuiltImage:
    """docker/<name>.Dockerfile on `base`, its build stage tagged too (the layer cache of the next build)."""
    return build(name, f"docker/{name}.Dockerfile", tag, base, {"PYTHON_IMAGE": base}, context, build_stage=True)


def build_stage_tag(tag: str) -> str:
    repository, _, version = tag.rpartition(":")
    return f"{repository}-build:{version}"


def trust_the_hosts_ca_bundle() -> Path | None:
    """Copy the CA bundle pip trusts here (PIP_CERT, else pip's `cert` setting, else Python's default) to
    docker/build-ca/, where only the images' build stages read it: they then reach PyPI through a proxy that re-signs
    TLS as the host does. The copy is git-ignored and no runtime stage has it."""
    candidates = [os.environ.get("PIP_CERT", "")]
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.cert"], capture_output=True, text=True, check=False
    )
    candidates += [pip.stdout.strip() if pip.returncode == 0 else "", ssl.get_default_verify_paths().cafile or ""]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and Path(candidate).stat().st_size:
            target = REPO / "docker" / "build-ca" / "ca-certificates.crt"
            shutil.copyfile(candidate, target)
            return target
    return None


def build_stack_images(registry: str = "local/credit-scoring", image_tag: str = "dev") -> StackImages:
    """Every image the stack runs: stand-ins where the published ones cannot be pulled, then the project's three."""
    trust_the_hosts_ca_bundle()
    base, built_base = python_base()
    variables = {"PYTHON_IMAGE": base, "IMAGE_REGISTRY": registry, "IMAGE_TAG": image_tag}
    built = [built_base] if built_base else []
    for variable, (dockerfile, tag) in STAND_INS.items():
        if available(published_image(variable), timeout=60):
            continue
        built.append(build(variable.removesuffix("_IMAGE").lower(), dockerfile, tag, base, {"BASE_IMAGE": base}))
        variables[variable] = tag
    for name in PROJECT_IMAGES:
        built.append(build_project_image(name, f"{registry}/{name}:{image_tag}", base))
    return StackImages(variables, built)


def rebuild_after_code_change(images: Sequence[BuiltImage], base: str) -> list[BuiltImage]:
    """Each project image rebuilt from a copy of the repository with one module of its code changed (layer cache)."""
    rebuilt = []
    with tempfile.TemporaryDirectory(prefix="code-change-") as folder:
        copy = Path(folder) / "repo"
        shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", ".venv*", ".mlflow", "__pycache__"))
        for image in images:
            if image.name not in CODE_CHANGE:
                continue
            module = copy / CODE_CHANGE[image.name]
            module.write_text(module.read_text() + f"# a code-only change ({time.time()})\n")
            rebuilt.append(build_project_image(image.name, image.tag, base, copy))
    return rebuilt


def table(images: Sequence[BuiltImage], title: str) -> str:
    rows = [f"{title}", f"{'image':<12} {'tag':<40} {'build s':>8} {'size MB':>8} {'above base MB':>14}"]
    for image in images:
        rows.append(
            f"{image.name:<12} {image.tag:<40} {image.seconds:>8.1f} {image.size_bytes / 1e6:>8.0f} "
            f"{image.above_base_bytes / 1e6:>14.0f}"
        )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", default="local/credit-scoring", help="image names: <registry>/<image>:<tag>")
    parser.add_argument("--tag", default="dev")
    parser.add_argument(
        "--rebuild-after-code-change", action="store_true", help="then time a rebuild after a code-only change"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        images = build_stack_images(args.registry, args.tag)
        print(table(images.built, f"built on {images.variables['PYTHON_IMAGE']}"))
        if args.rebuild_after_code_change:
            rebuilt = rebuild_after_code_change(images.built, images.variables["PYTHON_IMAGE"])
            print(table(rebuilt, "rebuilt after a code-only change"))
    except ImageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
