"""docker-compose's one-shot init: create the pipeline's AWS resources in LocalStack, idempotently.

It reads the same variables the services get (``InitSettings``), so the names cannot drift apart:
  STREAMWRECK_STREAM_NAME        the Kinesis stream (STREAMWRECK_SHARD_COUNT shards, default 2)
  STREAMWRECK_TOPIC_ARN          the processed-events topic: its name is the ARN's last part
  STREAMWRECK_QUEUE_URL          the recorder's queue: its name is the URL's last part; its dead-letter queue is
                                 "<name>-dlq", with STREAMWRECK_MAX_RECEIVE_COUNT receives (default 5) before a
                                 message moves there
and the standard AWS_* variables (AWS_ENDPOINT_URL points at LocalStack). It subscribes the queue to the topic with
raw message delivery, lets only that topic send to the queue, waits until the stream is ACTIVE, and fails (exit 1)
if what it created is not what the services were told (another account or region, say). Running it again changes
nothing. Usage: python -m streamwreck.deploy.compose_init
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from streamwreck.core.errors import ConfigError
from streamwreck.core.messaging import queue_policy, redrive_policy
from streamwreck.core.settings import InitSettings, load_settings

READY_TIMEOUT = 120.0  # LocalStack may still be loading a service when its health check first passes


def _retry(call: Any, what: str) -> Any:
    """Call until the emulator answers (it may still be starting), for READY_TIMEOUT seconds."""
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + READY_TIMEOUT
    delay = 0.5
    while True:
        try:
            return call()
        except (BotoCoreError, ClientError) as exc:
            code = exc.response["Error"]["Code"] if isinstance(exc, ClientError) else type(exc).__name__
            if code in {"ResourceInUseException", "InvalidParameterValue", "InvalidParameter"}:
                raise
            if time.monotonic() > deadline:
                raise SystemExit(f"compose_init: {what} failed for {READY_TIMEOUT:.0f}s: {exc}") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def ensure_stream(kinesis: Any, name: str, shards: int) -> str:
    from botocore.exceptions import ClientError

    try:
        _retry(lambda: kinesis.create_stream(StreamName=name, ShardCount=shards), "CreateStream")
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return str(summary["StreamARN"])
        if time.monotonic() > deadline:
            raise SystemExit(f"compose_init: stream {name} is still {summary['StreamStatus']}")
        time.sleep(0.2)


def main() -> int:
    import boto3

    try:
        settings = load_settings(InitSettings)
    except ConfigError as exc:
        raise SystemExit(f"compose_init: {exc}") from None
    stream = settings.stream_name
    topic_arn_expected = settings.topic_arn
    queue_url_expected = settings.queue_url
    shards = settings.shard_count
    max_receive = settings.max_receive_count
    topic_name = topic_arn_expected.rsplit(":", 1)[-1]
    queue_name = queue_url_expected.rstrip("/").rsplit("/", 1)[-1]

    kinesis, sns, sqs = boto3.client("kinesis"), boto3.client("sns"), boto3.client("sqs")
    stream_arn = ensure_stream(kinesis, stream, shards)
    topic_arn = _retry(lambda: sns.create_topic(Name=topic_name), "CreateTopic")["TopicArn"]
    if settings.lost_topic_arn:  # the watcher's (docker compose --profile watch)
        lost_name = settings.lost_topic_arn.rsplit(":", 1)[-1]
        _retry(lambda: sns.create_topic(Name=lost_name), "CreateTopic")
    dlq_url = _retry(lambda: sqs.create_queue(QueueName=f"{queue_name}-dlq"), "CreateQueue")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = _retry(lambda: sqs.create_queue(QueueName=queue_name), "CreateQueue")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.set_queue_attributes(
        QueueUrl=queue_url,
        Attributes={
            "RedrivePolicy": redrive_policy(dlq_arn, max_receive),
            "Policy": queue_policy(queue_arn, topic_arn),
        },
    )
    existing = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    if not any(s["Endpoint"] == queue_arn for s in existing):
        sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
            ReturnSubscriptionArn=True,
        )

    problems = []
    if topic_arn != topic_arn_expected:
        problems.append(f"the topic is {topic_arn}, the services were given STREAMWRECK_TOPIC_ARN={topic_arn_expected}")
    if queue_url.rsplit("/", 2)[-2:] != queue_url_expected.rstrip("/").rsplit("/", 2)[-2:]:
        problems.append(f"the queue is {queue_url}, the services were given STREAMWRECK_QUEUE_URL={queue_url_expected}")
    for problem in problems:
        print(f"compose_init: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(
        json.dumps(
            {"stream": stream_arn, "topic": topic_arn, "queue": queue_url, "dead_letter_queue": dlq_url},
            separators=(",", ":"),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
