"""The recorder accepts only the configured topic's messages (moto: two topics subscribed to one queue, real
memcached): the others are refused, counted, and end in the dead-letter queue; its metrics are served over HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest

from streamwreck.core.ledger import Ledger, open_ledger
from streamwreck.core.publisher import EventPublisher
from streamwreck.core.records import RecordId
from streamwreck.core.settings import LedgerSettings, load_settings
from streamwreck.local import processes
from streamwreck.local.processes import Service
from streamwreck.recorder.metrics import RecorderMetrics
from streamwreck.recorder.worker import Recorder, max_receive_count

SHARD = "shardId-000000000000"


@pytest.fixture
def ledger(memcached: Service) -> Iterator[Ledger]:
    the_ledger = open_ledger(load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{memcached.port}"))
    yield the_ledger
    the_ledger.close()


def _visible(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


@pytest.mark.parametrize("raw_delivery", [False, True], ids=["sns-envelope", "raw-delivery"])
def test_only_the_configured_topic_is_recorded(
    moto_env: dict[str, str], ledger: Ledger, unique: str, raw_delivery: bool
) -> None:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    ours = sns.create_topic(Name=f"{unique}-ours")["TopicArn"]
    theirs = sns.create_topic(Name=f"{unique}-theirs")["TopicArn"]
    dlq = sqs.create_queue(QueueName=f"{unique}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    queue = sqs.create_queue(QueueName=unique, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {"RawMessageDelivery": "true"} if raw_delivery else {}
    for topic in (ours, theirs):
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
    EventPublisher(sns, ours).publish(unique, SHARD, [("1", 0)])
    EventPublisher(sns, theirs).publish(unique, SHARD, [("2", 0)])

    metrics = RecorderMetrics()
    assert max_receive_count(sqs, queue) == 2
    recorder = Recorder(
        sqs, queue, ledger, wait_seconds=1, visibility_timeout=0, topic_arn=ours, metrics=metrics, max_receive_count=2
    )
    deadline = time.monotonic() + 30
    while _visible(sqs, queue) and time.monotonic() < deadline:
        recorder.poll_once()
    found = ledger.lookup([RecordId(unique, SHARD, "1", 0), RecordId(unique, SHARD, "2", 0)])
    # Raw bodies have no envelope, but the publisher names its topic as a message attribute: the same either way.
    assert list(found) == [RecordId(unique, SHARD, "1", 0)]
    assert _visible(sqs, dlq) == 1
    refused = 1
    assert metrics.rejected.labels("wrong_topic")._value.get() == 2 * refused  # each of its two receives
    assert metrics.dead_lettered._value.get() == refused
    assert metrics.recorded._value.get() == 2 - refused


def test_the_metrics_port_serves_the_counters() -> None:
    metrics = RecorderMetrics()
    metrics.records.inc(7)
    port = processes.free_port()
    stop = metrics.serve(port, "127.0.0.1")
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        stop()
    assert "streamwreck_recorder_records_stored_total 7.0" in text
    assert 'streamwreck_recorder_messages_rejected_total{reason="malformed"}' not in text  # no series until counted
