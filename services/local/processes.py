"""The local emulators and memcached as plain processes on 127.0.0.1: used by ``streamwreck local`` and the tests.

Each start function launches one process with its output in ``log_dir``, waits until it answers (polling, not
sleeping a fixed time), and returns a :class:`Service`; a process that dies or does not answer in time raises
StartError with the tail of its log.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from services.core.errors import StreamwreckError

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent


class StartError(StreamwreckError):
    """A local service did not start; the message carries the tail of its log."""


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


def launch(
    name: str,
    argv: list[str],
    log_dir: Path,
    port: int,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    cwd: Path | None = None,
) -> Service:
    """Start ``argv`` in its own session (so it outlives a CLI that exits, and can be stopped as a group)."""
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
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise StartError(f"{name} exited with {process.returncode} at start; {log_path}:\n{service.tail()}")
        try:
            if ready():
                return service
        except Exception:
            pass
        if time.monotonic() > deadline:
            service.stop()
            raise StartError(f"{name} did not answer within {timeout:.0f}s; {log_path}:\n{service.tail()}")
        time.sleep(0.1)


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


def start_memcached(log_dir: Path, port: int | None = None, memory_mb: int = 64) -> Service:
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    if not Path(binary).exists():
        raise StartError("memcached is not installed: run 'make setup' (Debian package 'memcached')")
    port = port or free_port()
    argv = [binary, "-l", HOST, "-p", str(port), "-U", "0", "-m", str(memory_mb), "-t", "2"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    return launch("memcached", argv, log_dir, port, lambda: memcached_ready(port), timeout=20)


def start_moto(log_dir: Path, port: int | None = None) -> Service:
    """moto in server mode: SNS, SQS, DynamoDB (and CloudFormation) on one port."""
    port = port or free_port()
    moto = Path(sys.executable).with_name("moto_server")
    argv = [str(moto)] if moto.exists() else [sys.executable, "-m", "moto.server"]
    argv += ["-H", HOST, "-p", str(port)]
    return launch("moto", argv, log_dir, port, lambda: http_ready(f"http://{HOST}:{port}/moto-api/"), timeout=60)


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


def start_kinesis_local(log_dir: Path, port: int | None = None, region: str = "us-east-1") -> Service:
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
    return launch(
        "kinesis-local", argv, log_dir, port, lambda: http_ready(f"http://{HOST}:{port}/"), env=env, timeout=60
    )
