"""The KCL MultiLangDaemon's properties file, built from the settings. Pure: the environment is passed in.

The AWS endpoints are not settings of ours: as boto3 does, the daemon's endpoints come from ``AWS_ENDPOINT_URL_KINESIS``
/ ``AWS_ENDPOINT_URL_DYNAMODB``, else ``AWS_ENDPOINT_URL``. An endpoint override alone says nothing about where the
daemon runs (production uses VPC and FIPS endpoints too); the *local* profile is switched on explicitly, with the
``local_profile`` setting (``STREAMWRECK_LOCAL_PROFILE=true``: the local stack, the tests, docker-compose): no worker
metrics (KCL 3 would probe EC2/ECS metadata) and short intervals, so that a fresh application gets its first records
in about half a minute instead of two (the KCL waits one shard-sync interval, 60 s by default, after creating the
leases, and assigns leases once per lease-assignment interval). In AWS it must stay off: the worker metrics drive
KCL 3's lease balancing. Extra ``key=value`` properties override anything here.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from streamwreck.core.errors import ConfigError
from streamwreck.core.settings import variable

MAIN_CLASS = "software.amazon.kinesis.multilang.MultiLangDaemon"
SHUTDOWN_GRACE_MILLIS = 20_000

# Applied with the local_profile setting (emulators); each is a MultiLangDaemonConfiguration property of KCL 3.1.
LOCAL_PROFILE: dict[str, str] = {
    "disableWorkerMetrics": "true",
    "shardSyncIntervalMillis": "1000",
    "leaseAssignmentIntervalMillis": "2000",
    "workerMetricsReporterFreqInMillis": "2000",
    "parentShardPollIntervalMillis": "1000",
    "idleTimeBetweenReadsInMillis": "500",
}


class KclSettings(Protocol):
    """What the properties are built from: ProcessorSettings, and the watcher's (``streamwreck watch``) too."""

    @property
    def region(self) -> str | None: ...
    @property
    def stream_name(self) -> str: ...
    @property
    def application_name(self) -> str: ...
    @property
    def initial_position(self) -> str: ...
    @property
    def retrieval_mode(self) -> str: ...
    @property
    def metrics_level(self) -> str: ...
    @property
    def local_profile(self) -> bool: ...
    @property
    def worker_id(self) -> str | None: ...


@dataclass(frozen=True)
class Endpoints:
    kinesis: str | None = None
    dynamodb: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Endpoints:
        default = env.get("AWS_ENDPOINT_URL") or None
        return cls(
            kinesis=env.get("AWS_ENDPOINT_URL_KINESIS") or default,
            dynamodb=env.get("AWS_ENDPOINT_URL_DYNAMODB") or default,
        )


def resolve_region(settings: KclSettings, env: Mapping[str, str]) -> str:
    region = settings.region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError(f"no AWS region: set {variable('region')} (or AWS_REGION / AWS_DEFAULT_REGION)")
    return region


def build_properties(
    settings: KclSettings,
    *,
    executable: str,
    region: str,
    worker_id: str,
    endpoints: Endpoints,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Every property the daemon gets, in a stable order."""
    properties = {
        "executableName": executable,
        "streamName": settings.stream_name,
        "applicationName": settings.application_name,
        "workerId": worker_id,
        "regionName": region,
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "processingLanguage": f"python/{sys.version_info.major}.{sys.version_info.minor}",
        "initialPositionInStream": settings.initial_position,
        "retrievalMode": settings.retrieval_mode,
        "metricsLevel": settings.metrics_level,
        # The record processor flushes its buffered events on time as well as on size: it needs a call even when a
        # poll returned nothing.
        "callProcessRecordsEvenForEmptyRecordList": "true",
        # On SIGTERM the daemon asks each record processor to finish (publish what it holds, checkpoint) and waits
        # this long; the default (0) gives up at once and leaves the buffered records to be processed again.
        "shutdownGraceMillis": str(SHUTDOWN_GRACE_MILLIS),
    }
    if endpoints.kinesis:
        properties["kinesisEndpoint"] = endpoints.kinesis
    if endpoints.dynamodb:
        properties["dynamoDBEndpoint"] = endpoints.dynamodb
    if settings.local_profile:
        properties.update(LOCAL_PROFILE)
    properties.update(extra or {})
    return properties


def parse_property(text: str) -> tuple[str, str]:
    """``key=value`` as given to ``--property``."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key or any(char.isspace() for char in key):
        raise ConfigError(f"--property expects KEY=VALUE (e.g. maxRecords=1000), got {text!r}")
    return key, value


def _escape(text: str, *, key: bool) -> str:
    out = []
    for index, char in enumerate(text):
        if char == "\\":
            out.append("\\\\")
        elif char in "\n\r\t\f":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t", "\f": "\\f"}[char])
        elif char in " :=#!" and (key or (char == " " and index == 0)):
            out.append("\\" + char)
        elif not 0x20 <= ord(char) <= 0x7E:
            out.extend(f"\\u{unit:04x}" for unit in _utf16_units(char))
        else:
            out.append(char)
    return "".join(out)


def _utf16_units(char: str) -> list[int]:
    encoded = char.encode("utf-16-be")
    return [int.from_bytes(encoded[i : i + 2], "big") for i in range(0, len(encoded), 2)]


def render(properties: Mapping[str, str]) -> str:
    """The text of a ``java.util.Properties`` file (ASCII, escaped as ``Properties.load`` reads it)."""
    lines = ["# Generated by 'streamwreck processor'; every line can be overridden with --property KEY=VALUE."]
    lines += [f"{_escape(key, key=True)} = {_escape(value, key=False)}" for key, value in properties.items()]
    return "\n".join(lines) + "\n"


# Logback levels for our log levels; DEBUG stays INFO for the daemon (the KCL and the AWS SDK would log every request).
_LOGBACK_LEVELS = {"DEBUG": "INFO", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR"}


def logback_xml(level: str) -> str:
    """The daemon's logging: its own lines on stderr at ``level`` (at most INFO).

    Each record processor's stderr line (our JSON logs) is relayed as it is, and also logged again by
    DrainChildSTDERRTask as an ERROR: that copy is switched off, or every processor log line would count as a daemon
    error."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by 'streamwreck processor'. -->
<configuration>
  <appender name="STDERR" class="ch.qos.logback.core.ConsoleAppender">
    <target>System.err</target>
    <encoder><pattern>%d [%thread] %-5level %logger{{36}} [%mdc{{ShardId:-NONE}}] - %msg %n</pattern></encoder>
  </appender>
  <logger name="software.amazon.kinesis.multilang.DrainChildSTDERRTask" level="OFF"/>
  <root level="{_LOGBACK_LEVELS.get(level, "INFO")}"><appender-ref ref="STDERR"/></root>
</configuration>
"""
