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
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures as concurrent_futures
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from streamwreck.checker.leases import lease_shard, read_leases
from streamwreck.checker.reading import list_shards
from streamwreck.core.aws import AWS_ERRORS, error_code, translate
from streamwreck.core.clock import iso, wait_until
from streamwreck.core.errors import AlreadyUp, AwsError, ConfigError, StartError, WaitTimeout
from streamwreck.core.settings import LocalSettings, environment, load_settings
from streamwreck.local import parts, processes, resources
from streamwreck.local.processes import HOST, Service
from streamwreck.local.state import WATCH, Say, StackState, load, locked, save, state_path
from streamwreck.processor.jars import find_jars, find_java

DEFAULT_DIR = Path(".streamwreck")
# Order of start; down stops in reverse (the consumer first, the emulators last).
PART_ORDER = ("memcached", "moto", "kinesis-local", "recorder", "api", "processor", "watch")
SERVICES = ("watch", "processor", "recorder", "api")
# Graceful stop time per part; the emulators and memcached keep nothing worth a graceful stop. The KCL daemon's
# graceful shutdown waits up to the lease failover time (10 s) for its record processors: nothing a stack that is
# going away entirely needs, so its group is stopped after 3 s.
GRACE_SECONDS = {"processor": 3.0, "recorder": 3.0, "api": 3.0, "watch": 3.0}


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
    watch: bool = True  # run `streamwreck watch` beside the consumer
    service_env: dict[str, str] = field(default_factory=dict)  # extra settings of the services (watcher included)


def missing_prerequisites(settings: LocalSettings) -> list[str]:
    """One line per thing the stack needs and this machine lacks, naming what to install."""
    lookups: list[Callable[[], object]] = [
        processes.find_memcached,
        lambda: find_java(environment().get("JAVA_HOME")),  # as the processor, which inherits it, will look
        processes.find_node,
        lambda: processes.find_kinesis_local(settings.kinesis_local),
        lambda: find_jars(settings.kcl_jars_dir),
        processes.moto_argv,
    ]
    missing = []
    for lookup in lookups:
        try:
            lookup()
        except ConfigError as exc:
            missing.append(str(exc))
    return missing


# --- up -------------------------------------------------------------------------------------------------------


def up(options: Options, say: Say = print, settings: LocalSettings | None = None) -> StackState:
    """Start the stack in ``options.dir`` and wait until every part is ready; on failure stop what was started."""
    settings = settings or load_settings(LocalSettings)
    directory = options.dir.resolve()
    with locked(directory, "up", say):
        existing = load(directory)
        if existing is not None:
            if any(part.alive() for part in existing.parts):
                raise AlreadyUp(
                    f"a local stack is already up in {directory} (stream {existing.stream}, API {existing.api_url},"
                    f" started {existing.started_at}): 'streamwreck local status' shows it, 'streamwreck local down'"
                    " stops it"
                )
            _stop_all(existing, say=lambda _: None)  # a stale file (e.g. after a reboot): tidy up and start afresh
            state_path(directory).unlink(missing_ok=True)
        missing = missing_prerequisites(settings)
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
            started_at=iso(time.time(), "seconds"),
            service_env=dict(options.service_env),
        )
        state.logs.mkdir(parents=True, exist_ok=True)
        save(state)
        try:
            _start(state, options, names, settings, say)
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
                survivors = [part.name for part in state.parts if part.members()]
                if survivors:
                    say(f"could not stop {', '.join(survivors)}: 'streamwreck local down --dir {state.dir}' retries")
                else:
                    state_path(Path(state.dir)).unlink(missing_ok=True)
                return
        except KeyboardInterrupt:
            continue


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


@contextlib.contextmanager
def _aws_step(state: StackState, doing: str, *parts: str) -> Iterator[None]:
    """An AWS call to the emulators during ``up``: a failure becomes one StartError line plus their logs' tails."""
    try:
        yield
    except (*AWS_ERRORS, AwsError, WaitTimeout) as exc:
        error = translate(exc, doing) if isinstance(exc, AWS_ERRORS) else exc
        tails = ""
        for name in parts:
            part = state.part(name)
            if part is not None:
                tails += f"\n{part.log}:\n{processes.tail(Path(part.log), 10)}"
        raise StartError(f"{error}{tails}") from None


def _start(state: StackState, options: Options, names: resources.Names, settings: LocalSettings, say: Say) -> None:
    say("starting memcached, moto (SNS, SQS, DynamoDB) and kinesis-local")
    _start_emulators(state, options, settings)
    memcached, moto, kinesis = (state.part(name) for name in ("memcached", "moto", "kinesis-local"))
    assert memcached and moto and kinesis and memcached.url and moto.url and kinesis.url
    state.memcached, state.aws_endpoint_url, state.kinesis_endpoint_url = memcached.url, moto.url, kinesis.url
    save(state)

    say(f"creating stream {names.stream} ({options.shards} shards), topic, queue and dead-letter queue")
    with _aws_step(state, "creating the stream, topic and queues", "kinesis-local", "moto"):
        created = resources.create(
            names, options.shards, state.client("kinesis"), state.client("sns"), state.client("sqs")
        )
    state.topic_arn, state.queue_url = created.topic_arn, created.queue_url
    state.dead_letter_queue_url = created.dead_letter_queue_url
    save(state)
    env = parts.services_env(state, find_jars(settings.kcl_jars_dir))

    # The consumer first: the KCL daemon needs the longest to start (~30 s to its leases).
    rule = f"skips sequence numbers divisible by {state.skip_every}" if state.skip_every else "skips none"
    say(f"starting the processor (KCL application {state.kcl_application}; demo rule: {rule})")
    processor = parts.start_service(state, parts.PROCESSOR, env)
    say("starting the recorder and the API")
    parts.start_service(state, "recorder", env)
    api = parts.start_service(state, "api", env, port=options.api_port or 0)
    state.api_url = api.url
    save(state)
    watcher = None
    if options.watch:
        say(f"starting the watcher (its own KCL application; lost records to {state.lost_file})")
        watcher = parts.start_service(state, WATCH, parts.watch_env(state, find_jars(settings.kcl_jars_dir)))

    say(f"waiting for the KCL consumer to lease all {options.shards} shards (about 30-60 s)")
    _wait_for_leases(state, processor, state.kcl_application, "the KCL consumer", options.consumer_timeout)
    if watcher is not None:
        # Before anything can reshard the stream: a KCL application that first starts on a resharded stream at
        # TRIM_HORIZON never gets its leases from kinesis-local (../shared/EMULATORS.md).
        say(f"waiting for the watcher to lease all {options.shards} shards")
        _wait_for_leases(state, watcher, state.watch_application, "the watcher", options.consumer_timeout)


def _start_emulators(state: StackState, options: Options, settings: LocalSettings) -> None:
    """memcached, moto and kinesis-local in parallel. Each is recorded as it is spawned; when one fails (or Ctrl-C
    comes) the others are cancelled, and this returns only once no start is still in progress."""
    logs, cancel = state.logs, threading.Event()
    record = parts.recorder_for(state)
    main = processes.find_kinesis_local(settings.kinesis_local)
    starters: list[Callable[[], Service]] = [
        lambda: processes.start_memcached(logs, options.memcached_port, on_started=record, cancel=cancel),
        lambda: processes.start_moto(logs, options.moto_port, on_started=record, cancel=cancel),
        lambda: processes.start_kinesis_local(
            logs, options.kinesis_port, region=options.region, main=main, on_started=record, cancel=cancel
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


def lease_owners(dynamodb: Any, state: StackState, application: str | None = None) -> dict[str, str | None]:
    """{shard id: owner} from a KCL lease table (the consumer's unless ``application``); empty until the daemon has
    created the table."""
    table = application or state.kcl_application
    try:
        dynamodb.describe_table(TableName=table)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return {}
        raise
    owners: dict[str, str | None] = {}
    for item in read_leases(dynamodb, table):
        shard = lease_shard(item.get("leaseKey", {}).get("S", ""), state.stream)
        if shard is not None:
            owners[shard] = item.get("leaseOwner", {}).get("S")
    return owners


def _wait_for_leases(state: StackState, service: Service, application: str, who: str, timeout: float) -> None:
    """Until ``application``'s lease table has an owner for every shard; StartError (with ``service``'s log) if
    ``service`` exits or ``timeout`` passes first."""
    kinesis, dynamodb = state.client("kinesis"), state.client("dynamodb")
    with _aws_step(state, f"listing the shards of stream {state.stream}", "kinesis-local"):
        shards = {shard.shard_id for shard in list_shards(kinesis, state.stream)}
    owned: set[str] = set()

    def all_leased() -> bool:
        if not service.alive():
            raise StartError(f"the {service.name} exited at start; {service.log_path}:\n{service.tail(30)}")
        with _aws_step(state, f"reading the KCL lease table {application}", "moto"):
            owners = lease_owners(dynamodb, state, application)
        owned.clear()
        owned.update(shard for shard in shards if owners.get(shard))
        return owned == shards

    try:
        wait_until(all_leased, timeout, f"{who}'s leases", interval=1.0)
    except WaitTimeout:
        raise StartError(
            f"{who} leased {len(owned)} of {len(shards)} shards within {timeout:.0f}s;"
            f" {service.log_path}:\n{service.tail(30)}"
        ) from None


# --- down -----------------------------------------------------------------------------------------------------


def _stop_all(state: StackState, say: Say) -> None:
    """The services first (they talk to the emulators), then the emulators; each group in parallel."""
    known = [part for part in state.parts if part.name in PART_ORDER]
    others = [part for part in state.parts if part.name not in PART_ORDER]
    for group in ([p for p in known if p.name in SERVICES] + others, [p for p in known if p.name not in SERVICES]):
        with ThreadPoolExecutor(max_workers=max(1, len(group))) as pool:
            results = list(pool.map(lambda part: part.stop(GRACE_SECONDS.get(part.name, 1.0)), group))
        for part, was_running in zip(group, results, strict=True):
            if was_running:
                say(f"stopped {part.name} (pid {part.pid})")


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
