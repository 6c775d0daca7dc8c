"""The recorder's dead-letter queue as evidence, against moto (SQS, SNS), kinesis-local, a real memcached and a real
``streamwreck api``: records whose processed events were dead-lettered are ``unknown`` (processed, not recorded),
not ``lost``; the queue is peeked, never consumed; ``streamwreck redrive-dlq`` moves the events back, the recorder
records them, and the next check is clean."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from streamwreck.checker.check import Check
from streamwreck.checker.producer import produce
from streamwreck.checker.verdict import DEAD_LETTERED
from streamwreck.cli.main import main
from streamwreck.core.aws import wait_stream_active
from streamwreck.core.events import chunk_events
from streamwreck.core.ledger import Ledger, open_ledger
from streamwreck.core.records import RecordId
from streamwreck.core.settings import LedgerSettings, load_settings
from streamwreck.local.processes import Service
from streamwreck.recorder.worker import Recorder


@pytest.fixture
def ledger(memcached: Service) -> Iterator[Ledger]:
    the_ledger = open_ledger(load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{memcached.port}"))
    started = the_ledger.health().started_at
    assert started is not None
    while time.time() < started.timestamp() + 2:  # records must arrive after memcached's start to be provable
        time.sleep(0.05)
    yield the_ledger
    the_ledger.close()


def _queues(sqs: Any, name: str) -> tuple[str, str]:
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "1"})
    queue = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    return queue, dlq


def _count(sqs: Any, url: str, hidden_only: bool = False) -> int:
    names = ["ApproximateNumberOfMessagesNotVisible"] + ([] if hidden_only else ["ApproximateNumberOfMessages"])
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def test_dead_lettered_records_are_unknown_until_redriven_then_processed(
    aws_env: dict[str, str], ledger: Ledger, api_server: Service, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    kinesis, sqs = boto3.client("kinesis"), boto3.client("sqs")
    kinesis.create_stream(StreamName=unique, ShardCount=2)
    wait_stream_active(kinesis, unique)
    written = produce(kinesis, unique, 60).records
    processed, dead, lost = written[:30], written[30:50], written[50:]
    ledger.record([RecordId(unique, r.shard_id, r.sequence_number, 0) for r in processed], "e1", int(time.time()))
    queue, dlq = _queues(sqs, unique)
    for record in dead:  # one event a record, each dead-lettered straight away (what the recorder could not store)
        for body in chunk_events(unique, record.shard_id, [(record.sequence_number, 0)], "w"):
            sqs.send_message(QueueUrl=dlq, MessageBody=body)
    sqs.send_message(QueueUrl=dlq, MessageBody="{not an event")

    def check() -> tuple[Check, dict[str, Any]]:
        run = Check(stream=unique, endpoint=api_server.url, grace=0, settle=0, dead_letter_queue=dlq, kinesis=kinesis)
        return run, run.run()

    first, document = check()
    findings = first.tally.findings if first.tally is not None else {}
    unknown = {k for k, f in findings.items() if f.status == "unknown"}
    assert unknown == {(r.shard_id, r.sequence_number, 0) for r in dead}
    assert {f.reason for f in findings.values() if f.status == "unknown"} == {DEAD_LETTERED}
    assert {(r.shard_id, r.sequence_number, 0) for r in first.lost_records()} == {
        (r.shard_id, r.sequence_number, 0) for r in lost
    }
    summary = document["options"]["dead_letter_queue"]
    assert summary["messages"] == 21 and summary["records_found"] == 20 and summary["complete"] is True
    assert _count(sqs, dlq) == 21  # peeked, not consumed; all visible again
    assert _count(sqs, dlq, hidden_only=True) == 0

    # The cause is fixed: move the events back, the recorder stores them, the records are processed.
    assert main(["redrive-dlq", "--from", dlq, "--to", queue]) == 0
    assert "moved 21 messages" in capsys.readouterr().err
    assert _count(sqs, dlq) == 0
    recorder = Recorder(sqs, queue, ledger, wait_seconds=1, visibility_timeout=1)
    deadline = time.monotonic() + 30
    while _count(sqs, queue) and time.monotonic() < deadline:
        recorder.poll_once()
    second, _ = check()
    assert second.tally is not None
    assert {k for k, f in second.tally.findings.items() if f.status == "unknown"} == set()
    assert {(r.shard_id, r.sequence_number) for r in second.lost_records()} == {
        (r.shard_id, r.sequence_number) for r in lost
    }
    assert _count(sqs, dlq) == 1  # the garbage went back to the dead-letter queue after its one receive


def test_redrive_of_an_empty_queue_moves_nothing(moto_env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    sqs = boto3.client("sqs")
    queue, dlq = _queues(sqs, f"t{uuid.uuid4().hex[:10]}")
    assert main(["redrive-dlq", "--from", dlq, "--to", queue]) == 0
    assert "moved 0 messages" in capsys.readouterr().err
    assert main(["redrive-dlq", "--from", dlq, "--to", dlq]) == 2
