"""Containers with a read-only root filesystem (compose `read_only`, Kubernetes `readOnlyRootFilesystem`): every path
their code writes (caches of the settings classes resolved with the image's HOME and ENV, prometheus_client's
multiprocess folder, the temporary folder, MLflow's metrics folder) lies below a tmpfs, a volume or an emptyDir."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from registry.settings import RegistrySettings
from tests.deploy.conftest import COMPOSE, REPO, by_kind, load_yaml

# RegistrySettings.cache_dir's default below the home folder (Path.home() at import: re-rooted at the image's HOME).
CACHE_BELOW_HOME = PurePosixPath(RegistrySettings.model_fields["cache_dir"].default.relative_to(Path.home()))


def image_environment(dockerfile: str) -> dict[str, str]:
    """The final stage's ENV, plus HOME from its useradd when ENV does not set it."""
    final = (REPO / dockerfile).read_text().split(" AS runtime", 1)[1]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.+?)(?<!\\)$", final, re.M | re.S):
        env.update(re.findall(r"(\w+)=(\S+)", block))
    home = re.search(r"--home-dir (\S+)", final)
    if "HOME" not in env and home:
        env["HOME"] = home.group(1)
    return env


def written_paths(env: dict[str, str], command: list[str]) -> dict[str, PurePosixPath]:
    """What the process writes, by what it is for -> the path."""
    home = PurePosixPath(env.get("HOME", "/root"))
    paths = {"HOME": home, "TMPDIR": PurePosixPath(env.get("TMPDIR", "/tmp"))}
    for name in ("MPLCONFIGDIR", "PROMETHEUS_MULTIPROC_DIR"):
        if name in env:
            paths[name] = PurePosixPath(env[name])
    text = " ".join(command)
    if "mlflow server" in text:
        for option in ("--expose-prometheus", "--artifacts-destination"):
            found = re.search(option + r"[= ](\S+)", text)
            if found and "://" not in found.group(1):
                paths[option] = PurePosixPath(found.group(1))
    else:
        # The registry's ONNX cache (serving/ passes SERVING_MODEL_CACHE_DIR when set, the registry's otherwise).
        registry_cache = PurePosixPath(env.get("REGISTRY_CACHE_DIR", str(home / CACHE_BELOW_HOME)))
        paths["model cache"] = PurePosixPath(env.get("SERVING_MODEL_CACHE_DIR", str(registry_cache)))
    return paths


def check(where: str, paths: dict[str, PurePosixPath], writable: set[PurePosixPath]) -> None:
    for purpose, path in paths.items():
        assert any(path == mount or mount in path.parents for mount in writable), (
            f"{where}: {purpose} {path} is on the read-only root filesystem (writable: {sorted(map(str, writable))})"
        )


def compose_read_only() -> list[tuple[str, dict[str, Any]]]:
    services = load_yaml(COMPOSE)["services"]
    return [(name, service) for name, service in services.items() if service.get("read_only")]


def test_the_read_only_services_are_the_ones_running_our_images() -> None:
    assert {name for name, _ in compose_read_only()} == {"mlflow", "trainer", "gateway", "drift", "mlflow-access"}


def dockerfile_of(service: dict[str, Any]) -> str:
    """The Dockerfile of a service's image: its build, or (a service running another's image) the image's name."""
    if "build" in service:
        dockerfile: str = service["build"]["dockerfile"]
        return dockerfile
    return f"docker/{service['image'].rsplit('/', 1)[1].split(':')[0]}.Dockerfile"


@pytest.mark.parametrize(("name", "service"), compose_read_only(), ids=[name for name, _ in compose_read_only()])
def test_compose_read_only_services_write_below_a_tmpfs_or_volume(name: str, service: dict[str, Any]) -> None:
    env = {**image_environment(dockerfile_of(service)), **service.get("environment", {})}
    command = [*service.get("entrypoint", []), *service.get("command", [])]
    if command == ["docker/trainer-entrypoint.sh"]:
        command = ["mlflow", "run"]  # the script runs `mlflow run` and `python -m registry`
    writable = {PurePosixPath(path.split(":")[0]) for path in service.get("tmpfs", [])}
    writable |= {PurePosixPath(volume.split(":")[1]) for volume in service.get("volumes", [])}
    check(f"compose {name}", written_paths(env, command), writable)


def test_kubernetes_read_only_containers_write_below_a_volume(rendered) -> None:
    checked = 0
    for overlay, manifests in rendered.items():
        configmaps = by_kind(manifests, "ConfigMap")
        for deployment in by_kind(manifests, "Deployment").values():
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                if not container.get("securityContext", {}).get("readOnlyRootFilesystem"):
                    continue
                image = container["image"].rsplit("/", 1)[1].split(":")[0].split("@")[0]
                env = image_environment(f"docker/{image}.Dockerfile")
                for source in container.get("envFrom", []):
                    env.update(configmaps[source["configMapRef"]["name"]]["data"])
                for item in container.get("env", []):
                    if "value" in item:
                        env[item["name"]] = item["value"]
                    elif "configMapKeyRef" in item.get("valueFrom", {}):
                        ref = item["valueFrom"]["configMapKeyRef"]
                        env[item["name"]] = configmaps[ref["name"]]["data"][ref["key"]]
                command = [*container.get("command", []), *container.get("args", [])]
                writable = {PurePosixPath(mount["mountPath"]) for mount in container.get("volumeMounts", [])}
                check(f"{overlay} {deployment['metadata']['name']}", written_paths(env, command), writable)
                checked += 1
    assert checked >= 4  # gateway and mlflow in both overlays, the canary in production
