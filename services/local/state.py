"""The local stack's state file, ``<dir>/stack.json``: every process ``up`` spawned (its pid and start time, so that
a reused pid is never taken for ours), the endpoints and the resource names; and the folder lock that lets one
``up`` or ``down`` run at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from streamwreck.core.errors import NotUp, StartError
from streamwreck.local import groups

STATE_FILE = "stack.json"
LOG_FOLDER = "logs"
LOST_FILE = "lost.jsonl"  # the watcher's report of lost records (``watch --export``), one JSON line each
WATCH = "watch"  # the watcher's part
# Emulators accept any credentials; the stack never uses the caller's own (nor their profile or session token).
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "streamwreck-local", "AWS_SECRET_ACCESS_KEY": "streamwreck-local"}

Say = Callable[[str], None]


@dataclass
class Part:
    name: str
    pid: int
    started: int | None  # groups.start_time: with the pid, tells our process from a reused pid
    log: str
    url: str | None = None
    metrics_url: str | None = None  # its Prometheus metrics

    def alive(self) -> bool:
        return groups.alive(self.pid, self.started)

    def members(self) -> list[psutil.Process]:
        """The live processes of the part's process group (its own and its children)."""
        return groups.group_members(self.pid, self.started)

    def stop(self, grace: float) -> bool:
        """Stop the part's group, its own process first; True if anything was running."""
        return groups.stop_group(self.pid, self.started, grace)


@dataclass
class StackState:
    dir: str
    region: str
    stream: str
    kcl_application: str
    shards: int
    skip_every: int
    started_at: str
    aws_endpoint_url: str = ""
    kinesis_endpoint_url: str = ""
    api_url: str = ""
    memcached: str = ""
    queue_url: str = ""
    dead_letter_queue_url: str = ""
    topic_arn: str = ""
    ready: bool = False
    service_env: dict[str, str] = field(default_factory=dict)  # settings the services get on top of the stack's
    parts: list[Part] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return Path(self.dir) / LOG_FOLDER

    def part(self, name: str) -> Part | None:
        return next((part for part in self.parts if part.name == name), None)

    @property
    def lost_file(self) -> Path:
        return Path(self.dir) / LOST_FILE

    @property
    def watch_application(self) -> str:
        """The watcher's own KCL application (and lease table)."""
        return f"streamwreck-watch-{self.stream}"

    @property
    def watch_url(self) -> str | None:
        """The watcher's metrics server (``/metrics``, ``/healthz``); None in a stack without a watcher."""
        watch = self.part(WATCH)
        return watch.url if watch is not None else None

    def aws_environment(self) -> dict[str, str]:
        """What boto3 (and the AWS SDK for Java) need to reach this stack's emulators."""
        return {
            **LOCAL_CREDENTIALS,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL": self.aws_endpoint_url,
            "AWS_ENDPOINT_URL_KINESIS": self.kinesis_endpoint_url,
            "AWS_ENDPOINT_URL_DYNAMODB": self.aws_endpoint_url,
        }

    def client(self, service: str) -> Any:
        """A boto3 client of this stack's emulators (kinesis-local for Kinesis, moto for the rest)."""
        from streamwreck.core.aws import session

        return session().client(
            service,
            endpoint_url=self.kinesis_endpoint_url if service == "kinesis" else self.aws_endpoint_url,
            region_name=self.region,
            aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def summary(self) -> dict[str, Any]:
        """The ``status --json`` document."""
        alive = {part.name: part.alive() for part in self.parts}
        return {
            "aws_endpoint_url": self.aws_endpoint_url,
            "kinesis_endpoint_url": self.kinesis_endpoint_url,
            "api_url": self.api_url,
            "stream": self.stream,
            "kcl_application": self.kcl_application,
            "memcached": self.memcached,
            "queue_url": self.queue_url,
            "dead_letter_queue_url": self.dead_letter_queue_url,
            "topic_arn": self.topic_arn,
            "watch_metrics_url": f"{self.watch_url}/metrics" if self.watch_url else None,
            "watch_application": self.watch_application if self.watch_url else None,
            "lost_records_file": str(self.lost_file) if self.watch_url else None,
            "region": self.region,
            "shards": self.shards,
            "skip_every": self.skip_every,
            "logs": str(self.logs),
            "started_at": self.started_at,
            "ready": self.ready,
            "running": all(alive.values()) and bool(self.parts),
            "parts": {
                part.name: {
                    "alive": alive[part.name],
                    "pid": part.pid,
                    "url": part.url,
                    "log": part.log,
                    "metrics_url": part.metrics_url,
                }
                for part in self.parts
            },
        }

    def shell_exports(self) -> str:
        """``export`` lines that point boto3 (and so streamwreck produce/check) at the stack."""
        return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in self.aws_environment().items())

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackState:
        document = json.loads(text)
        document["parts"] = [Part(**part) for part in document.get("parts", [])]
        return cls(**document)


def state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def load(directory: Path) -> StackState | None:
    try:
        return StackState.from_json(state_path(directory).read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as exc:
        raise StartError(f"{state_path(directory)} is not a stack state file ({exc}); remove it by hand") from None


def save(state: StackState) -> None:
    path = state_path(Path(state.dir))
    temporary = path.with_suffix(".tmp")
    temporary.write_text(state.to_json())
    temporary.replace(path)


def status(directory: Path) -> StackState:
    """The stack in ``directory``; NotUp if there is none."""
    state = load(directory.resolve())
    if state is None:
        raise NotUp(f"no local stack in {directory} (start one with 'streamwreck local up')")
    return state


@contextlib.contextmanager
def locked(directory: Path, action: str, say: Say | None = None) -> Iterator[None]:
    """One ``up`` or ``down`` at a time per folder; if another holds the folder, say so before waiting for it."""
    directory.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 200, 0).decode(errors="replace").split()
            doing = f"an '{holder[0]}' (pid {holder[1]})" if len(holder) == 2 else "another 'up' or 'down'"
            if say is not None:
                say(f"{doing} is in progress in {directory}: waiting for it to finish (Ctrl-C stops waiting)")
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{action} {os.getpid()}".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock
