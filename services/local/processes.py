"""Processes on 127.0.0.1: the emulators and memcached as plain processes, used by ``streamwreck local`` and the tests.

Each start function launches one process with its output in ``log_dir``, waits until it answers (polling, not
sleeping a fixed time), and returns a :class:`Service`; a process that dies or does not answer in time raises
StartError with the tail of its log. ``on_started`` is told about the process right after it is spawned (before it
answers), so that a caller can record it for a later stop; and a launch that does not return its service, for
whatever reason (an error, Ctrl-C, ``cancel`` set by another thread), stops the process itself first.

Each process leads its own session and process group, and is stopped as a group (:mod:`streamwreck.local.groups`).
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from streamwreck.core.clock import wait_until
from streamwreck.core.commands import streamwreck_argv
from streamwreck.core.errors import ConfigError, StartError, WaitTimeout
from streamwreck.core.settings import LocalSettings, environment, load_settings, variable
from streamwreck.local import groups

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent


@dataclass
class Service:
    name: str
    pid: int
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started: int | None = None  # groups.start_time(pid) at the launch

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return groups.alive(self.pid, self.started)

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after ``timeout`` (kinesis-local can ignore SIGTERM)."""
        groups.stop_group(self.pid, self.started, timeout, leader_first=False)
        if self.process is not None:
            self.process.wait(timeout=1)

    def tail(self, lines: int = 20) -> str:
        return tail(self.log_path, lines)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- launching ------------------------------------------------------------------------------------------------


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
    until ``ready()`` answers True while the process is alive. ``env`` is added to this process' environment."""
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
            env={**environment(), **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    service = Service(name, process.pid, port, log_path, process, groups.start_time(process.pid))
    try:
        if on_started is not None:
            on_started(service)
        _wait_ready(service, process, ready, timeout, cancel)
    except BaseException:  # KeyboardInterrupt included: a process nobody knows about must not be left running
        with contextlib.suppress(OSError, psutil.Error, subprocess.SubprocessError):
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

    def answered() -> bool:
        if process.poll() is not None:
            raise StartError(f"{name} exited with {process.returncode} at start; {log_path}:\n{service.tail()}")
        if cancel is not None and cancel.is_set():
            raise StartError(f"{name}: start cancelled")
        try:
            up = ready()
        except (OSError, http.client.HTTPException):  # not listening yet, or a half-started server
            return False
        # Something answered; if our process died meanwhile, that was another program (e.g. on a port in use).
        return up and process.poll() is None

    try:
        wait_until(answered, timeout, f"{name} to answer", interval=0.1)
    except WaitTimeout:
        raise StartError(f"{name} did not answer within {timeout:.0f}s; {log_path}:\n{service.tail()}") from None


def port_in_use(port: int) -> bool:
    """Whether something listens on (or holds) 127.0.0.1:``port``; a port in TIME_WAIT counts as free."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
        return False


# --- readiness checks -----------------------------------------------------------------------------------------


def memcached_ready(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1) as sock:
        sock.sendall(b"version\r\n")
        return sock.recv(64).startswith(b"VERSION")


def http_ready(url: str, ok_only: bool = False) -> bool:
    """Whether ``url`` answers at all, or with ``ok_only`` answers 200 (a readiness endpoint)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return not ok_only or bool(response.status == 200)
    except urllib.error.HTTPError:
        return not ok_only  # it answered


def log_marker(path: Path, marker: str) -> Callable[[], bool]:
    """A readiness check: has ``marker`` been written to the log at ``path`` since now? Logs are appended to across
    runs (a reused folder), so an old run's marker must not count."""
    try:
        offset = path.stat().st_size
    except FileNotFoundError:
        offset = 0

    def written() -> bool:
        try:
            with open(path, "rb") as log:
                log.seek(offset)
                return marker.encode() in log.read()
        except OSError:
            return False

    return written


# --- the emulators and memcached ------------------------------------------------------------------------------


def find_memcached() -> str:
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    if not Path(binary).exists():
        raise ConfigError("memcached is missing: run 'make setup' or install the Debian package 'memcached'")
    return binary


def find_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ConfigError("node is missing: install Node.js 20+ (Debian package 'nodejs')")
    return node


def moto_argv() -> list[str]:
    if importlib.util.find_spec("moto") is None:
        raise ConfigError("moto is missing: run 'make setup' (pip install -e '.[local]')")
    moto = Path(sys.executable).with_name("moto_server")
    return [str(moto)] if moto.exists() else [sys.executable, "-m", "moto.server"]


def find_kinesis_local(configured: str | None) -> Path:
    """kinesis-local's main.js: ``configured`` (STREAMWRECK_KINESIS_LOCAL) when set, and then only there, else
    node_modules/kinesis-local/main.js of the working directory, one of its parents, or this checkout."""
    if configured:
        if not Path(configured).is_file():
            raise ConfigError(f"{variable('kinesis_local')}={configured}: no such file")
        return Path(configured)
    for base in dict.fromkeys((Path.cwd(), *Path.cwd().parents, HERE.parents[1])):
        candidate = base / "node_modules" / "kinesis-local" / "main.js"
        if candidate.is_file():
            return candidate
    raise ConfigError("kinesis-local is missing: run 'make setup' (npm package 'kinesis-local' in node_modules/)")


def start_memcached(
    log_dir: Path,
    port: int | None = None,
    memory_mb: int = 64,
    *,
    on_started: OnStarted | None = None,
    cancel: threading.Event | None = None,
) -> Service:
    port = port or free_port()
    argv = [find_memcached(), "-l", HOST, "-p", str(port), "-U", "0", "-m", str(memory_mb), "-t", "2"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    ready = functools.partial(memcached_ready, port)
    return launch("memcached", argv, log_dir, port, ready, timeout=20, on_started=on_started, cancel=cancel)


def start_api(
    log_dir: Path,
    memcached_port: int,
    port: int | None = None,
    *,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
) -> Service:
    """``streamwreck api`` on 127.0.0.1, on the memcached at ``memcached_port``; ready once /healthz answers."""
    port = port or free_port()
    settings = {
        "STREAMWRECK_MEMCACHED_SERVERS": f"{HOST}:{memcached_port}",
        "STREAMWRECK_API_HOST": HOST,
        "STREAMWRECK_API_PORT": str(port),
        "STREAMWRECK_API_WORKERS": str(workers),
        **(env or {}),
    }
    ready = functools.partial(http_ready, f"http://{HOST}:{port}/healthz")
    return launch("api", streamwreck_argv("api"), log_dir, port, ready, env=settings, timeout=30)


def start_moto(
    log_dir: Path,
    port: int | None = None,
    *,
    on_started: OnStarted | None = None,
    cancel: threading.Event | None = None,
) -> Service:
    """moto in server mode: SNS, SQS, DynamoDB (and CloudFormation) on one port."""
    port = port or free_port()
    argv = [*moto_argv(), "-H", HOST, "-p", str(port)]
    ready = functools.partial(http_ready, f"http://{HOST}:{port}/moto-api/")
    return launch("moto", argv, log_dir, port, ready, timeout=60, on_started=on_started, cancel=cancel)


KINESIS_LOCAL_OPERATIONS = (  # each takes no time: their *_DURATION is 0ms
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


def start_kinesis_local(
    log_dir: Path,
    port: int | None = None,
    region: str = "us-east-1",
    *,
    main: Path | None = None,
    on_started: OnStarted | None = None,
    cancel: threading.Event | None = None,
) -> Service:
    """kinesis-local on plain HTTP (HTTP/1.1 and h2c), listening on 127.0.0.1 only, with instant stream changes.
    ``main`` is its main.js (default: :func:`find_kinesis_local` with the STREAMWRECK_KINESIS_LOCAL setting)."""
    main = main or find_kinesis_local(load_settings(LocalSettings).kinesis_local)
    node = find_node()
    port = port or free_port()
    env = {
        "KINESIS_MOCK_PLAIN_PORT": str(port),
        "KINESIS_MOCK_TLS_PORT": str(free_port()),
        "KINESIS_MOCK_CERT_PATH": str(main.parent / "server.json"),
        "AWS_REGION": region,
        "SHARD_LIMIT": "200",
        "LOG_LEVEL": "WARN",
        **{f"{operation}_DURATION": "0ms" for operation in KINESIS_LOCAL_OPERATIONS},
    }
    argv = [node, "-r", str(HERE / "loopback.cjs"), str(main)]
    ready = functools.partial(http_ready, f"http://{HOST}:{port}/")
    return launch(
        "kinesis-local", argv, log_dir, port, ready, env=env, timeout=60, on_started=on_started, cancel=cancel
    )
