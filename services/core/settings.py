"""One settings object, read from ``STREAMWRECK_*`` environment variables and built once by each entry point.

The AWS endpoints are not settings of ours: boto3 reads ``AWS_ENDPOINT_URL`` (and per-service variables such as
``AWS_ENDPOINT_URL_KINESIS``), so production and tests run the same code.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.core.errors import ConfigError

ENV_PREFIX = "STREAMWRECK_"
# memcached reads an expiry above 30 days as an absolute Unix time; the ledger converts longer TTLs itself.
MEMCACHED_RELATIVE_EXPIRY_LIMIT = 30 * 24 * 3600
MAX_STREAM_RETENTION_SECONDS = 8760 * 3600  # Kinesis' longest retention: 365 days


class Settings(BaseSettings):
    """Every setting of every streamwreck part; each part checks the ones it needs with :meth:`require`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # ledger (api, recorder)
    memcached_servers: str = Field(
        "127.0.0.1:11211",
        description="Comma-separated host:port list of memcached nodes; keys are spread by client-side hashing.",
    )
    memcached_timeout_seconds: float = Field(2.0, gt=0, le=60)
    ledger_ttl_seconds: int = Field(
        7 * 24 * 3600,
        ge=60,
        le=MAX_STREAM_RETENTION_SECONDS + 24 * 3600,
        description="How long a ledger entry lives: at least the stream's retention period.",
    )

    # events
    topic_arn: str | None = Field(None, description="SNS topic that processed events are published to.")
    queue_url: str | None = Field(None, description="SQS queue (subscribed to the topic) that the recorder reads.")
    worker_id: str | None = Field(
        None, max_length=256, description="Names this worker in processed events; hostname:pid if unset."
    )

    # api
    api_host: str = "127.0.0.1"
    api_port: int = Field(8000, ge=1, le=65535)
    max_records_per_request: int = Field(10_000, ge=1, le=1_000_000)
    api_key: str | None = Field(None, description="If set, clients must send it as the X-Api-Key header.")

    # recorder
    recorder_wait_seconds: int = Field(20, ge=0, le=20)
    recorder_visibility_timeout: int = Field(60, ge=0, le=43_200)

    # processor
    stream_name: str | None = None
    application_name: str | None = Field(None, description="KCL application name; also the lease table's name.")
    region: str | None = Field(None, description="AWS region; AWS_REGION / AWS_DEFAULT_REGION if unset.")
    initial_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON"
    retrieval_mode: Literal["POLLING", "FANOUT"] = "POLLING"
    metrics_level: Literal["NONE", "SUMMARY", "DETAILED"] = "NONE"
    skip_every: int = Field(0, ge=0, description="Demo rule: skip records whose sequence number divides by N; 0 off.")
    process_function: str | None = Field(None, description="module:function called per record instead of the demo.")
    kcl_jars_dir: str | None = Field(None, description="Folder of the KCL MultiLangDaemon jars.")
    local_profile: bool = Field(
        False,
        description="Processor: emulator-friendly KCL settings (no worker metrics, no EC2 metadata, fast lease and "
        "shard sync). Set by `streamwreck local up`, the tests and docker-compose; never in AWS.",
    )
    publish_flush_records: int = Field(4000, ge=1, description="Processor: publish once this many records are pending.")
    publish_flush_seconds: float = Field(2.0, ge=0, le=300, description="Processor: publish records pending this long.")
    publish_attempts: int = Field(8, ge=1, le=20, description="Processor: SNS attempts before exiting non-zero.")

    # logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("memcached_servers")
    @classmethod
    def _servers_parse(cls, value: str) -> str:
        parse_servers(value)
        return value

    def require(self, *names: str) -> None:
        """Raise ConfigError naming the first of ``names`` that is unset."""
        for name in names:
            if getattr(self, name) in (None, ""):
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} is required but not set")

    @property
    def servers(self) -> list[tuple[str, int]]:
        return parse_servers(self.memcached_servers)


def parse_servers(value: str) -> list[tuple[str, int]]:
    servers = []
    for part in value.split(","):
        host, sep, port = part.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"expected host:port[,host:port...], got {part.strip()!r}")
        servers.append((host.strip("[]"), int(port)))
    return servers


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment; an invalid value becomes one ConfigError line naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        name = ENV_PREFIX + "_".join(str(part) for part in first["loc"]).upper()
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from None
