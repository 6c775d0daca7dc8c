"""The AWS resources of the local stack: the stream, the processed-events topic, the recorder's queue and its
dead-letter queue, and the subscription between them. The KCL lease table is the daemon's own (it creates it).

The names and policies are pure functions; :func:`create` is a thin layer over boto3 clients passed in, so the same
code would create them in a real account.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamwreck.core.aws import create_stream
from streamwreck.core.messaging import queue_policy, redrive_policy

STREAM_ACTIVE_TIMEOUT = 30.0
# SQS queue names take at most 80 characters of [A-Za-z0-9_-]; the longest derived name adds 24 to the stream's.
MAX_STREAM_NAME = 80 - len("-processed-recorder-dlq")


@dataclass(frozen=True)
class Names:
    stream: str
    kcl_application: str
    topic: str
    queue: str
    dead_letter_queue: str


def names_for(stream: str) -> Names:
    return Names(
        stream=stream,
        kcl_application=f"{stream}-consumer",
        topic=f"{stream}-processed",
        queue=f"{stream}-processed-recorder",
        dead_letter_queue=f"{stream}-processed-recorder-dlq",
    )


@dataclass(frozen=True)
class Created:
    topic_arn: str
    queue_url: str
    dead_letter_queue_url: str


def create(
    names: Names, shards: int, kinesis: Any, sns: Any, sqs: Any, timeout: float = STREAM_ACTIVE_TIMEOUT
) -> Created:
    """Create every resource (idempotent where the services are); the stream is ACTIVE when this returns."""
    create_stream(kinesis, names.stream, shards, timeout)
    topic_arn: str = sns.create_topic(Name=names.topic)["TopicArn"]
    dlq_url: str = sqs.create_queue(QueueName=names.dead_letter_queue)["QueueUrl"]
    queue_url: str = sqs.create_queue(
        QueueName=names.queue,
        Attributes={"RedrivePolicy": redrive_policy(_queue_arn(sqs, dlq_url)), "VisibilityTimeout": "60"},
    )["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": queue_policy(queue_arn, topic_arn)})
    # Raw delivery: the queue gets the event itself, not SNS's JSON envelope (the recorder reads both).
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return Created(topic_arn=topic_arn, queue_url=queue_url, dead_letter_queue_url=dlq_url)


def _queue_arn(sqs: Any, queue_url: str) -> str:
    arn: str = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return arn
