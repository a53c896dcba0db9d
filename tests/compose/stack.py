"""One compose project of compose/docker-compose.yml, driven the way a user drives it: `docker compose` (v2) where
installed, else Debian's `docker-compose` 1.29, with an env file and nothing else. What went wrong is one line naming
the service, then the tail of its log (StackError)."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from scripts.container_images import COMPOSE_FILE, LOG_TAIL_LINES, REPO, docker, tail

ONE_SHOT = {"trainer", "airflow-init", "loki-volume-init", "drift", "mlflow-access"}
# What reaches the compose command of the caller's environment: the rest (IMAGE_TAG, BIND_ADDRESS, ...) would win
# over the env file, which is the one place this stack is configured.
PASSED_ENVIRONMENT = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")


class StackError(RuntimeError):
    """The stack did not come up or a command failed: one line naming what, then a log's tail."""


@dataclass(frozen=True)
class Container:
    service: str
    name: str
    state: str  # running, exited, restarting, ...
    health: str  # healthy, starting, unhealthy, or "" without a health check
    exit_code: int
    restarts: int  # by the restart policy: a service that crashed and came back (or keeps crashing)


def what_failed(service: str, container: Container | None) -> str | None:
    """Why `service` counts as failed (gone, exited with an error, crashed and restarted, unhealthy), or None."""
    if container is None:
        return "has no container"
    if container.state == "exited" and (container.exit_code != 0 or service not in ONE_SHOT):
        return f"exited with code {container.exit_code}"
    if container.state == "restarting" or container.restarts > 0:
        return f"crashed and was restarted {container.restarts} time(s) (exit code {container.exit_code})"
    if container.health == "unhealthy" and service not in ONE_SHOT:
        return "is unhealthy"
    return None


def is_up(container: Container) -> bool:
    if container.service in ONE_SHOT:
        return container.state == "exited"  # with 0: ComposeProject.problem reports any other code
    return container.state == "running" and container.health in ("healthy", "")


def compose_command() -> list[str]:
    """`docker compose` when the v2 plugin answers, else `docker-compose` (1.29 on Debian bookworm)."""
    client = shutil.which("docker")
    if client and docker("compose", "version").returncode == 0:
        return [client, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        raise StackError("neither `docker compose` nor `docker-compose` is installed (scripts/compose-test.sh)")
    return [legacy]


def services_to_start(left_out: set[str]) -> list[str]:
    """Every service `compose up` starts (none behind a profile), but `left_out`."""
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return [name for name, service in services.items() if "profiles" not in service and name not in left_out]


def generated_secrets() -> dict[str, str]:
    """A value for every variable of compose/.env.example's secrets section."""
    text = (REPO / "compose" / ".env.example").read_text()
    section = text.split("# --- Secrets", 1)[1].split("# ---", 1)[0]
    names = [line.split("=", 1)[0] for line in section.splitlines() if "=" in line and not line.startswith("#")]
    values = {name: secrets.token_urlsafe(24) for name in names}
    values["AIRFLOW_FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return values


class ComposeProject:
    def __init__(self, env_file: Path, variables: Mapping[str, str]) -> None:
        self.env_file = env_file
        self.variables = dict(variables)
        self.name = self.variables["COMPOSE_PROJECT_NAME"]
        self.label = f"label=com.docker.compose.project={self.name}"  # what compose marks the project's objects with
        env_file.write_text("".join(f"{key}={value}\n" for key, value in self.variables.items()))
        self.command = [*compose_command(), "--file", str(COMPOSE_FILE), "--env-file", str(env_file)]
        self.environment = {key: os.environ[key] for key in PASSED_ENVIRONMENT if key in os.environ}

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*self.command, *args], capture_output=True, text=True, timeout=timeout, env=self.environment, check=False
        )
        if check and result.returncode != 0:
            raise StackError(f"`compose {' '.join(args)}` failed (exit {result.returncode}):\n{tail(result.stderr)}")
        return result

    def containers(self) -> list[Container]:
        """Every container of the project, also stopped ones, from the engine's labels."""
        ids = docker("ps", "--all", "--quiet", "--filter", self.label, check=True).stdout.split()
        if not ids:
            return []
        template = (
            '{{index .Config.Labels "com.docker.compose.service"}}|{{.Name}}|{{.State.Status}}|'
            "{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}|{{.RestartCount}}"
        )
        inspected = docker("inspect", "--format", template, *ids, check=True)
        containers = []
        for line in inspected.stdout.splitlines():
            service, name, state, health, code, restarts = line.split("|")
            containers.append(Container(service, name.lstrip("/"), state, health, int(code), int(restarts)))
        return containers

    def published_ports(self) -> dict[str, set[tuple[str, int, int]]]:
        """service -> {(host address, host port, container port)} of every running container of the project."""
        published: dict[str, set[tuple[str, int, int]]] = {}
        for container in self.containers():
            if container.state != "running":
                continue
            template = (
                "{{range $port, $bindings := .NetworkSettings.Ports}}{{range $bindings}}"
                "{{$port}} {{.HostIp}} {{.HostPort}}\n{{end}}{{end}}"
            )
            inspected = docker("inspect", "--format", template, container.name, check=True)
            ports = published.setdefault(container.service, set())
            for line in inspected.stdout.split("\n"):
                if line.strip():
                    port, address, host_port = line.split()
                    ports.add((address, int(host_port), int(port.split("/")[0])))
        return published

    def logs(self, service: str) -> str:
        result = self.run("logs", "--no-color", "--tail", str(LOG_TAIL_LINES), service, check=False)
        return tail(result.stdout + result.stderr)

    def problem(self, services: Sequence[str]) -> str | None:
        """The first of `services` that failed, as one line and its log's tail (None: nothing failed yet)."""
        containers = {container.service: container for container in self.containers()}
        for service in services:
            failed = what_failed(service, containers.get(service))
            if failed:
                return f"service {service} {failed}; last lines of its log:\n{self.logs(service)}"
        return None

    def wait_until_up(self, services: Sequence[str], deadline: float) -> None:
        """Until every long-running service of `services` is healthy and every one-shot finished with 0."""
        while True:
            problem = self.problem(services)
            if problem:
                raise StackError(problem)
            containers = {container.service: container for container in self.containers()}
            waiting = [service for service in services if not is_up(containers[service])]
            if not waiting:
                return
            if time.monotonic() > deadline:
                service = waiting[0]
                state = containers[service]
                raise StackError(
                    f"service {service} is not up in time ({state.state}, health {state.health or '-'});"
                    f" last lines of its log:\n{self.logs(service)}"
                )
            time.sleep(3)

    def up(self, services: Sequence[str], seconds: float) -> None:
        """`up -d` of `services` (their dependencies start first, as the file orders them), then wait until up: all of
        it within `seconds`."""
        deadline = time.monotonic() + seconds
        try:
            result = self.run("up", "--detach", "--no-build", *services, timeout=seconds, check=False)
        except subprocess.TimeoutExpired:
            raise StackError(self.problem(services) or f"`compose up` did not return within {seconds:.0f} s") from None
        if result.returncode != 0:
            problem = self.problem(services)
            raise StackError(problem or f"`compose up` failed (exit {result.returncode}):\n{tail(result.stderr)}")
        self.wait_until_up(services, deadline)

    def down(self) -> list[str]:
        """Remove the project's containers, networks and volumes; what is still there afterwards (should be nothing)."""
        self.run("--profile", "jobs", "down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
        left = [f"container {container.name}" for container in self.containers()]
        for kind in ("network", "volume"):
            listed = docker(kind, "ls", "--quiet", "--filter", self.label, check=True)
            left += [f"{kind} {name}" for name in listed.stdout.split()]
        return left
