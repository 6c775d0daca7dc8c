"""The embedded local stack: emulators, memcached and the three streamwreck services as background processes.

``up`` starts every part on 127.0.0.1 in its own session (so it outlives the command and can be stopped as a
process group, the KCL daemon's Python children included), writes each process to ``<dir>/stack.json`` as soon as
it is spawned (before it answers), creates the AWS resources and waits until each part answers. If anything fails
or the user presses Ctrl-C, ``up`` stops every process it spawned before it returns; the state file goes only once
they are all gone. ``down`` stops exactly the processes named in that file, checking each pid's start time so that a
pid reused by another program is never signalled.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures as concurrent_futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamwreck.core.errors import AlreadyUp, NotUp, StartError, StreamwreckError
from streamwreck.local import processes, resources
from streamwreck.local.processes import HOST, Service

STATE_FILE = "stack.json"
LOG_FOLDER = "logs"
DEFAULT_DIR = Path(".streamwreck")
REPO = Path(__file__).resolve().parents[2]
# Emulators accept any credentials; the stack never uses the caller's own (nor their profile or session token).
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "streamwreck-local", "AWS_SECRET_ACCESS_KEY": "streamwreck-local"}
# Order of start; down stops in reverse (the consumer first, the emulators last).
PART_ORDER = ("memcached", "moto", "kinesis-local", "recorder", "api", "processor")

Say = Callable[[str], None]


@dataclass
class Options:
    dir: Path = DEFAULT_DIR
    stream: str = "demo"
    shards: int = 4
    skip_every: int = 5
    region: str = "us-east-1"
    kinesis_port: int | None = None
    moto_port: int | None = None
    memcached_port: int | None = None
    api_port: int | None = None
    consumer_timeout: float = 240.0


@dataclass
class Part:
    name: str
    pid: int
    started: int | None  # start time in clock ticks since boot (/proc): tells our process from a reused pid
    log: str
    url: str | None = None


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
    parts: list[Part] = field(default_factory=list)

    @property
    def logs(self) -> Path:
        return Path(self.dir) / LOG_FOLDER

    def part(self, name: str) -> Part | None:
        return next((part for part in self.parts if part.name == name), None)

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

    def summary(self) -> dict[str, Any]:
        """The ``status --json`` document."""
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
            "region": self.region,
            "shards": self.shards,
            "skip_every": self.skip_every,
            "logs": str(self.logs),
            "started_at": self.started_at,
            "ready": self.ready,
            "running": all(part_alive(part) for part in self.parts) and bool(self.parts),
            "parts": {
                part.name: {"alive": part_alive(part), "pid": part.pid, "url": part.url, "log": part.log}
                for part in self.parts
            },
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> StackState:
        document = json.loads(text)
        document["parts"] = [Part(**part) for part in document.get("parts", [])]
        return cls(**document)


# --- state file -----------------------------------------------------------------------------------------------


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


# --- processes: identity, liveness, stopping ------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(process group, start time, state) from /proc/<pid>/stat; None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5): state; pgrp is field 5, starttime field 22.
    return int(fields[2]), int(fields[19]), fields[0]


def start_time(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat[1] if stat else None


def part_alive(part: Part) -> bool:
    stat = proc_stat(part.pid)
    if stat is None:
        return False if Path("/proc/self/stat").exists() else processes.pid_alive(part.pid)
    return stat[2] != "Z" and (part.started is None or stat[1] == part.started)


def group_members(part: Part) -> list[int]:
    """Live processes of the part's process group (its session leader's pid), not started before the part."""
    if not Path("/proc/self/stat").exists():
        return [part.pid] if processes.pid_alive(part.pid) else []
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = proc_stat(int(entry.name))
        if stat is None or stat[0] != part.pid or stat[2] == "Z":
            continue
        if part.started is not None and stat[1] < part.started:
            continue  # the group id was reused by something older than our part: not ours
        members.append(int(entry.name))
    return members


def stop_part(part: Part, grace: float = 5.0) -> bool:
    """Stop the part's process group; True if anything was running.

    SIGTERM goes to the part's own process first, so that a part with children shuts them down in its order (the
    processor: the KCL daemon asks its record processors to finish); whatever of the group is left after ``grace``
    gets SIGTERM, and after one more second SIGKILL (kinesis-local can ignore SIGTERM)."""
    if not group_members(part):
        return False
    steps = ((signal.SIGTERM, [part.pid], grace), (signal.SIGTERM, None, 1.0), (signal.SIGKILL, None, 5.0))
    for sig, only, wait in steps:
        for pid in only if only is not None else group_members(part):
            if pid in group_members(part):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            processes.pid_alive(part.pid)  # reaps the leader if it is our own child (tests call up() in-process)
            if not group_members(part):
                return True
            time.sleep(0.05)
    return True


# --- prerequisites --------------------------------------------------------------------------------------------


def find_kcl_jars() -> Path | None:
    """The MultiLangDaemon's jars: $STREAMWRECK_KCL_JARS_DIR, build/kcl-jars of this checkout, or amazon_kclpy's."""
    explicit = os.environ.get("STREAMWRECK_KCL_JARS_DIR")
    candidates = [Path(explicit)] if explicit else []
    candidates += [base / "build" / "kcl-jars" for base in (Path.cwd(), *Path.cwd().parents, REPO)]
    with contextlib.suppress(ImportError):
        import amazon_kclpy

        candidates.append(Path(amazon_kclpy.__file__).parent / "jars")
    for candidate in candidates:
        if any(candidate.glob("amazon-kinesis-client-multilang-*.jar")):
            return candidate.resolve()
    return None


def missing_prerequisites() -> list[str]:
    """One line per thing the stack needs and this machine lacks, naming what to install."""
    missing = []
    if not (shutil.which("memcached") or Path("/usr/bin/memcached").exists()):
        missing.append("memcached is missing: run 'make setup' or install the Debian package 'memcached'")
    if not shutil.which("java"):
        missing.append("java is missing: install Java 17+ (Debian package 'openjdk-17-jre-headless')")
    if not shutil.which("node"):
        missing.append("node is missing: install Node.js 20+ (Debian package 'nodejs')")
    try:
        processes.find_kinesis_local()
    except StartError:
        missing.append("kinesis-local is missing: run 'make setup' (npm package 'kinesis-local' in node_modules/)")
    if find_kcl_jars() is None:
        missing.append("the KCL jars are missing: run 'make setup' (Maven fetches them into build/kcl-jars)")
    try:
        import moto.server  # noqa: F401
    except ImportError:
        missing.append("moto is missing: run 'make setup' (pip install -e '.[local]')")
    return missing


# --- up -------------------------------------------------------------------------------------------------------


def _streamwreck_argv(command: str) -> list[str]:
    script = Path(sys.executable).with_name("streamwreck")
    return [str(script), command] if script.exists() else [sys.executable, "-m", "streamwreck.cli.main", command]


def _clean_env_argv(argv: list[str], env: Mapping[str, str]) -> list[str]:
    """Prefix ``argv`` with env(1) unsetting every inherited AWS_*/STREAMWRECK_* variable that ``env`` does not set:
    the stack's services must not pick up the caller's profile, session token, API key or endpoints."""
    unset = [name for name in sorted(os.environ) if name.startswith(("AWS_", "STREAMWRECK_")) and name not in env]
    if not unset:
        return argv
    return ["env", *[arg for name in unset for arg in ("-u", name)], *argv]


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


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


def clients(state: StackState) -> tuple[Any, Any, Any, Any]:
    import boto3

    session = boto3.session.Session(
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=state.region,
    )
    return (
        session.client("kinesis", endpoint_url=state.kinesis_endpoint_url),
        session.client("sns", endpoint_url=state.aws_endpoint_url),
        session.client("sqs", endpoint_url=state.aws_endpoint_url),
        session.client("dynamodb", endpoint_url=state.aws_endpoint_url),
    )


_state_lock = threading.Lock()  # the emulators start in threads, each recording itself


def _record(state: StackState, service: Service, url: str | None = None) -> None:
    """Write a spawned process to the state file (called before it answers: whatever happens next, down finds it)."""
    url = url or (f"{HOST}:{service.port}" if service.name == "memcached" else service.url)
    part = Part(service.name, service.pid, start_time(service.pid), str(service.log_path), url)
    with _state_lock:
        state.parts.append(part)
        save(state)


def _recorder_for(state: StackState, url: str | None = None) -> processes.OnStarted:
    def record(service: Service) -> None:
        _record(state, service, url)

    return record


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Ctrl-C is ignored while the block runs: a clean-up that must finish (only the main thread can do this)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def _aws_error(exc: BaseException) -> str:
    """One line for an error of a boto3 call to an emulator."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        error = response["Error"]
        return f"{error.get('Code', type(exc).__name__)}: {error.get('Message', '') or exc}"
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def _aws_step(state: StackState, doing: str, *parts: str) -> Iterator[None]:
    """An AWS call to the emulators during ``up``: any failure becomes one StartError line plus their logs' tails."""
    try:
        yield
    except StreamwreckError:
        raise
    except Exception as exc:
        tails = ""
        for name in parts:
            part = state.part(name)
            if part is not None:
                tails += f"\n{part.log}:\n{processes.tail(Path(part.log), 10)}"
        raise StartError(f"{doing} failed: {_aws_error(exc)}{tails}") from None


def up(options: Options, say: Say = print) -> StackState:
    """Start the stack in ``options.dir`` and wait until every part is ready; on failure stop what was started."""
    directory = options.dir.resolve()
    with locked(directory, "up", say):
        existing = load(directory)
        if existing is not None:
            if any(part_alive(part) for part in existing.parts):
                raise AlreadyUp(
                    f"a local stack is already up in {directory} (stream {existing.stream}, API {existing.api_url},"
                    f" started {existing.started_at}): 'streamwreck local status' shows it, 'streamwreck local down'"
                    " stops it"
                )
            _stop_all(existing, say=lambda _: None)  # a stale file (e.g. after a reboot): tidy up and start afresh
            state_path(directory).unlink(missing_ok=True)
        missing = missing_prerequisites()
        if missing:
            raise StartError("\n".join(missing))
        _check_ports(options)
        names = resources.names_for(options.stream)
        state = StackState(
            dir=str(directory),
            region=options.region,
            stream=names.stream,
            kcl_application=names.kcl_application,
            shards=options.shards,
            skip_every=options.skip_every,
            started_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )
        state.logs.mkdir(parents=True, exist_ok=True)
        save(state)
        try:
            _start(state, options, names, say)
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            say(f"{'interrupted' if interrupted else 'start failed'}: stopping what was started")
            _stop_started(state, say)
            raise
        state.ready = True
        save(state)
        return state


def _check_ports(options: Options) -> None:
    """A port given explicitly must be free: else another server could answer the readiness check for ours."""
    for option, port in (
        ("--kinesis-port", options.kinesis_port),
        ("--moto-port", options.moto_port),
        ("--memcached-port", options.memcached_port),
        ("--api-port", options.api_port),
    ):
        if port is not None and processes.port_in_use(port):
            raise StartError(f"port {port} ({option}) is already in use on {HOST}: choose another, or leave it out")


def _stop_started(state: StackState, say: Say) -> None:
    """Stop every recorded process (Ctrl-C cannot cut this short); the state file goes once none is left."""
    for _ in range(3):  # a Ctrl-C landing before the signal is ignored only restarts the clean-up
        try:
            with _uninterrupted():
                _stop_all(state, say=lambda _: None)
                survivors = [part.name for part in state.parts if group_members(part)]
                if survivors:
                    say(f"could not stop {', '.join(survivors)}: 'streamwreck local down --dir {state.dir}' retries")
                else:
                    state_path(Path(state.dir)).unlink(missing_ok=True)
                return
        except KeyboardInterrupt:
            continue


def _start(state: StackState, options: Options, names: resources.Names, say: Say) -> None:
    logs = state.logs
    say("starting memcached, moto (SNS, SQS, DynamoDB) and kinesis-local")
    _start_emulators(state, options)
    memcached, moto, kinesis = (state.part(name) for name in ("memcached", "moto", "kinesis-local"))
    assert memcached and moto and kinesis and memcached.url and moto.url and kinesis.url
    state.memcached, state.aws_endpoint_url, state.kinesis_endpoint_url = memcached.url, moto.url, kinesis.url
    save(state)

    say(f"creating stream {names.stream} ({options.shards} shards), topic, queue and dead-letter queue")
    kinesis_client, sns, sqs, dynamodb = clients(state)
    with _aws_step(state, "creating the stream, topic and queues", "kinesis-local", "moto"):
        created = resources.create(names, options.shards, kinesis_client, sns, sqs)
    state.topic_arn, state.queue_url = created.topic_arn, created.queue_url
    state.dead_letter_queue_url = created.dead_letter_queue_url
    save(state)

    jars = find_kcl_jars()
    env = {
        **state.aws_environment(),
        "STREAMWRECK_MEMCACHED_SERVERS": state.memcached,
        "STREAMWRECK_QUEUE_URL": state.queue_url,
        "STREAMWRECK_TOPIC_ARN": state.topic_arn,
        "STREAMWRECK_STREAM_NAME": state.stream,
        "STREAMWRECK_APPLICATION_NAME": state.kcl_application,
        "STREAMWRECK_REGION": state.region,
        "STREAMWRECK_SKIP_EVERY": str(state.skip_every),
        "STREAMWRECK_INITIAL_POSITION": "TRIM_HORIZON",
        "STREAMWRECK_RETRIEVAL_MODE": "POLLING",
        "STREAMWRECK_METRICS_LEVEL": "NONE",
        "STREAMWRECK_KCL_JARS_DIR": str(jars),
        "STREAMWRECK_RECORDER_WAIT_SECONDS": "2",  # a short long poll: down need not wait for it
        "STREAMWRECK_WORKER_ID": "local",
        "STREAMWRECK_LOCAL_PROFILE": "true",  # the KCL's emulator profile: no worker metrics, fast lease sync
        "PYTHONUNBUFFERED": "1",
    }

    # The consumer first: the KCL daemon needs the longest to start (~30 s to its leases).
    rule = f"skips sequence numbers divisible by {state.skip_every}" if state.skip_every else "skips none"
    say(f"starting the processor (KCL application {state.kcl_application}; demo rule: {rule})")
    processor = processes.launch(
        "processor",
        _clean_env_argv(_streamwreck_argv("processor"), env),
        logs,
        0,
        lambda: True,
        env=env,
        on_started=_recorder_for(state, f"KCL application {state.kcl_application}"),
    )

    say("starting the recorder and the API")
    processes.launch(
        "recorder",
        _clean_env_argv(_streamwreck_argv("recorder"), env),
        logs,
        0,
        log_marker(logs / "recorder.log", "recorder_started"),
        env=env,
        timeout=60,
        on_started=_recorder_for(state, state.queue_url),
    )
    api_port = options.api_port or processes.free_port()
    api_env = {**env, "STREAMWRECK_API_HOST": HOST, "STREAMWRECK_API_PORT": str(api_port)}
    api = processes.launch(
        "api",
        _clean_env_argv(_streamwreck_argv("api"), api_env),
        logs,
        api_port,
        lambda: _http_ok(f"http://{HOST}:{api_port}/readyz"),
        env=api_env,
        timeout=60,
        on_started=_recorder_for(state),
    )
    state.api_url = api.url
    save(state)

    say(f"waiting for the KCL consumer to lease all {options.shards} shards (about 30-60 s)")
    _wait_for_leases(state, processor, kinesis_client, dynamodb, options.consumer_timeout)


def _start_emulators(state: StackState, options: Options) -> None:
    """memcached, moto and kinesis-local in parallel. Each is recorded as it is spawned; when one fails (or Ctrl-C
    comes) the others are cancelled, and this returns only once no start is still in progress."""
    logs, cancel = state.logs, threading.Event()
    record = _recorder_for(state)
    starters: list[Callable[[], Service]] = [
        lambda: processes.start_memcached(logs, options.memcached_port, on_started=record, cancel=cancel),
        lambda: processes.start_moto(logs, options.moto_port, on_started=record, cancel=cancel),
        lambda: processes.start_kinesis_local(
            logs, options.kinesis_port, region=options.region, on_started=record, cancel=cancel
        ),
    ]
    pool = ThreadPoolExecutor(max_workers=len(starters))
    try:
        futures = [pool.submit(start) for start in starters]
        done, _ = concurrent_futures.wait(futures, return_when=concurrent_futures.FIRST_EXCEPTION)
        for future in futures:
            error = future.exception() if future in done else None
            if error is not None:
                raise error
    except BaseException:
        cancel.set()  # the starts in progress stop their process and return at once
        with _uninterrupted():
            pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)


def lease_owners(dynamodb: Any, table: str) -> dict[str, dict[str, Any]]:
    """The KCL lease table as {lease key: {"owner", "checkpoint"}}; empty until the daemon created it."""
    leases: dict[str, dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        try:
            page = dynamodb.scan(**kwargs)
        except dynamodb.exceptions.ResourceNotFoundException:
            return {}
        for item in page.get("Items", []):
            key = item.get("leaseKey", {}).get("S")
            if key:
                leases[key] = {
                    "owner": item.get("leaseOwner", {}).get("S"),
                    "checkpoint": item.get("checkpoint", {}).get("S"),
                }
        if "LastEvaluatedKey" not in page:
            return leases
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _wait_for_leases(state: StackState, processor: Service, kinesis: Any, dynamodb: Any, timeout: float) -> None:
    with _aws_step(state, f"listing the shards of stream {state.stream}", "kinesis-local"):
        shards = {shard["ShardId"] for shard in kinesis.list_shards(StreamName=state.stream)["Shards"]}
    started = time.monotonic()
    while True:
        if not processor.alive():
            raise StartError(f"the processor exited at start; {processor.log_path}:\n{processor.tail(30)}")
        with _aws_step(state, f"reading the KCL lease table {state.kcl_application}", "moto"):
            leases = lease_owners(dynamodb, state.kcl_application)
        if all(leases.get(shard, {}).get("owner") for shard in shards):
            return
        if time.monotonic() - started > timeout:
            owned = sum(1 for shard in shards if leases.get(shard, {}).get("owner"))
            raise StartError(
                f"the KCL consumer leased {owned} of {len(shards)} shards within {timeout:.0f}s;"
                f" {processor.log_path}:\n{processor.tail(30)}"
            )
        time.sleep(1.0)


# --- down -----------------------------------------------------------------------------------------------------


# Graceful stop time per part; the emulators and memcached keep nothing worth a graceful stop. The KCL daemon's
# graceful shutdown waits up to the lease failover time (10 s) for its record processors: nothing a stack that is
# going away entirely needs, so its group is stopped after 3 s.
GRACE_SECONDS = {"processor": 3.0, "recorder": 3.0, "api": 3.0}
SERVICES = ("processor", "recorder", "api")


def _stop_all(state: StackState, say: Say) -> list[str]:
    """The services first (they talk to the emulators), then the emulators; each group in parallel."""
    stopped = []
    known = [part for part in state.parts if part.name in PART_ORDER]
    others = [part for part in state.parts if part.name not in PART_ORDER]
    for group in ([p for p in known if p.name in SERVICES] + others, [p for p in known if p.name not in SERVICES]):
        with ThreadPoolExecutor(max_workers=max(1, len(group))) as pool:
            results = list(pool.map(lambda part: stop_part(part, GRACE_SECONDS.get(part.name, 1.0)), group))
        for part, was_running in zip(group, results, strict=True):
            if was_running:
                stopped.append(part.name)
                say(f"stopped {part.name} (pid {part.pid})")
    return stopped


def down(directory: Path, say: Say = print) -> StackState | None:
    """Stop every process ``up`` started in ``directory``; None if there was no stack (safe to run twice)."""
    directory = directory.resolve()
    if not state_path(directory).exists():
        return None
    with locked(directory, "down", say):
        state = load(directory)
        if state is None:
            return None
        _stop_all(state, say)
        state_path(directory).unlink(missing_ok=True)
        return state


def status(directory: Path) -> StackState:
    state = load(directory.resolve())
    if state is None:
        raise NotUp(f"no local stack in {directory} (start one with 'streamwreck local up')")
    return state


def shell_exports(state: StackState) -> str:
    """``export`` lines that point boto3 (and so streamwreck produce/check) at the stack."""
    values = {**state.aws_environment()}
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in values.items())
