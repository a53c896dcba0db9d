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

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose" / "docker-compose.yml"
ONE_SHOT = {"trainer", "airflow-init", "loki-volume-init", "drift"}
LOG_TAIL_LINES = 30
# What reaches the compose command of the caller's environment: the rest (IMAGE_TAG, BIND_ADDRESS, ...) would win
# over the env file, which is the one place this stack is configured.
PASSED_ENVIRONMENT = ("PATH", "HOME", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY")


class StackError(RuntimeError):
    """The stack did not come up or a command failed: one line naming what, then a log's tail."""


@dataclass(frozen=True)
class Container:
    service: str
    name: str
    state: str  # running, exited, ...
    health: str  # healthy, starting, unhealthy, or "" without a health check
    exit_code: int


def is_up(container: Container) -> bool:
    if container.service in ONE_SHOT:
        return container.state == "exited"  # with 0: ComposeProject.problem reports any other code
    return container.state == "running" and container.health in ("healthy", "")


def compose_command() -> list[str]:
    """`docker compose` when the v2 plugin answers, else `docker-compose` (1.29 on Debian bookworm)."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        raise StackError("neither `docker compose` nor `docker-compose` is installed (scripts/compose-test.sh)")
    return [legacy]


def generated_secrets() -> dict[str, str]:
    """A value for every secret compose/.env.example asks for."""
    names = [
        line.split("=", 1)[0]
        for line in (REPO / "compose" / ".env.example").read_text().splitlines()
        if line.endswith("=") and not line.startswith("#")
    ]
    values = {name: secrets.token_urlsafe(24) for name in names}
    values["AIRFLOW_FERNET_KEY"] = base64.urlsafe_b64encode(os.urandom(32)).decode()
    return values


def tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


class ComposeProject:
    def __init__(self, env_file: Path, variables: Mapping[str, str]) -> None:
        self.env_file = env_file
        self.variables = dict(variables)
        self.name = self.variables["COMPOSE_PROJECT_NAME"]
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
        listed = subprocess.run(
            ["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={self.name}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        ids = listed.stdout.split()
        if not ids:
            return []
        template = (
            '{{index .Config.Labels "com.docker.compose.service"}}|{{.Name}}|{{.State.Status}}|'
            "{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}"
        )
        inspected = subprocess.run(
            ["docker", "inspect", "--format", template, *ids], capture_output=True, text=True, check=True
        )
        containers = []
        for line in inspected.stdout.splitlines():
            service, name, state, health, code = line.split("|")
            containers.append(Container(service, name.lstrip("/"), state, health, int(code)))
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
            inspected = subprocess.run(
                ["docker", "inspect", "--format", template, container.name], capture_output=True, text=True, check=True
            )
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
        """The first of `services` that failed (exited with an error, unhealthy, gone), as one line and its log."""
        containers = {container.service: container for container in self.containers()}
        for service in services:
            container = containers.get(service)
            if container is None:
                return f"service {service} has no container"
            failed = (
                f"exited with code {container.exit_code}"
                if container.state == "exited" and (container.exit_code != 0 or service not in ONE_SHOT)
                else "is unhealthy"
                if container.health == "unhealthy" and service not in ONE_SHOT
                else None
            )
            if failed:
                return f"service {service} {failed}; last lines of its log:\n{self.logs(service)}"
        return None

    def wait_until_up(self, services: Sequence[str], seconds: float) -> None:
        """Until every long-running service of `services` is healthy and every one-shot finished with 0."""
        deadline = time.monotonic() + seconds
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
                    f"service {service} is not up after {seconds:.0f} s ({state.state}, health {state.health or '-'});"
                    f" last lines of its log:\n{self.logs(service)}"
                )
            time.sleep(3)

    def up(self, services: Sequence[str], seconds: float) -> None:
        """`up -d` of `services` (their dependencies start first, as the file orders them), then wait until up."""
        result = self.run("up", "--detach", "--no-build", *services, timeout=seconds, check=False)
        if result.returncode != 0:
            problem = self.problem(services)
            raise StackError(problem or f"`compose up` failed (exit {result.returncode}):\n{tail(result.stderr)}")
        self.wait_until_up(services, seconds)

    def down(self) -> list[str]:
        """Remove the project's containers, networks and volumes; what is still there afterwards (should be nothing)."""
        self.run("--profile", "jobs", "down", "--volumes", "--remove-orphans", "--timeout", "30", check=False)
        left = [f"container {container.name}" for container in self.containers()]
        for kind in ("network", "volume"):
            listed = subprocess.run(
                ["docker", kind, "ls", "--quiet", "--filter", f"label=com.docker.compose.project={self.name}"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            left += [f"{kind} {name}" for name in listed.stdout.split()]
        return left
