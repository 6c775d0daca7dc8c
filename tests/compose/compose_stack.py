"""Helpers of the compose test (tests/compose/conftest.py has the fixtures): commands run from the checkout with
bounded timeouts, and the stack under test."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "build" / "compose"

# Budgets, nested inside the test's own timeout (test_compose_up.COMPOSE_TIMEOUT): a cold machine builds the
# compose binary (3-10 min), the stand-in bases (about 4 min) and the images (about 15 min on vfs).
INSTALL_TIMEOUT = 1200
ENGINE_TIMEOUT = 120
BASES_TIMEOUT = 1200
BUILD_TIMEOUT = 2400
UP_TIMEOUT = 600
HEALTHY_TIMEOUT = 300
DOWN_TIMEOUT = 300  # also the private engine's prune of replaced images when it stops


def run(argv: Sequence[str], env: dict[str, str], timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    """Run a command from the checkout; a timeout fails the test with what was being done, never hangs it."""
    try:
        return subprocess.run(
            list(argv), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"")[-3000:], (exc.stderr or b"")[-3000:]
        pytest.fail(f"{what} did not finish within {timeout:.0f}s: {shlex.join(argv)}\n{output}")


def tail(result: subprocess.CompletedProcess[str], lines: int = 40) -> str:
    text = (result.stdout or "") + (result.stderr or "")
    return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env() -> dict[str, str]:
    """This process's environment without AWS_* / STREAMWRECK_* (nothing of the host's may reach compose)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STREAMWRECK_", "SW_"))}


def announce(config: pytest.Config, text: str) -> None:
    """Write a line to the terminal now, past pytest's output capture (and again in the summary: see conftest)."""
    reporter = config.pluginmanager.getplugin("terminalreporter")
    capture = config.pluginmanager.getplugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.ensure_newline()
        reporter.write_line(text, yellow=True, bold=True)


@dataclass
class Stack:
    env: dict[str, str]
    project: str
    ports: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def compose(self) -> list[str]:
        return ["docker", "compose", "-f", "docker-compose.yml", "-f", "docker-compose.hostnet.yml", "-p", self.project]

    def run(self, *args: str, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
        return run([*self.compose, *args], self.env, timeout, what)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['SW_LOCALSTACK_PORT']}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['SW_API_PORT']}"

    def containers(self) -> list[dict[str, Any]]:
        import json

        result = self.run("ps", "--all", "--format", "json", timeout=60, what="docker compose ps")
        assert result.returncode == 0, tail(result)
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]

    def wait_healthy(self, services: Sequence[str], timeout: float) -> None:
        """Until every one of ``services`` reports healthy; fails at once if one exits, else at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            state = {c["Service"]: (c["State"], c.get("Health", "")) for c in self.containers()}
            if all(state.get(name, ("", ""))[1] == "healthy" for name in services):
                return
            dead = [name for name in services if state.get(name, ("", ""))[0] in {"exited", "dead"}]
            if dead or time.monotonic() > deadline:
                logs = self.run("logs", "--no-color", "--tail", "40", *services, timeout=60, what="logs")
                reason = f"{dead} exited" if dead else f"not healthy within {timeout:.0f}s"
                pytest.fail(f"{reason}: {state}\n{tail(logs, 200)}")
            time.sleep(1)
