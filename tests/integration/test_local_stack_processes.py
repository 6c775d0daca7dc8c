"""``local down`` stops whole process groups (the KCL daemon's Python children too), SIGKILLs what ignores SIGTERM,
and never signals a process that merely reuses a recorded pid."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.local import processes, stack


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[str], stack.Part]]:
    """A shell in its own session with two children, as a recorded part; whatever is left is killed at the end."""
    started: list[processes.Service] = []

    def start(script: str) -> stack.Part:
        service = processes.launch("group", ["sh", "-c", script], tmp_path, 0, lambda: True)
        started.append(service)
        part = stack.Part("group", service.pid, stack.start_time(service.pid), str(service.log_path))
        deadline = time.monotonic() + 10
        while len(stack.group_members(part)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        return part

    yield start
    for service in started:
        service.stop(timeout=1)


def test_stop_part_stops_the_leader_and_its_children(spawn: Callable[[str], stack.Part]) -> None:
    part = spawn("sleep 60 & sleep 60 & wait")
    members = stack.group_members(part)
    assert len(members) == 3 and part.pid in members
    assert stack.part_alive(part)
    assert stack.stop_part(part, grace=3)
    assert stack.group_members(part) == []
    assert not stack.part_alive(part)
    assert stack.stop_part(part) is False  # safe twice


def test_a_group_that_ignores_sigterm_is_killed(spawn: Callable[[str], stack.Part]) -> None:
    part = spawn("trap '' TERM; sleep 60 & sleep 60 & wait")
    began = time.monotonic()
    assert stack.stop_part(part, grace=0.5)
    assert stack.group_members(part) == []
    assert time.monotonic() - began < 5


def test_a_reused_pid_is_not_ours(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started = stack.start_time(child.pid)
        assert started is not None
        impostor = stack.Part("other", child.pid, started + 1, "x.log")  # same pid, a later start: another process
        assert not stack.part_alive(impostor)
        assert stack.group_members(impostor) == []
        assert stack.stop_part(impostor) is False
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def holders(folder: Path) -> list[int]:
    """Processes with a file of ``folder`` open (every part of the stack writes its log there)."""
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            targets = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        if any(target.startswith(str(folder)) for target in targets):
            found.append(int(fd_dir.parent.name))
    return found


def test_a_part_that_fails_to_start_is_named_with_its_log_and_everything_started_is_stopped(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [str(Path(sys.executable).with_name("streamwreck")), "local", "up", "--dir", str(tmp_path)]
        result = subprocess.run(
            [*command, "--moto-port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()
    assert any(line.startswith("streamwreck local: error: moto exited with") for line in error), result.stderr
    assert "stopping what was started" in result.stderr
    assert (tmp_path / "logs" / "kinesis-local.log").exists()  # started beside moto, and then stopped
    assert holders(tmp_path) == []
    assert not (tmp_path / "stack.json").exists()
