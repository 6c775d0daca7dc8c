"""``streamwreck processor``: runs the real KCL MultiLangDaemon (Java), which takes the shard leases and starts the
record processor (:mod:`streamwreck.processor.record_processor`) once per lease.

The command builds a plan (:func:`plan_daemon`: the daemon's properties and what each record processor gets in its
environment; a ConfigError for anything missing or unusable, before Java starts), writes the properties file and the
daemon's logging configuration to a temporary folder, and runs the daemon in the foreground (:func:`run_daemon`),
passing SIGTERM/SIGINT/SIGHUP on to it. The jars and Java are found by :mod:`streamwreck.processor.jars`.

With ``STREAMWRECK_PROCESSOR_METRICS_PORT`` set it also serves the record processors' Prometheus metrics
(:mod:`streamwreck.processor.metrics`): they write them to a folder in the temporary one, handed down to them as
``PROMETHEUS_MULTIPROC_DIR``, and this process, the one that outlives the leases, serves the merge on ``/metrics``
(:mod:`streamwreck.core.multiprocess_metrics`), from before the daemon starts until after it has exited.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from streamwreck.core import logs
from streamwreck.core.errors import ConfigError
from streamwreck.core.multiprocess_metrics import MULTIPROC_VARIABLE, Merged, MetricsServer
from streamwreck.core.settings import ENV_PREFIX, ProcessorSettings, environment, load_settings, variable
from streamwreck.processor import record_processor
from streamwreck.processor.jars import find_jars, find_java
from streamwreck.processor.processor import choose_function
from streamwreck.processor.properties import (
    MAIN_CLASS,
    Endpoints,
    KclSettings,
    build_properties,
    logback_xml,
    parse_property,
    render,
    resolve_region,
)

logger = logging.getLogger(__name__)

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
  {ENV_PREFIX}PROCESSOR_METRICS_PORT  Prometheus metrics of all the shards' record processors, merged, on
                                   http://HOST:PORT/metrics (default: unset, no metrics)
  {ENV_PREFIX}PROCESSOR_METRICS_HOST  the address it listens on (default 127.0.0.1)
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


# The options that override a setting of the same name.
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


@dataclass(frozen=True)
class KclPlan:
    properties: dict[str, str]
    region: str
    worker_id: str


def kcl_plan(
    settings: KclSettings, module: str, env: Mapping[str, str], extra: Mapping[str, str], python: str
) -> KclPlan:
    """The daemon's properties for a KCL application whose record processor is ``python -m module`` (the processor's
    and the watcher's), with the region and the worker id they settled on."""
    if any(char.isspace() for char in python):
        raise ConfigError(f"the daemon splits its executable at spaces; this Python's path has one: {python!r}")
    region = resolve_region(settings, env)
    worker_id = settings.worker_id or f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"
    properties = build_properties(
        settings,
        executable=f"{python} -m {module}",
        region=region,
        worker_id=worker_id,
        endpoints=Endpoints.from_env(env),
        extra=extra,
    )
    return KclPlan(properties, region, worker_id)


def plan_daemon(
    settings: ProcessorSettings,
    env: Mapping[str, str],
    extra: Mapping[str, str],
    python: str = sys.executable,
    cwd: str | None = None,
    metrics_dir: Path | None = None,
) -> DaemonPlan:
    """The daemon's properties and environment; ConfigError for anything unusable.

    ``cwd``: the folder the record processors import from first (the daemon's working directory); it must already be
    on ``sys.path`` here, so that a ``module:function`` that they can import is not rejected (and vice versa).
    ``metrics_dir``: where the record processors keep their metrics, when the metrics port is set."""
    choose_function(settings.process_function, settings.skip_every)  # fail now, not in every record processor
    kcl = kcl_plan(settings, record_processor.__name__, env, extra, python)
    properties, region, worker_id = kcl.properties, kcl.region, kcl.worker_id
    # Each record processor loads the same ProcessorSettings: it gets the required ones, and those set by options.
    child_env = {
        variable("stream_name"): settings.stream_name,
        variable("application_name"): settings.application_name,
        variable("topic_arn"): settings.topic_arn,
        variable("region"): region,
        variable("worker_id"): worker_id,
        variable("skip_every"): str(settings.skip_every),
        variable("log_level"): settings.log_level,
    }
    if settings.process_function:
        child_env[variable("process_function")] = settings.process_function
    if settings.processor_metrics_port and metrics_dir is not None:
        child_env[variable("processor_metrics_port")] = str(settings.processor_metrics_port)  # switches them on
        child_env[MULTIPROC_VARIABLE] = str(metrics_dir)  # read by prometheus_client when first imported
    if settings.local_profile:
        child_env["AWS_EC2_METADATA_DISABLED"] = "true"
    if cwd is not None:
        # The record processor runs with the daemon's working directory on its path (python -m); this says so
        # explicitly, also where PYTHONSAFEPATH would drop it, so that it imports what was validated here.
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in (cwd, env.get("PYTHONPATH", "")) if p)
    return DaemonPlan(properties=properties, env=child_env)


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


def run_daemon(argv: Sequence[str], env: Mapping[str, str], output: int | None = None) -> int:
    """Run the daemon in the foreground, its logs on our stderr (or the file descriptor ``output``: both its stdout
    and stderr); SIGTERM/SIGINT/SIGHUP are passed on to it."""
    out = sys.stderr.fileno() if output is None else output
    process = subprocess.Popen(
        list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=None if output is None else output, env=dict(env)
    )
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


def serve_metrics(host: str, port: int, metrics_dir: Path) -> MetricsServer:
    """``/metrics`` over the record processors' merged metrics, started; a port that cannot be had is a ConfigError."""
    try:
        return MetricsServer(host, port, Merged(metrics_dir), name="processor-metrics").start()
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None


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
    env = environment()  # the daemon's (and so each record processor's) environment: ours, plus the plan's
    with tempfile.TemporaryDirectory(prefix="streamwreck-kcl-") as folder, ExitStack() as stack:
        metrics_dir = Path(folder) / "metrics" if settings.processor_metrics_port else None
        plan = plan_daemon(settings, env, extra, cwd=cwd, metrics_dir=metrics_dir)
        text = render(plan.properties)
        if args.print_properties:
            sys.stdout.write(text)
            return 0
        jars = find_jars(settings.kcl_jars_dir)
        java = find_java(env.get("JAVA_HOME"))
        server = None
        if metrics_dir is not None and settings.processor_metrics_port:
            metrics_dir.mkdir()
            server = serve_metrics(settings.processor_metrics_host, settings.processor_metrics_port, metrics_dir)
            stack.callback(server.stop)  # after the daemon has exited
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
                "metrics_url": f"{server.url}/metrics" if server is not None else None,
            },
        )
        argv = daemon_argv(java, jars, properties_file, log_configuration)
        return run_daemon(argv, {**env, **plan.env})
