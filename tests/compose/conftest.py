"""`docker compose up`, for real (marker ``compose``; `make compose-test`, and `make test` through the suite).

The engine fixture installs what is missing (scripts/compose/install.sh: Debian's docker.io and debootstrap, Docker
Compose v2 built from its Go module), starts a private dockerd when no engine answers (scripts/compose/dockerd.sh,
stopped at the end), and makes the base images the Dockerfiles name (scripts/compose/bases.sh: pulled, or local
stand-ins where Docker Hub cannot be reached, announced loudly). What is slow to make is cached under
~/.cache/streamwreck/ for later clones. The test skips only when Docker cannot be installed on this machine at all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from compose_stack import (
    BASES_TIMEOUT,
    BUILD_TIMEOUT,
    DOWN_TIMEOUT,
    ENGINE_TIMEOUT,
    HEALTHY_TIMEOUT,
    INSTALL_TIMEOUT,
    LOGS,
    UP_TIMEOUT,
    Stack,
    announce,
    base_env,
    free_port,
    run,
    tail,
)

STANDINS_NOTICE: list[str] = []  # what the summary repeats


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "compose: builds the images and runs docker-compose.yml in a Docker engine")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in STANDINS_NOTICE:
        terminalreporter.write_sep("!", line, yellow=True, bold=True)


@pytest.fixture(scope="module")
def engine(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The environment for `docker` and `docker compose`: DOCKER_HOST of an engine that answers, the bases made."""
    env = base_env()
    LOGS.mkdir(parents=True, exist_ok=True)
    install = run(["scripts/compose/install.sh"], env, INSTALL_TIMEOUT, "installing Docker and Compose")
    if install.returncode == 3:
        pytest.skip(f"Docker cannot be installed on this machine: {install.stderr.strip()}")
    assert install.returncode == 0, tail(install)
    start = run(["scripts/compose/dockerd.sh", "start"], env, ENGINE_TIMEOUT, "starting dockerd")
    assert start.returncode == 0, tail(start)
    try:
        exports = dict(line.removeprefix("export ").split("=", 1) for line in start.stdout.splitlines() if "=" in line)
        env.update(exports, DOCKER_BUILDKIT="0")  # the classic builder: BuildKit would pull its frontend image
        bases = run(["scripts/compose/bases.sh"], env, BASES_TIMEOUT, "making the base images")
        assert bases.returncode == 0, tail(bases)
        standins = (LOGS / "standins.txt").read_text().split() if (LOGS / "standins.txt").exists() else []
        if standins:
            notice = (
                "compose test: STAND-IN base images (Docker Hub unreachable), built from Debian packages, never"
                f" pushed: {', '.join(standins)}"
            )
            STANDINS_NOTICE.append(notice)
            announce(request.config, notice)
        yield env
    finally:
        stop = run(["scripts/compose/dockerd.sh", "stop"], env, DOWN_TIMEOUT + ENGINE_TIMEOUT, "stopping dockerd")
        assert stop.returncode == 0, tail(stop)


@pytest.fixture(scope="module")
def stack(engine: dict[str, str]) -> Iterator[Stack]:
    """docker-compose.yml (with the host-network override) built and up, every long-running service healthy."""
    ports = {name: free_port() for name in ("SW_LOCALSTACK_PORT", "SW_MEMCACHED_PORT", "SW_API_PORT", "SW_WATCH_PORT")}
    env = {**engine, **{k: str(v) for k, v in ports.items()}}
    stack = Stack(env, f"streamwreck-ci-{os.getpid()}", ports)
    profiles = ("--profile", "tools", "--profile", "watch")  # the tools (producer, checker) and the watcher
    config = stack.run(*profiles, "config", "--quiet", timeout=60, what="docker compose config")
    assert config.returncode == 0, f"docker-compose.yml with docker-compose.hostnet.yml: {tail(config)}"
    began = time.monotonic()
    build = stack.run(*profiles, "build", timeout=BUILD_TIMEOUT, what="docker compose build")
    (LOGS / "build.log").write_text(build.stdout + build.stderr)
    assert build.returncode == 0, tail(build, 80)
    stack.timings["build"] = time.monotonic() - began
    try:
        began = time.monotonic()
        # The README's `up --wait` (the images are built above): until every service is healthy, the init done;
        # with the watcher (`--profile watch`), as the README's Docker section shows.
        wait = str(HEALTHY_TIMEOUT)
        up = stack.run(
            "--profile", "watch", "up", "--wait", "--wait-timeout", wait, "--no-build",
            timeout=UP_TIMEOUT, what="docker compose up",
        )  # fmt: skip
        assert up.returncode == 0, f"{tail(up, 80)}\n(the containers' logs: build/compose/stack.log)"
        stack.wait_healthy(["localstack", "memcached", "api", "recorder", "processor", "watch"], HEALTHY_TIMEOUT)
        stack.timings["up"] = time.monotonic() - began
        yield stack
    finally:
        logs = stack.run(*profiles, "logs", "--no-color", "--timestamps", timeout=120, what="docker compose logs")
        (LOGS / "stack.log").write_text(logs.stdout + logs.stderr)
        down = stack.run(
            *profiles, "down", "--volumes", "--remove-orphans", "--timeout", "30",
            timeout=DOWN_TIMEOUT, what="docker compose down",
        )  # fmt: skip
        assert down.returncode == 0, tail(down)
        left = run(
            ["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={stack.project}"],
            engine,
            60,
            "docker ps",
        )
        assert left.stdout.strip() == "", f"containers left after down: {left.stdout}"
