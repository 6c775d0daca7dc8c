"""``local down`` stops whole process groups (the KCL daemon's Python children too), SIGKILLs what ignores SIGTERM,
and never signals a process that merely reuses a recorded pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from helpers import STREAMWRECK, wait_until

from streamwreck.core.errors import StartError
from streamwreck.local import groups, parts, processes, state
from streamwreck.local.state import Part


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[str], Part]]:
    """A shell in its own session with two children, as a recorded part; whatever is left is killed at the end."""
    started: list[processes.Service] = []

    def start(script: str) -> Part:
        service = processes.launch("group", ["sh", "-c", script], tmp_path, 0, lambda: True)
        started.append(service)
        part = Part("group", service.pid, groups.start_time(service.pid), str(service.log_path))
        wait_until(lambda: len(part.members()) == 3, 10, "the shell and its two children")
        return part

    yield start
    for service in started:
        service.stop(timeout=1)


def test_stop_part_stops_the_leader_and_its_children(spawn: Callable[[str], Part]) -> None:
    part = spawn("sleep 60 & sleep 60 & wait")
    members = [process.pid for process in part.members()]
    assert len(members) == 3 and part.pid in members
    assert part.alive()
    assert part.stop(grace=3)
    assert part.members() == []
    assert not part.alive()
    assert part.stop(grace=3) is False  # safe twice


def test_a_group_that_ignores_sigterm_is_killed(spawn: Callable[[str], Part]) -> None:
    part = spawn("trap '' TERM; sleep 60 & sleep 60 & wait")
    began = time.monotonic()
    assert part.stop(grace=0.5)
    assert part.members() == []
    assert time.monotonic() - began < 5


@pytest.mark.parametrize("offset", [-1, 1], ids=["ours-started-earlier", "ours-started-later"])
def test_a_reused_pid_is_not_ours(offset: int) -> None:
    """A recorded part whose pid now leads another program's session (pids wrap around quickly on a busy machine):
    that program and its group are not the part's, whichever started first."""
    child = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        started = groups.start_time(child.pid)
        assert started is not None
        impostor = Part("other", child.pid, started + offset, "x.log")  # same pid, another start: another process
        assert not impostor.alive()
        assert impostor.members() == []
        assert impostor.stop(grace=3) is False
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


holders = groups.log_holders

# Stand-ins for kinesis-local (STREAMWRECK_KINESIS_LOCAL): one that dies at start, one that answers every Kinesis call
# with an error.
DIES_AT_START = 'console.error("fake kinesis-local: cannot start"); process.exit(3);\n'
REFUSES_EVERYTHING = """\
require("http").createServer((request, response) => {
  if (request.method === "GET") { response.end("ok"); return; }
  response.writeHead(400, {"Content-Type": "application/x-amz-json-1.1"});
  response.end(JSON.stringify({__type: "LimitExceededException", message: "fake: no streams today"}));
}).listen(Number(process.env.KINESIS_MOCK_PLAIN_PORT), "127.0.0.1", () => console.error("fake kinesis-local up"));
"""


def fake_kinesis_local(folder: Path, script: str) -> dict[str, str]:
    main = folder / "fake-kinesis-local" / "main.js"
    main.parent.mkdir()
    main.write_text(script)
    return {**os.environ, "STREAMWRECK_KINESIS_LOCAL": str(main)}


def local(*argv: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STREAMWRECK, "local", *argv], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def assert_all_stopped(folder: Path) -> None:
    assert holders(folder) == []
    assert not (folder / "stack.json").exists()
    down = local("down", "--dir", str(folder))
    assert down.returncode == 0 and "nothing to stop" in down.stderr


def test_a_part_that_dies_at_start_is_named_with_its_log_and_everything_started_is_stopped(tmp_path: Path) -> None:
    result = local("up", "--dir", str(tmp_path), env=fake_kinesis_local(tmp_path, DIES_AT_START))
    assert result.returncode == 2
    error = result.stderr.strip().splitlines()
    assert any(line.startswith("streamwreck local: error: kinesis-local exited with 3") for line in error), (
        result.stderr
    )
    assert "fake kinesis-local: cannot start" in result.stderr  # the log's tail
    assert "start failed: stopping what was started" in result.stderr
    assert (tmp_path / "logs" / "moto.log").exists()  # started beside kinesis-local, and then stopped
    assert_all_stopped(tmp_path)


def test_an_aws_error_while_creating_the_resources_is_one_line_with_the_logs_tail(tmp_path: Path) -> None:
    result = local("up", "--dir", str(tmp_path), env=fake_kinesis_local(tmp_path, REFUSES_EVERYTHING))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if "error:" in line]
    assert error == [
        "streamwreck local: error: LimitExceededException while creating the stream 'demo': fake: no streams today"
    ], result.stderr
    assert "fake kinesis-local up" in result.stderr  # kinesis-local's log tail follows
    assert_all_stopped(tmp_path)


def test_an_explicit_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = local("up", "--dir", str(tmp_path), "--moto-port", str(port))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"streamwreck local: error: port {port} (--moto-port) is already in use on 127.0.0.1: choose another,"
        " or leave it out"
    )
    assert not (tmp_path / "logs").exists()
    assert_all_stopped(tmp_path)


def test_a_process_that_dies_while_something_else_answers_is_not_ready(tmp_path: Path) -> None:
    started: list[processes.Service] = []

    def another_server_answers() -> bool:
        # meanwhile our process dies (as one does whose port is taken): waited for, so a slow start cannot win
        assert started[0].process is not None
        started[0].process.wait(timeout=30)
        return True

    with pytest.raises(StartError, match="exited with 4"):
        processes.launch(
            "dies", ["sh", "-c", "sleep 0.1; exit 4"], tmp_path, 0, another_server_answers, on_started=started.append
        )


def test_a_log_marker_of_an_earlier_run_does_not_count(tmp_path: Path) -> None:
    log = tmp_path / "recorder.log"
    log.write_text('{"event": "recorder_started"}\n')  # a reused folder: the last run's log
    with pytest.raises(StartError, match="exited with 3"):
        processes.launch(
            "recorder", ["sh", "-c", "sleep 0.3; exit 3"], tmp_path, 0, processes.log_marker(log, "recorder_started")
        )
    service = processes.launch(
        "recorder",
        ["sh", "-c", "echo recorder_started; exec sleep 30"],
        tmp_path,
        0,
        processes.log_marker(log, "recorder_started"),
    )
    service.stop(timeout=1)


def test_launch_reports_the_process_before_it_answers_and_stops_it_when_interrupted(tmp_path: Path) -> None:
    seen: list[processes.Service] = []

    def interrupted() -> bool:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        processes.launch(
            "slow", ["sleep", "30"], tmp_path, 0, lambda: bool(seen) and interrupted(), on_started=seen.append
        )
    assert len(seen) == 1
    assert not seen[0].alive()


def up_until(folder: Path, stream: str, marker: str) -> tuple[subprocess.Popen[str], str]:
    """``local up`` in ``folder``, read until it prints ``marker``: the process and what it printed."""
    up = subprocess.Popen(
        [STREAMWRECK, "local", "up", "--dir", str(folder), "--stream", stream, "--shards", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert up.stderr is not None
    printed = ""
    for line in up.stderr:
        printed += line
        if marker in line:
            return up, printed
    up.wait()
    pytest.fail(f"local up ended before {marker!r}:\n{printed}")


live = groups.alive


def stack_processes(folder: Path, stream: str) -> set[int]:
    """Every live process of the stack in ``folder``: the recorded parts' groups, the holders of its logs, and any
    process with the stream's name in its environment (the processor's: its record processors log to a pipe)."""
    found = set(holders(folder))
    stack_state = state.load(folder)
    for part in stack_state.parts if stack_state else []:
        found.update(process.pid for process in part.members())
    for process in psutil.process_iter(["environ"]):
        if (process.info["environ"] or {}).get("STREAMWRECK_STREAM_NAME") == stream:
            found.add(process.pid)
    return {pid for pid in found if live(pid) and pid != os.getpid()}


@pytest.mark.parametrize(
    ("marker", "delay"),
    [
        ("starting memcached", 0.5),  # the emulators are starting, in threads
        ("starting the recorder", 0.0),  # the processor is spawned, the recorder is starting
        ("waiting for the KCL consumer", 1.0),  # every part is up, the KCL daemon is taking its leases
    ],
    ids=["emulators-starting", "services-starting", "waiting-for-leases"],
)
def test_ctrl_c_during_up_stops_every_process_it_started(tmp_path: Path, marker: str, delay: float) -> None:
    stream = f"t{uuid.uuid4().hex[:12]}"
    up, printed = up_until(tmp_path, stream, marker)
    try:
        time.sleep(delay)
        running = stack_processes(tmp_path, stream) - {up.pid}
        assert running, "nothing of the stack was running at the interrupt"
        up.send_signal(signal.SIGINT)
        _, rest = up.communicate(timeout=60)
        assert up.returncode == 130, printed + rest
        assert "interrupted: stopping what was started" in rest
        assert "Traceback" not in rest
        assert {pid for pid in running if live(pid)} == set()
        assert stack_processes(tmp_path, stream) == set()
        assert_all_stopped(tmp_path)
    finally:
        if up.poll() is None:
            up.kill()
            up.communicate()
        # Only when something above failed: what is left would load the machine for the rest of the session.
        for pid in stack_processes(tmp_path, stream):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def recorded_stack(folder: Path, *members: Part) -> None:
    state.save(
        state.StackState(
            dir=str(folder),
            region="us-east-1",
            stream="demo",
            kcl_application="demo-consumer",
            shards=1,
            skip_every=0,
            started_at="2026-12-01T00:00:00Z",
            parts=list(members),
        )
    )


def test_kill_sigkills_the_whole_group_and_pause_stops_it_until_resumed(
    tmp_path: Path, spawn: Callable[[str], Part]
) -> None:
    paused = spawn("sleep 60 & sleep 60 & wait")
    killed = spawn("trap '' TERM; sleep 60 & sleep 60 & wait")
    paused.name, killed.name = "moto", "recorder"
    recorded_stack(tmp_path, paused, killed)

    assert sorted(parts.pause(tmp_path, "moto")) == sorted(p.pid for p in paused.members())
    wait_until(lambda: {p.status() for p in paused.members()} == {psutil.STATUS_STOPPED}, 5, "the group to stop")
    parts.resume(tmp_path, "moto")
    wait_until(lambda: psutil.STATUS_STOPPED not in {p.status() for p in paused.members()}, 5, "the group to go on")

    assert len(parts.kill(tmp_path, "recorder")) == 3  # no grace: SIGTERM ignored or not, all gone at once
    assert killed.members() == [] and paused.alive()
    stack_state = state.load(tmp_path)
    assert stack_state is not None and stack_state.part("recorder") == killed  # recorded until restarted


def test_memcached_restarts_empty_on_its_port_and_the_state_file_follows(tmp_path: Path) -> None:
    recorded_stack(tmp_path)
    stack_state = state.load(tmp_path)
    assert stack_state is not None
    first = processes.start_memcached(stack_state.logs, on_started=parts.recorder_for(stack_state))
    stack_state.memcached = f"127.0.0.1:{first.port}"
    state.save(stack_state)
    try:
        with socket.create_connection(("127.0.0.1", first.port), timeout=2) as sock:
            sock.sendall(b"set k 0 0 1\r\nv\r\n")
            assert sock.recv(64) == b"STORED\r\n"
        restarted = local("restart", "--dir", str(tmp_path), "memcached")  # a process of its own: it outlives the CLI
        assert restarted.returncode == 0, restarted.stderr
        said = json.loads(restarted.stdout)
        again = Part(said["part"], said["pid"], None, said["log"], said["url"])
        assert again.pid != first.pid and again.url == f"127.0.0.1:{first.port}"
        assert not first.alive()
        with socket.create_connection(("127.0.0.1", first.port), timeout=2) as sock:
            sock.sendall(b"get k\r\n")
            assert sock.recv(64) == b"END\r\n"  # forgotten
        reloaded = state.load(tmp_path)
        assert reloaded is not None and [p.pid for p in reloaded.parts] == [again.pid]
        assert reloaded.parts[0].alive()
    finally:
        first.stop()
        reloaded = state.load(tmp_path)
        for part in reloaded.parts if reloaded else []:
            part.stop(1.0)
