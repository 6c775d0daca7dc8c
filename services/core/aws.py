"""The AWS boundary of the CLI: boto3 clients built one way, and botocore's errors turned into one line each.

Each client comes from a fresh boto3 Session: boto3's default session caches the credentials it resolved first,
which is wrong for a command that may run many times in one process (tests, scripts importing it). The sessions
share one botocore data loader, so the service models are parsed once per process, not once per client, and parse
epoch timestamps straight to UTC (see :func:`parse_timestamp`).

Endpoints, region and credentials are boto3's own business (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_KINESIS``,
``AWS_DEFAULT_REGION``, profiles, ...): nothing here names an endpoint, so production and tests run the same code.
"""

from __future__ import annotations

import importlib.util
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from streamwreck.core.errors import AwsError, WaitTimeout

# What an AWS call raises when AWS (or the way to it) fails: catch exactly these before translate(), never Exception,
# so that a bug in our own code is reported as one and not as an AWS error.
AWS_ERRORS = (BotoCoreError, ClientError)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient


def require(*packages: str) -> None:
    """Raise ModuleNotFoundError naming the first missing package, without importing any (cheap, for import time).

    streamwreck.cli.main turns that into "needs the package X: pip install 'streamwreck[cli]'" for the command.
    """
    for package in ("boto3", *packages):
        if importlib.util.find_spec(package) is None:
            raise ModuleNotFoundError(f"No module named {package!r}", name=package)


_loader: Any = None
_loader_lock = threading.Lock()


def session() -> Any:
    """A new boto3 Session (its own credentials and environment) on the process' shared model loader."""
    import boto3
    import botocore.session

    global _loader
    with _loader_lock:
        core = botocore.session.Session()
        if _loader is None:
            _loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _loader)
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
    return boto3.session.Session(botocore_session=core)


def parse_timestamp(value: Any) -> datetime:
    """botocore's timestamp parser, made fast for the common case: Kinesis (JSON) sends epoch seconds.

    botocore's own converts every ApproximateArrivalTimestamp to the local time zone through dateutil, which costs
    more than the rest of parsing a record; the checker wants the instant, so an aware UTC datetime serves.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    from botocore.utils import parse_timestamp as botocore_parse

    parsed: datetime = botocore_parse(value)
    return parsed


def kinesis_client(max_connections: int = 10) -> KinesisClient:
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": 3},
        max_pool_connections=max_connections,
        connect_timeout=5,
        read_timeout=30,
        tcp_keepalive=True,
    )
    try:
        return session().client("kinesis", config=config)
    except AWS_ERRORS as exc:
        raise translate(exc, "creating the Kinesis client") from exc


def dynamodb_client() -> DynamoDBClient:
    from botocore.config import Config

    try:
        return session().client("dynamodb", config=Config(retries={"mode": "standard", "max_attempts": 5}))
    except AWS_ERRORS as exc:
        raise translate(exc, "creating the DynamoDB client") from exc


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def translate(exc: BotoCoreError | ClientError, doing: str, not_found: str | None = None) -> AwsError:
    """One clear line for a botocore exception raised while ``doing`` something; ``not_found`` names the resource."""
    from botocore import exceptions as bx

    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AwsError(
            f"no AWS credentials found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (while {doing})"
        )
    if isinstance(exc, bx.NoRegionError):
        return AwsError(f"no AWS region configured: set AWS_DEFAULT_REGION or a profile's region (while {doing})")
    if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionClosedError | bx.ConnectTimeoutError):
        return AwsError(f"cannot reach AWS while {doing}: {exc}")
    if isinstance(exc, bx.ReadTimeoutError):
        return AwsError(f"AWS did not answer in time while {doing}: {exc}")
    if isinstance(exc, bx.ProfileNotFound):
        return AwsError(f"{exc} (while {doing})")
    code = error_code(exc)
    if code == "ResourceNotFoundException" and not_found:
        return AwsError(f"{not_found} not found (while {doing})")
    if code in {"UnrecognizedClientException", "InvalidSignatureException", "ExpiredTokenException"}:
        return AwsError(f"AWS rejected the credentials ({code}) while {doing}")
    if code in {"AccessDeniedException", "AccessDenied"}:
        return AwsError(f"access denied while {doing}: {_message(exc)}")
    if code:
        return AwsError(f"{code} while {doing}: {_message(exc)}")
    return AwsError(f"{type(exc).__name__} while {doing}: {exc}")


def _message(exc: BaseException) -> str:
    response: Any = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def create_stream(kinesis: KinesisClient, stream: str, shards: int, timeout: float = 60.0) -> None:
    """Create the stream (one that exists already is fine) and wait until it is ACTIVE."""
    try:
        kinesis.create_stream(StreamName=stream, ShardCount=shards)
    except AWS_ERRORS as exc:
        if error_code(exc) != "ResourceInUseException":
            raise translate(exc, f"creating the stream {stream!r}") from exc
    wait_stream_active(kinesis, stream, timeout)


def wait_stream_active(kinesis: KinesisClient, stream: str, timeout: float = 60.0) -> str:
    """Wait (boto3's ``stream_exists`` waiter) until the stream is ACTIVE; its ARN."""
    from botocore.exceptions import WaiterError

    try:  # it asks at once, then every second
        kinesis.get_waiter("stream_exists").wait(
            StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": max(1, int(timeout))}
        )
        arn: str = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    except WaiterError as exc:
        if isinstance(exc.last_response, dict) and "Error" in exc.last_response:
            code = exc.last_response["Error"].get("Code", "")
            raise AwsError(f"{code} while waiting for the stream {stream!r} to become ACTIVE") from exc
        raise WaitTimeout(f"stream {stream!r} is not ACTIVE after {timeout:g} s") from exc
    except AWS_ERRORS as exc:
        raise translate(exc, f"waiting for the stream {stream!r}", not_found=f"stream {stream!r}") from exc
    return arn
