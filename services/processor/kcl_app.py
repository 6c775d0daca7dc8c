"""The KCL consumer: ``streamwreck processor`` runs the real MultiLangDaemon (Java), which runs this module, once per
shard lease, as its record processor (``python -m streamwreck.processor.kcl_app``, amazon-kclpy's v3 interface).

The record processor is a thin adapter around :mod:`streamwreck.processor.processor` and the event publisher:

- stdout is the daemon's protocol; every log line goes to stderr (and a stray ``print`` in a user's function is sent
  to stderr too).
- Events are published before the checkpoint moves past their records. amazon-kclpy's ``KCLProcess`` swallows
  exceptions raised in ``process_records``, and a later checkpoint would then skip the failed records: so nothing is
  let out. When publishing still fails after the publisher's retries, the process ends at once (``os._exit``) with
  :data:`EXIT_UNPUBLISHED`; the daemon then stops with a non-zero status, and the orchestrator's restart resumes
  from the last checkpoint, which never passes an unpublished record.
- At shard end the processor publishes what it holds and checkpoints (else the child shards never start); after a
  lost lease it never checkpoints.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, Protocol

from amazon_kclpy import kcl
from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3 import processor as kcl_v3

from streamwreck.core import logs
from streamwreck.core.errors import ConfigError
from streamwreck.core.events import Pair
from streamwreck.core.settings import ENV_PREFIX, ProcessorSettings, load_settings
from streamwreck.processor.processor import (
    Flush,
    ProcessFunction,
    Record,
    ShardProgress,
    choose_function,
    run_batch,
    summarize_failures,
)
from streamwreck.processor.properties import (
    MAIN_CLASS,
    MULTILANG_JAR_GLOB,
    Endpoints,
    build_properties,
    logback_xml,
    parse_property,
    render,
    resolve_region,
)

# Named, not __name__: the daemon runs this module as __main__.
logger = logging.getLogger("streamwreck.processor.kcl_app")

EXIT_UNPUBLISHED = 75  # EX_TEMPFAIL: events could not be published; restart from the last checkpoint
EXIT_HALTED = 76  # the processing function raised a TransientError; restart from the last checkpoint
EXIT_BUG = 70  # EX_SOFTWARE: an unexpected error in the record processor

# Checkpoint errors (the KCL exception's simple name, as the daemon reports it) worth another try.
RETRYABLE_CHECKPOINT_ERRORS = frozenset({"ThrottlingException", "KinesisClientLibDependencyException"})
CHECKPOINT_ATTEMPTS = 5
CHECKPOINT_BASE_DELAY = 0.5

REPO_ROOT = Path(__file__).resolve().parents[2]


class Publisher(Protocol):
    def publish(self, stream: str, shard_id: str, records: Iterable[Pair]) -> Any: ...


def hard_exit(code: int) -> NoReturn:
    """End the record processor now, whatever amazon-kclpy would catch; logs are flushed first."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)


class StreamwreckRecordProcessor(kcl_v3.RecordProcessorBase):
    """amazon-kclpy v3 record processor for one shard lease."""

    def __init__(
        self,
        stream: str,
        publisher: Publisher,
        function: ProcessFunction,
        *,
        progress: ShardProgress | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        exit: Callable[[int], Any] = hard_exit,
        checkpoint_attempts: int = CHECKPOINT_ATTEMPTS,
        checkpoint_delay: float = CHECKPOINT_BASE_DELAY,
    ) -> None:
        self.stream = stream
        self.shard_id = "?"
        self._publisher = publisher
        self._function = function
        self._progress = progress or ShardProgress()
        self._clock = clock
        self._sleep = sleep
        self._exit = exit
        self._checkpoint_attempts = checkpoint_attempts
        self._checkpoint_delay = checkpoint_delay
        self._can_checkpoint = True

    # -- the five lifecycle methods -------------------------------------------------------------------------------

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = initialize_input.shard_id
        logger.info(
            "shard_initialized",
            extra={
                "shard_id": self.shard_id,
                "sequence_number": initialize_input.sequence_number,
                "sub_sequence_number": initialize_input.sub_sequence_number,
            },
        )

    def process_records(self, process_records_input: Any) -> None:
        self._guarded(self._process_records, process_records_input)

    def lease_lost(self, lease_lost_input: Any) -> None:
        self._guarded(self._lease_lost, lease_lost_input)

    def shard_ended(self, shard_ended_input: Any) -> None:
        self._guarded(self._shard_ended, shard_ended_input)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        self._guarded(self._shutdown_requested, shutdown_requested_input)

    # -- behaviour ------------------------------------------------------------------------------------------------

    def _guarded(self, method: Callable[[Any], None], message: Any) -> None:
        """Nothing may escape to KCLProcess, which would log it and carry on as if the batch had been handled."""
        try:
            method(message)
        except Exception:
            logger.critical("record_processor_failed", extra={"shard_id": self.shard_id}, exc_info=True)
            self._exit(EXIT_BUG)

    def _process_records(self, process_records_input: Any) -> None:
        records = [to_record(self.shard_id, raw) for raw in process_records_input.records]
        result = run_batch(records, self._function)
        self._progress.add(result, self._clock())
        if records:
            logger.debug(
                "batch_received",
                extra={"shard_id": self.shard_id, "records": len(records), "pending": self._progress.pending},
            )
        if result.failed:
            logger.warning(
                "records_failed",
                extra={
                    "shard_id": self.shard_id,
                    "count": len(result.failed),
                    "sample": summarize_failures(result.failed),
                },
            )
        if result.halted is not None:
            (seq, sub), error = result.halted
            where = {"shard_id": self.shard_id, "sequence_number": seq, "sub_sequence_number": sub}
            logger.error("processing_halted", extra={**where, "error": str(error)})
            self._flush(process_records_input.checkpointer)
            self._exit(EXIT_HALTED)
            return
        at_tip = not process_records_input.millis_behind_latest  # 0, or not reported
        if self._progress.due(self._clock(), at_tip=at_tip):
            self._flush(process_records_input.checkpointer)

    def _lease_lost(self, _lease_lost_input: Any) -> None:
        # Another worker owns the shard now and resumes from the last checkpoint: report what was processed here
        # (it happened), but never checkpoint. A failure to publish loses nothing, the new owner processes it again.
        self._can_checkpoint = False
        flush = self._progress.take()
        logger.info("lease_lost", extra={"shard_id": self.shard_id, "unpublished": len(flush.records)})
        if flush.records:
            try:
                self._publish(flush)
            except Exception as exc:
                logger.warning("lease_lost_publish_failed", extra={"shard_id": self.shard_id, "error": str(exc)})

    def _shard_ended(self, shard_ended_input: Any) -> None:
        flush = self._progress.take()
        self._publish_or_exit(flush)
        # At shard end the checkpoint must be the end of the shard (no arguments): the children start after it.
        self._checkpoint(shard_ended_input.checkpointer, None)
        logger.info("shard_ended", extra={"shard_id": self.shard_id})

    def _shutdown_requested(self, shutdown_requested_input: Any) -> None:
        logger.info("shutdown_requested", extra={"shard_id": self.shard_id})
        if self._progress.unflushed:
            self._flush(shutdown_requested_input.checkpointer)

    def _flush(self, checkpointer: Any) -> None:
        flush = self._progress.take()
        self._publish_or_exit(flush)
        if flush.checkpoint is not None:
            self._checkpoint(checkpointer, flush.checkpoint)

    def _publish_or_exit(self, flush: Flush) -> None:
        if not flush.records:
            return
        try:
            self._publish(flush)
        except Exception as exc:
            first, last = flush.records[0], flush.records[-1]
            logger.critical(
                "publish_failed_exiting",
                extra={
                    "shard_id": self.shard_id,
                    "unpublished": len(flush.records),
                    "first": list(first),
                    "last": list(last),
                    "error": f"{type(exc).__name__}: {exc}",
                    "exit_code": EXIT_UNPUBLISHED,
                },
            )
            self._exit(EXIT_UNPUBLISHED)
            raise  # only reached when the exit seam returns (tests): never checkpoint after a failed publish

    def _publish(self, flush: Flush) -> None:
        report = self._publisher.publish(self.stream, self.shard_id, flush.records)
        logger.info(
            "records_published",
            extra={
                "shard_id": self.shard_id,
                "records": len(flush.records),
                "skipped": flush.skipped,
                "failed": flush.failed,
                "events": getattr(report, "events", None),
                "requests": getattr(report, "requests", None),
            },
        )

    def _checkpoint(self, checkpointer: Any, position: Pair | None) -> bool:
        """Checkpoint at ``position`` (None: the end of the shard); True if the daemon stored it."""
        if not self._can_checkpoint:
            return False
        seq, sub = position if position is not None else (None, None)
        for attempt in range(1, self._checkpoint_attempts + 1):
            try:
                checkpointer.checkpoint(seq, sub)
            except CheckpointError as exc:
                error = str(exc.value)
                extra = {"shard_id": self.shard_id, "sequence_number": seq, "attempt": attempt, "error": error}
                if error in RETRYABLE_CHECKPOINT_ERRORS and attempt < self._checkpoint_attempts:
                    logger.warning("checkpoint_retry", extra=extra)
                    self._sleep(self._checkpoint_delay * 2 ** (attempt - 1))
                    continue
                if error == "ShutdownException":  # the lease is gone or going: no checkpoint will succeed
                    self._can_checkpoint = False
                # The events are published; the next checkpoint covers these records, or they are processed again.
                logger.warning("checkpoint_failed", extra=extra)
                return False
            if position is not None:
                self._progress.checkpointed_at(position)
            logger.info(
                "checkpointed",
                extra={
                    "shard_id": self.shard_id,
                    "sequence_number": seq or "SHARD_END",
                    "sub_sequence_number": sub,
                },
            )
            return True
        return False


def to_record(shard_id: str, raw: Any) -> Record:
    """An amazon-kclpy message record -> :class:`Record`."""
    return Record(
        shard_id=shard_id,
        sequence_number=raw.sequence_number,
        sub_sequence_number=int(raw.sub_sequence_number or 0),
        partition_key=raw.partition_key,
        data=raw.binary_data,
        approximate_arrival_ms=raw.timestamp_millis,
    )


# -- the record processor process (started by the daemon) -------------------------------------------------------------


def make_publisher(settings: ProcessorSettings) -> Publisher:
    import boto3
    from botocore.config import Config

    from streamwreck.core.publisher import EventPublisher

    # The publisher retries with backoff itself; botocore adds one quick retry and bounded timeouts.
    config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3, read_timeout=15)
    sns = boto3.client("sns", region_name=settings.region, config=config)
    assert settings.topic_arn is not None
    return EventPublisher(sns, settings.topic_arn, settings.worker_id, attempts=settings.publish_attempts)


def child_main() -> int:
    """Entry point of the record processor process; the daemon talks to it over stdin/stdout."""
    try:
        settings = load_settings(ProcessorSettings)
        logs.configure(settings.log_level)
        function = choose_function(settings.process_function, settings.skip_every)
    except ConfigError as exc:
        print(f"streamwreck record processor: configuration error: {exc}", file=sys.stderr)
        return 2
    assert settings.stream_name is not None
    progress = ShardProgress(flush_records=settings.publish_flush_records, flush_seconds=settings.publish_flush_seconds)
    record_processor = StreamwreckRecordProcessor(
        settings.stream_name, make_publisher(settings), function, progress=progress
    )
    # The daemon decides when this process ends (graceful shutdown, then end of input): a Ctrl-C that reaches the
    # whole process group must not kill it before it has published and checkpointed what it holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol_out = sys.stdout
    sys.stdout = sys.stderr  # a stray print() must not corrupt the daemon's protocol
    kcl.KCLProcess(record_processor, input_file=sys.stdin, output_file=protocol_out, error_file=sys.stderr).run()
    return 0


# -- streamwreck processor: the daemon ------------------------------------------------------------------------------

DESCRIPTION = f"""\
Run the KCL consumer: the real KCL MultiLangDaemon (Java, KCL 3) takes shard leases in DynamoDB (a table named
after the application) and runs this package's record processor per shard. Each record goes through the processing
function (the demo rule, or your own module:function); the processed ones are reported as processed events to SNS
in few, large requests, and the checkpoint moves only after they are published. If publishing still fails after the
retries, the processor exits non-zero and so does the daemon: restart it (your orchestrator's restart policy) and it
resumes from the last checkpoint. SIGTERM/SIGINT shut it down gracefully: each record processor publishes what it
holds and checkpoints, the leases are released, and the exit status is 0.

settings (environment; the options below override them):
  {ENV_PREFIX}STREAM_NAME          the stream (required)
  {ENV_PREFIX}APPLICATION_NAME     KCL application = lease table name (required)
  {ENV_PREFIX}TOPIC_ARN            SNS topic for processed events (required)
  {ENV_PREFIX}REGION               else AWS_REGION / AWS_DEFAULT_REGION
  {ENV_PREFIX}INITIAL_POSITION     TRIM_HORIZON (default) or LATEST, for shards without a checkpoint
  {ENV_PREFIX}RETRIEVAL_MODE       POLLING (default) or FANOUT
  {ENV_PREFIX}METRICS_LEVEL        NONE (default), SUMMARY or DETAILED (CloudWatch)
  {ENV_PREFIX}WORKER_ID            KCL worker id, also in the events (default: hostname + random suffix)
  {ENV_PREFIX}SKIP_EVERY           demo rule: skip records whose sequence number divides by N (0: none)
  {ENV_PREFIX}PROCESS_FUNCTION     module:function called per record instead (return False to skip); the module
                                   is imported from the working directory or the Python path
  {ENV_PREFIX}KCL_JARS_DIR         the daemon's jars (default: build/kcl-jars from 'make kcl-jars')
  {ENV_PREFIX}PUBLISH_FLUSH_RECORDS  publish once this many records are pending (default 4000)
  {ENV_PREFIX}PUBLISH_FLUSH_SECONDS  ... or once the oldest has waited this long (default 2)
  {ENV_PREFIX}PUBLISH_ATTEMPTS     SNS attempts, with backoff, before exiting non-zero (default 8)
  {ENV_PREFIX}LOCAL_PROFILE        true for emulators (kinesis-local, LocalStack): no worker metrics, short
                                   shard-sync and lease-assignment intervals, AWS_EC2_METADATA_DISABLED=true.
                                   Default false; keep it off in AWS (KCL 3 balances leases on worker metrics)
  AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL
                                   endpoints (emulators, or VPC/FIPS endpoints); they do not switch on the local
                                   profile
  JAVA_HOME, JAVA_TOOL_OPTIONS     which java, and extra JVM options

examples:
  streamwreck processor --stream orders --application orders-consumer --topic-arn arn:aws:sns:...:processed
  streamwreck processor --print-properties            show the daemon's properties file and exit
  streamwreck processor --property maxRecords=1000    any KCL MultiLangDaemon property"""


def describe(name: str) -> str:
    return DESCRIPTION


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--stream", dest="stream_name", metavar="NAME", help="stream name (STREAMWRECK_STREAM_NAME)")
    parser.add_argument(
        "--application", dest="application_name", metavar="NAME", help="KCL application / lease table name"
    )
    parser.add_argument("--topic-arn", dest="topic_arn", metavar="ARN", help="SNS topic for processed events")
    parser.add_argument("--region", help="AWS region")
    parser.add_argument("--initial-position", choices=["TRIM_HORIZON", "LATEST"], help="where new shards start")
    parser.add_argument("--worker-id", metavar="ID", help="KCL worker id, also written into the events")
    parser.add_argument("--skip-every", type=int, metavar="N", help="demo rule: skip sequence numbers divisible by N")
    parser.add_argument("--process-function", metavar="MODULE:FUNCTION", help="your per-record function")
    parser.add_argument("--jars", dest="kcl_jars_dir", metavar="DIR", help="folder of the KCL MultiLangDaemon jars")
    parser.add_argument(
        "--property",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra or overriding MultiLangDaemon property (repeatable)",
    )
    parser.add_argument("--print-properties", action="store_true", help="print the properties file and exit")


_OVERRIDES = (
    "stream_name",
    "application_name",
    "topic_arn",
    "region",
    "initial_position",
    "worker_id",
    "skip_every",
    "process_function",
    "kcl_jars_dir",
)


@dataclass(frozen=True)
class DaemonPlan:
    properties: dict[str, str]
    env: dict[str, str]  # what the daemon (and so each record processor) gets on top of the environment


def plan_daemon(
    settings: ProcessorSettings,
    env: Mapping[str, str],
    extra: Mapping[str, str],
    python: str = sys.executable,
    cwd: str | None = None,
) -> DaemonPlan:
    """The daemon's properties and environment; ConfigError for anything missing or unusable.

    ``cwd``: the folder the record processors import from first (the daemon's working directory); it must already be
    on ``sys.path`` here, so that a ``module:function`` that they can import is not rejected (and vice versa)."""
    choose_function(settings.process_function, settings.skip_every)  # fail now, not in every record processor
    if any(char.isspace() for char in python):
        raise ConfigError(f"the daemon splits its executable at spaces; this Python's path has one: {python!r}")
    region = resolve_region(settings, env)
    worker_id = settings.worker_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    endpoints = Endpoints.from_env(env)
    properties = build_properties(
        settings,
        executable=f"{python} -m streamwreck.processor.kcl_app",
        region=region,
        worker_id=worker_id,
        endpoints=endpoints,
        extra=extra,
    )
    child_env = {
        f"{ENV_PREFIX}STREAM_NAME": settings.stream_name or "",
        f"{ENV_PREFIX}TOPIC_ARN": settings.topic_arn or "",
        f"{ENV_PREFIX}REGION": region,
        f"{ENV_PREFIX}WORKER_ID": worker_id,
        f"{ENV_PREFIX}SKIP_EVERY": str(settings.skip_every),
        f"{ENV_PREFIX}LOG_LEVEL": settings.log_level,
    }
    if settings.process_function:
        child_env[f"{ENV_PREFIX}PROCESS_FUNCTION"] = settings.process_function
    if settings.local_profile:
        child_env["AWS_EC2_METADATA_DISABLED"] = "true"
    if cwd is not None:
        # The record processor runs with the daemon's working directory on its path (python -m); this says so
        # explicitly, also where PYTHONSAFEPATH would drop it, so that it imports what was validated here.
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (cwd, env.get("PYTHONPATH", "")) if p)
    return DaemonPlan(properties=properties, env=child_env)


def find_jars(configured: str | None) -> Path:
    """The folder holding the MultiLangDaemon's jars."""
    if configured:
        folder = Path(configured)
        if not any(folder.glob(MULTILANG_JAR_GLOB)):
            raise ConfigError(f"{ENV_PREFIX}KCL_JARS_DIR={configured}: no {MULTILANG_JAR_GLOB} there")
        return folder
    candidates = [base / "build" / "kcl-jars" for base in (REPO_ROOT, Path.cwd(), *Path.cwd().parents)]
    try:
        import amazon_kclpy

        candidates.append(Path(amazon_kclpy.__file__).parent / "jars")  # pip's build of amazon-kclpy fetches them
    except ImportError:  # pragma: no cover - amazon_kclpy is imported above
        pass
    for folder in candidates:
        if any(folder.glob(MULTILANG_JAR_GLOB)):
            return folder
    raise ConfigError(f"the KCL jars are missing: run 'make kcl-jars' or set {ENV_PREFIX}KCL_JARS_DIR")


def find_java(env: Mapping[str, str]) -> str:
    home = env.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise ConfigError("Java is not installed: install Java 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    return java


def daemon_argv(java: str, jars: Path, properties_file: Path, log_configuration: Path) -> list[str]:
    return [
        java,
        "-cp",
        f"{jars}/*",
        MAIN_CLASS,
        "--properties-file",
        str(properties_file),
        "--log-configuration",
        str(log_configuration),
    ]


def run_daemon(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run the daemon in the foreground, its logs on our stderr; SIGTERM/SIGINT/SIGHUP are passed on to it."""
    process = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), env=dict(env))
    stop_signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
    asked_to_stop: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        asked_to_stop.append(signum)
        if process.poll() is None:
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in stop_signals}
    try:
        code = process.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    code = code if code >= 0 else 128 - code
    logger.info("daemon_exited", extra={"exit_code": code, "signals": asked_to_stop})
    # The JVM reports a shutdown by signal as 128 + signal even when it was graceful: that is a clean stop for us.
    if asked_to_stop and code in {128 + sig for sig in stop_signals}:
        return 0
    return code


def run(args: argparse.Namespace) -> int:
    overrides = {name: getattr(args, name) for name in _OVERRIDES if getattr(args, name, None) is not None}
    settings = load_settings(ProcessorSettings, **overrides)
    logs.configure(settings.log_level)
    extra = dict(parse_property(text) for text in args.property)
    # The record processors run as `python -m`, with the working directory first on their path; this command runs
    # as a console script, with only its bin folder there. Validate the process function as they will import it.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    plan = plan_daemon(settings, os.environ, extra, cwd=cwd)
    text = render(plan.properties)
    if args.print_properties:
        sys.stdout.write(text)
        return 0
    jars = find_jars(settings.kcl_jars_dir)
    java = find_java(os.environ)
    with tempfile.TemporaryDirectory(prefix="streamwreck-kcl-") as folder:
        properties_file = Path(folder) / "streamwreck.properties"
        properties_file.write_text(text, encoding="ascii")
        log_configuration = Path(folder) / "logback.xml"
        log_configuration.write_text(logback_xml(settings.log_level), encoding="utf-8")
        logger.info(
            "daemon_starting",
            extra={
                "stream": settings.stream_name,
                "application": settings.application_name,
                "worker_id": plan.properties["workerId"],
                "jars": str(jars),
            },
        )
        argv = daemon_argv(java, jars, properties_file, log_configuration)
        return run_daemon(argv, {**os.environ, **plan.env})


if __name__ == "__main__":
    sys.exit(child_main())
