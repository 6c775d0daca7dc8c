"""Settings per deployable over one shared base, read from ``STREAMWRECK_*`` environment variables and built once by
each entry point (:func:`load_settings`). Each class's required fields have no default, so a missing variable stops
that part at start-up with one line naming it. This module is the only reader of the process environment.

The AWS endpoints are not settings of ours: boto3 reads ``AWS_ENDPOINT_URL`` (and per-service variables such as
``AWS_ENDPOINT_URL_KINESIS``), so production and tests run the same code.
"""

from __future__ import annotations

import os
from typing import Literal, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streamwreck.core.errors import ConfigError

S = TypeVar("S", bound="CommonSettings")

ENV_PREFIX = "STREAMWRECK_"
# memcached reads an expiry above 30 days as an absolute Unix time; the ledger converts longer TTLs itself.
MEMCACHED_RELATIVE_EXPIRY_LIMIT = 30 * 24 * 3600
MAX_STREAM_RETENTION_SECONDS = 8760 * 3600  # Kinesis' longest retention: 365 days
DEFAULT_API_URL = "http://127.0.0.1:8000"


class CommonSettings(BaseSettings):
    """What every part reads; the base of each deployable's settings."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Logs are JSON lines on stderr; DEBUG adds the traceback of an internal error."
    )


class AwsSettings(CommonSettings):
    region: str | None = Field(None, description="AWS region; AWS_REGION / AWS_DEFAULT_REGION if unset.")


class LedgerSettings(CommonSettings):
    """The memcached ledger, shared by the API and the recorder (they must agree on every field)."""

    memcached_servers: str = Field(
        "127.0.0.1:11211",
        description="Comma-separated host:port list of memcached nodes; keys are spread by client-side hashing.",
    )
    memcached_timeout_seconds: float = Field(2.0, gt=0, le=60, description="Connect and read timeout per call.")
    ledger_ttl_seconds: int = Field(
        7 * 24 * 3600,
        ge=60,
        le=MAX_STREAM_RETENTION_SECONDS + 24 * 3600,
        description="How long a ledger entry lives: at least the stream's retention period.",
    )

    ledger_format: Literal["buckets", "records"] = Field(
        "buckets",
        description="How the ledger is kept: `buckets` (many records an item, about 7 bytes a record) or `records` "
        "(an item a record, 94 bytes: the first releases' format). The API and the recorder must agree.",
    )

    @field_validator("memcached_servers")
    @classmethod
    def _servers_parse(cls, value: str) -> str:
        parse_servers(value)
        return value

    @property
    def servers(self) -> list[tuple[str, int]]:
        return parse_servers(self.memcached_servers)


class ApiSettings(LedgerSettings):
    """``streamwreck api``: the reconcile API."""

    api_host: str = Field("127.0.0.1", description="Address the API listens on.")
    api_port: int = Field(8000, ge=1, le=65535, description="Port the API listens on.")
    api_workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes (one per core serves the most).")
    max_records_per_request: int = Field(10_000, ge=1, le=1_000_000, description="413 above it.")
    max_request_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="A request body larger than this is refused with 413 before it is parsed (10,000 records take "
        "about 1.2 MB).",
    )
    api_key: str | None = Field(None, description="If set, clients must send it as the X-Api-Key header.")


class HeartbeatSettings(CommonSettings):
    heartbeat_file: str | None = Field(
        None,
        description="A file the worker's loop touches, for a container health check (python -m "
        "streamwreck.core.heartbeat FILE); the images set it; unset, no file is written.",
    )


class RecorderSettings(LedgerSettings, AwsSettings, HeartbeatSettings):
    """``streamwreck recorder``: processed events from SQS into the ledger."""

    queue_url: str = Field(min_length=1, description="SQS queue (subscribed to the topic) that the recorder reads.")
    recorder_wait_seconds: int = Field(20, ge=0, le=20, description="SQS long-poll wait.")
    recorder_visibility_timeout: int = Field(60, ge=0, le=43_200, description="Seconds a message stays invisible.")
    recorder_topic_arn: str | None = Field(
        None,
        min_length=1,
        description="If set, only messages from this SNS topic are recorded: an SNS envelope's TopicArn, or a raw "
        "message's `TopicArn` message attribute. Others are left for the dead-letter queue and counted. Not "
        "STREAMWRECK_TOPIC_ARN (the processor's), which a shared environment may set for every part.",
    )
    recorder_metrics_port: int | None = Field(
        None, ge=1, le=65535, description="If set, Prometheus metrics are served on this port at /metrics."
    )
    recorder_metrics_host: str = Field("127.0.0.1", description="Address the metrics port listens on.")


class ProcessorSettings(AwsSettings, HeartbeatSettings):
    """``streamwreck processor``: the KCL consumer (the daemon's launcher and its record processors)."""

    stream_name: str = Field(min_length=1, description="The stream the consumer reads.")
    application_name: str = Field(min_length=1, description="KCL application name; also the lease table's name.")
    topic_arn: str = Field(min_length=1, description="SNS topic that processed events are published to.")
    worker_id: str | None = Field(
        None,
        max_length=256,
        description="Names this worker (the KCL worker id and the processed events' worker); hostname and a random "
        "suffix if unset.",
    )
    initial_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    retrieval_mode: Literal["POLLING", "FANOUT"] = "POLLING"
    metrics_level: Literal["NONE", "SUMMARY", "DETAILED"] = "NONE"
    skip_every: int = Field(0, ge=0, description="Demo rule: skip records whose sequence number divides by N; 0 off.")
    process_function: str | None = Field(None, description="module:function called per record instead of the demo.")
    kcl_jars_dir: str | None = Field(None, description="Folder of the KCL MultiLangDaemon jars.")
    local_profile: bool = Field(
        False,
        description="Emulator-friendly KCL settings (no worker metrics, no EC2 metadata, fast lease and shard "
        "sync). Set by `streamwreck local up`, the tests and docker-compose; never in AWS.",
    )
    publish_flush_records: int = Field(4000, ge=1, description="Publish once this many records are pending.")
    publish_flush_seconds: float = Field(2.0, ge=0, le=300, description="Publish records pending this long.")
    publish_attempts: int = Field(8, ge=1, le=20, description="SNS attempts before exiting non-zero.")
    processor_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="If set, the launcher serves the record processors' Prometheus metrics, merged across them, on "
        "this port at /metrics; unset, the record processors record none.",
    )
    processor_metrics_host: str = Field("127.0.0.1", description="Address the processor's metrics port listens on.")


class CheckerSettings(CommonSettings):
    """``streamwreck check`` (and ``watch``): what its arguments default to."""

    api_url: str = Field(DEFAULT_API_URL, min_length=1, description="The reconcile API the checker asks.")
    api_key: str | None = Field(None, description="Sent as X-Api-Key, if the API wants one.")
    stream_name: str | None = Field(None, description="The stream to check, if --stream is not given.")
    dead_letter_queue_url: str | None = Field(
        None,
        min_length=1,
        description="The recorder's dead-letter queue: records named by the events in it are `unknown` (processed, "
        "not recorded), not `lost`. Peeked, never consumed.",
    )


class WatcherSettings(AwsSettings):
    """``streamwreck watch``: the continuous verdict, its own KCL application (the launcher and its record
    processors read the same settings; the launcher passes them on to the record processors)."""

    stream_name: str = Field(min_length=1, description="The stream to watch.")
    kcl_app: str = Field(min_length=1, description="The audited consumer's KCL application (its lease table).")
    application_name: str = Field(
        "", description="The watcher's own KCL application and lease table; streamwreck-watch-<stream> if unset."
    )
    api_url: str = Field(DEFAULT_API_URL, min_length=1, description="The reconcile API the watcher asks.")
    api_key: str | None = Field(None, description="Sent as X-Api-Key, if the API wants one.")
    grace_seconds: float = Field(
        60.0,
        ge=0,
        description="Judge a record this long after its arrival even if the consumer's checkpoint has "
        "not passed it (it stays held while the checkpoint says the consumer is still coming).",
    )
    settle_seconds: float = Field(5.0, ge=0, le=300, description="Trust a checkpoint this long after reading it.")
    export_file: str | None = Field(None, description="Append each lost record here as a JSON line.")
    lost_topic_arn: str | None = Field(None, description="SNS topic the lost records are published to.")
    metrics_port: int = Field(9108, ge=0, le=65535, description="/metrics and /healthz; 0: no server.")
    metrics_host: str = Field("0.0.0.0", description="Address the metrics server listens on.")
    metrics_dir: str | None = Field(None, description="Set by the launcher: where record processors keep metrics.")
    max_held: int = Field(50_000, ge=1, description="Per shard: above it the watcher stops taking records.")
    lease_refresh_seconds: float = Field(3.0, gt=0, le=300, description="How often the consumer's lease is read.")
    checkpoint_seconds: float = Field(10.0, ge=0, le=3600, description="How often the watcher checkpoints.")
    batch_size: int = Field(2500, ge=1, le=10_000, description="Records per reconcile request.")
    stale_seconds: float = Field(120.0, gt=0, description="/healthz is stale after this long without progress.")
    emf_seconds: float = Field(60.0, ge=0, description="CloudWatch EMF lines this often per shard; 0: none.")
    emf_namespace: str = Field("Streamwreck/Watch", min_length=1, description="CloudWatch namespace of the EMF.")
    worker_id: str | None = Field(None, max_length=256, description="KCL worker id; hostname + suffix if unset.")
    initial_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    retrieval_mode: Literal["POLLING", "FANOUT"] = "POLLING"
    metrics_level: Literal["NONE", "SUMMARY", "DETAILED"] = "NONE"
    kcl_jars_dir: str | None = Field(None, description="Folder of the KCL MultiLangDaemon jars.")
    local_profile: bool = Field(False, description="Emulator-friendly KCL settings, as for the processor.")

    @model_validator(mode="before")
    @classmethod
    def _default_application(cls, values: object) -> object:
        if isinstance(values, dict) and not values.get("application_name") and values.get("stream_name"):
            values = {**values, "application_name": f"streamwreck-watch-{values['stream_name']}"}
        return values


class LocalSettings(CommonSettings):
    """``streamwreck local``: where the embedded stack finds what ``make setup`` installed."""

    kinesis_local: str | None = Field(None, description="kinesis-local's main.js, if not under ./node_modules.")
    kcl_jars_dir: str | None = Field(None, description="Folder of the KCL MultiLangDaemon jars.")


class InitSettings(CommonSettings):
    """docker-compose's one-shot init (``streamwreck.deploy.compose_init``): the resources it creates are named by
    the same variables the processor and the recorder are given, so the names cannot drift apart."""

    stream_name: str = Field(min_length=1, description="The Kinesis stream to create.")
    topic_arn: str = Field(min_length=1, description="The processed-events topic: its name is the ARN's last part.")
    queue_url: str = Field(min_length=1, description="The recorder's queue: its name is the URL's last part.")
    shard_count: int = Field(2, ge=1, le=500, description="Shards of the stream it creates.")
    max_receive_count: int = Field(5, ge=1, le=1000, description="Receives before a message is dead-lettered.")
    lost_topic_arn: str | None = Field(None, description="The watcher's lost-records topic, created when set.")


# Each deployable's settings, by the name of its `streamwreck` command: deploy/ wires exactly these variables.
SETTINGS_OF: dict[str, type[CommonSettings]] = {
    "api": ApiSettings,
    "recorder": RecorderSettings,
    "processor": ProcessorSettings,
    "checker": CheckerSettings,
    "local": LocalSettings,
    "watch": WatcherSettings,
}


def variable(field: str) -> str:
    """The environment variable of a settings field: ``queue_url`` -> ``STREAMWRECK_QUEUE_URL``."""
    return ENV_PREFIX + field.upper()


def environment() -> dict[str, str]:
    """A copy of this process' environment, for the environment of a child process (nothing else reads it)."""
    return dict(os.environ)


def parse_servers(value: str) -> list[tuple[str, int]]:
    servers = []
    for part in value.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port[,host:port...], got {part.strip()!r}")
        servers.append((host.strip("[]"), int(port)))
    return servers


def load_settings(kind: type[S], **overrides: object) -> S:
    """Build ``kind`` from the environment (``overrides`` win); a missing or invalid value becomes one ConfigError
    line naming its variable."""
    try:
        return kind(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = variable("_".join(str(part) for part in first["loc"]))
        if first["type"] == "missing":
            raise ConfigError(f"{name} is required but not set") from None
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from None
