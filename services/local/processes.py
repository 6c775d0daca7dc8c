"""The local emulators and memcached as plain processes on 127.0.0.1: used by ``streamwreck local`` and the tests.

Each start function launches one process with its output in ``log_dir``, waits until it answers (polling, not
sleeping a fixed time), and returns a :class:`Service`; a process that dies or does not answer in time raises
StartError with the tail of its log. ``on_started`` is told about the process right after it is spawned (before it
answers), so that a caller can record it for a later stop; and a launch that does not return its service, for
whatever reason (an error, Ctrl-C, ``cancel`` set by another thread), stops the process itself first.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from streamwreck.core.errors import StartError

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent


@dataclass
class Service:
    name: str
    pid: int
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def stop(self, timeout: float = 3.0) -> None:
        stop_pid(self.pid, timeout)
        if self.process is not None:
            self.process.wait(timeout=1)

    def tail(self, lines: int = 20) -> str:
        return tail(self.log_path, lines)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def pid_alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our exited child
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid: int, timeout: float = 5.0) -> None:
    """SIGTERM the process group (or the process), then SIGKILL after ``timeout`` (kinesis-local can ignore TERM)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


OnStarted = Callable[[Service], None]


def launch(
    name: str,
    argv: list[str],
    log_dir: Path,
    port: int,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    cwd: Path | None = None,
    on_started: OnStarted | None = None,
    cancel: threading.Event | None = None,
) -> Service:
    """Start ``argv`` in its own session (so it outlives a CLI that exits, and can be stopped as a group) and wait
    until ``ready()`` answers True while the process is alive."""
    if cancel is not None and cancel.is_set():
        raise StartError(f"{name}: start cancelled")
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    service = Service(name=name, pid=process.pid, port=port, log_path=log_path, process=process)
    try:
        if on_started is not None:
            on_started(service)
        _wait_ready(service, process, ready, timeout, cancel)
    except BaseException:  # KeyboardInterrupt included: a process nobody knows about must not be left running
        with contextlib.suppress(Exception):
            service.stop()
        raise
    return service


def _wait_ready(
    service: Service,
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    timeout: float,
    cancel: threading.Event | None,
) -> None:
    name, log_path = service.name, service.log_path
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise StartError(f"{name} exited with {process.returncode} at start; {log_path}:\n{service.tail()}")
        if cancel is not None and cancel.is_set():
            raise StartError(f"{name}: start cancelled")
        try:
            answered = ready()
        except Exception:
            answered = False
        # Something answered; if our process died meanwhile, that was another program (e.g. on a port in use).
        if answered and process.poll() is None:
            return
        if time.monotonic() > deadline:
            raise StartError(f"{name} did not answer within {timeout:.0f}s; {log_path}:\n{service.tail()}")
        time.sleep(0.1)


def port_in_use(port: int) -> bool:
    """Whether something listens on (or holds) 127.0.0.1:``port``; a port in TIME_WAIT counts as free."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
        return False


def memcached_ready(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1) as sock:
        sock.sendall(b"version\r\n")
        return sock.recv(64).startswith(b"VERSION")


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # it answered


def start_memcached(
    log_dir: Path,
    port: int | None = None,
    memory_mb: int = 64,
    *,
    on_started: OnStarted | None = None,
    cancel: threading.Event | None = None,
) -> Service:
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    if not Path(binary).exists():
        raise StartError("memcached is not installed: run 'make setup' (Debian package 'memcached')")
    port = port or free_port()
    argv = [binary, "-l", HOST, "-p", str(port), "-U", "0", "-m", str(memory_mb), "-t", "2"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    ready = functools.partial(memcached_ready, port)
    return launch("memcached", argv, log_dir, port, ready, timeout=20, on_started=on_started, cancel=cancel)


def start_moto(
    log_dir: Path,
    port: int | None = None,
    *,
    on_started: OnStarted | None = None,
    cancel: threading.Event | None = None,
) -> Service:
    """moto in server mode: SNS, SQS, DynamoDB (and CloudFormation) on one port."""
    port = port or free_port()
    moto = Path(sys.executable).with_name("moto_server")
    argv = [str(moto)] if moto.exists() else [sys.executable, "-m", "moto.server"]
    argv += ["-H", HOST, "-p", str(port)]
    ready = functools.partial(http_ready, f"http://{HOST}:{port}/moto-api/")
    return launch("moto", argv, log_dir, port, ready, timeout=60, on_started=on_started, cancel=cancel)


def find_kinesis_local() -> Path:
    """node_modules/kinesis-local/main.js of this checkout (``make setup``), or $STREAMWRECK_KINESIS_LOCAL."""
    explicit = os.environ.get("STREAMWRECK_KINESIS_LOCAL")
    candidates = [Path(explicit)] if explicit else []
    for base in (Path.cwd(), *Path.cwd().parents, HERE.parents[1]):
        candidates.append(base / "node_modules" / "kinesis-local" / "main.js")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise StartError("kinesis-local is not installed: run 'make setup' (npm package kinesis-local)")


def start_kinesis_local(
    log_dir: Path,
    port: int | None = None,
    region: str = "us-east-1",
    *,
    on_started: OnStarted | None = None,
    cancel: threading.Event | None = None,
) -> Service:
    """kinesis-local on plain HTTP (HTTP/1.1 and h2c), listening on 127.0.0.1 only, with instant stream changes."""
    main = find_kinesis_local()
    node = shutil.which("node")
    if node is None:
        raise StartError("Node.js is not installed: install Node.js 20+ (Debian: apt-get install nodejs)")
    port = port or free_port()
    tls_port = free_port()
    env = {
        "KINESIS_MOCK_PLAIN_PORT": str(port),
        "KINESIS_MOCK_TLS_PORT": str(tls_port),
        "KINESIS_MOCK_CERT_PATH": str(main.parent / "server.json"),
        "AWS_REGION": region,
        "SHARD_LIMIT": "200",
        "LOG_LEVEL": "WARN",
        **{
            f"{op}_DURATION": "0ms"
            for op in (
                "CREATE_STREAM",
                "DELETE_STREAM",
                "REGISTER_STREAM_CONSUMER",
                "START_STREAM_ENCRYPTION",
                "STOP_STREAM_ENCRYPTION",
                "DEREGISTER_STREAM_CONSUMER",
                "MERGE_SHARDS",
                "SPLIT_SHARD",
                "UPDATE_SHARD_COUNT",
                "UPDATE_STREAM_MODE",
            )
        },
    }
    argv = [node, "-r", str(HERE / "loopback.cjs"), str(main)]
    ready = functools.partial(http_ready, f"http://{HOST}:{port}/")
    return launch(
        "kinesis-local", argv, log_dir, port, ready, env=env, timeout=60, on_started=on_started, cancel=cancel
    )


def log_holders(folder: Path) -> list[int]:
    """Pids of the processes with a file under ``folder`` open (every part of a stack writes its log there)."""
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            targets = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        if any(target.startswith(str(folder)) for target in targets):
            found.append(int(fd_dir.parent.name))
    return found
