"""Processed events published to SNS reach the recorder through an SQS subscription (moto server), land in a real
memcached, and the API then answers exactly which records are unprocessed. Also: a poison message, and memcached
stopping mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient

from streamwreck.api.app import create_app
from streamwreck.core.ledger import Ledger, open_ledger
from streamwreck.core.publisher import EventPublisher
from streamwreck.core.records import RecordId
from streamwreck.core.settings import ApiSettings, LedgerSettings, load_settings
from streamwreck.local import processes
from streamwreck.local.processes import Service
from streamwreck.recorder.worker import Recorder

SHARDS = ["shardId-000000000000", "shardId-000000000001"]
STREAMWRECK = str(Path(sys.executable).with_name("streamwreck"))


@dataclass
class Messaging:
    sns: Any
    sqs: Any
    topic_arn: str
    queue_url: str
    dlq_url: str


def _messaging(unique: str, raw_delivery: bool = False) -> Messaging:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name=unique)["TopicArn"]
    dlq_url = sqs.create_queue(QueueName=f"{unique}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=unique,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})},
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {"RawMessageDelivery": "true"} if raw_delivery else {}
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
    return Messaging(sns, sqs, topic_arn, queue_url, dlq_url)


@pytest.fixture
def messaging(moto_env: dict[str, str], unique: str) -> Messaging:
    """Topic -> queue (SNS envelope bodies) with a dead-letter queue after 2 receives."""
    return _messaging(unique)


def _ledger(memcached: Service) -> Ledger:
    return open_ledger(load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{memcached.port}"))


def _drain(recorder: Recorder, until: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the recorder did not catch up in time"
        recorder.poll_once()


def _visible(sqs: Any, queue_url: str) -> int:
    return sum(_counts(sqs, queue_url))


def _sequences(n: int, shard: int) -> list[str]:
    return [str(49_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000 * (shard + 1) + i) for i in range(n)]


@pytest.fixture
def ledger(memcached: Service) -> Iterator[Ledger]:
    """The recorder's ledger; closed even when the test fails (an open socket would fail a later test)."""
    the_ledger = _ledger(memcached)
    yield the_ledger
    the_ledger.close()


@pytest.fixture
def api(memcached: Service) -> Iterator[TestClient]:
    ledger = _ledger(memcached)
    with TestClient(create_app(load_settings(ApiSettings), ledger)) as client:
        yield client
    ledger.close()


@pytest.mark.parametrize("raw_delivery", [False, True], ids=["sns-envelope", "raw-delivery"])
def test_published_events_become_ledger_entries_and_the_api_names_the_gaps(
    moto_env: dict[str, str], ledger: Ledger, api: TestClient, unique: str, raw_delivery: bool
) -> None:
    messaging = _messaging(unique, raw_delivery)
    publisher = EventPublisher(messaging.sns, messaging.topic_arn, "worker-1")
    written = {shard: _sequences(1200, i) for i, shard in enumerate(SHARDS)}
    skipped = {(shard, seq) for shard in SHARDS for seq in written[shard][::7]}
    for shard in SHARDS:
        processed = [(seq, 0) for seq in written[shard] if (shard, seq) not in skipped]
        report = publisher.publish(unique, shard, processed)
        assert report.requests == 1  # ~1,000 records of 56 digits: one PublishBatch request
    # one record processed twice, by two workers
    again = [(written[SHARDS[0]][1], 0)]
    EventPublisher(messaging.sns, messaging.topic_arn, "worker-2").publish(unique, SHARDS[0], again)

    recorder = Recorder(messaging.sqs, messaging.queue_url, ledger, wait_seconds=1)
    _drain(recorder, lambda: _visible(messaging.sqs, messaging.queue_url) == 0)

    records = [{"shard_id": shard, "sequence_number": seq} for shard in SHARDS for seq in written[shard]]
    answer = api.post("/reconcile", json={"stream": unique, "records": records}).json()
    assert answer["checked"] == 2400
    assert {(r["shard_id"], r["sequence_number"]) for r in answer["unprocessed"]} == skipped
    assert answer["duplicates"] == [
        {"shard_id": SHARDS[0], "sequence_number": written[SHARDS[0]][1], "sub_sequence_number": 0, "count": 2}
    ]
    assert answer["ledger"]["healthy"] is True


POISON = [
    "{not an event",
    "[" * 5000,  # nested too deep for the JSON parser
    '{"schema": "streamwreck.processed.v1", "event_id": ' + "9" * 5000 + "}",  # an int too long to convert
    json.dumps(  # a time without a zone
        {
            "schema": "streamwreck.processed.v1",
            "event_id": "e",
            "stream": "s",
            "shard_id": "x",
            "processed_at": "2026-11-27T16:00:00",
            "records": [["1", 0]],
        }
    ),
]


def test_poison_messages_are_left_for_the_dead_letter_queue(
    messaging: Messaging, ledger: Ledger, api: TestClient, unique: str
) -> None:
    for body in POISON:
        messaging.sqs.send_message(QueueUrl=messaging.queue_url, MessageBody=body)
    EventPublisher(messaging.sns, messaging.topic_arn).publish(unique, SHARDS[0], [("5", 0)])
    recorder = Recorder(messaging.sqs, messaging.queue_url, ledger, wait_seconds=1, visibility_timeout=0)
    reports = [recorder.poll_once() for _ in range(4)]
    assert sum(r.rejected for r in reports) >= 2 * len(POISON) and sum(r.deleted for r in reports) == 1
    # after maxReceiveCount (2) receives, SQS moved the poison messages to the dead-letter queue
    dead = []
    for _ in range(5):
        dead += messaging.sqs.receive_message(QueueUrl=messaging.dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert sorted(m["Body"] for m in dead) == sorted(POISON)
    query = {"stream": unique, "records": [{"shard_id": SHARDS[0], "sequence_number": "5"}]}
    assert api.post("/reconcile", json=query).json()["unprocessed"] == []


def test_memcached_down_holds_the_messages_and_catches_up(messaging: Messaging, tmp_path: Path, unique: str) -> None:
    node = processes.start_memcached(tmp_path)
    port = node.port
    ledger = open_ledger(load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{port}"))  # connects on use
    # two recorders, as when the service is scaled out; messages go visible again 2 s after a receive
    recorders = [
        Recorder(messaging.sqs, messaging.queue_url, ledger, wait_seconds=1, visibility_timeout=2) for _ in range(2)
    ]
    workers = [threading.Thread(target=recorder.run, daemon=True) for recorder in recorders]
    api: Service | None = None
    try:
        api_port = processes.free_port()
        api = processes.launch(
            "api",
            [STREAMWRECK, "api"],
            tmp_path,
            api_port,
            lambda: processes.http_ready(f"http://127.0.0.1:{api_port}/healthz"),
            env={"STREAMWRECK_MEMCACHED_SERVERS": f"127.0.0.1:{port}", "STREAMWRECK_API_PORT": str(api_port)},
        )
        publisher = EventPublisher(messaging.sns, messaging.topic_arn)
        publisher.publish(unique, SHARDS[0], [("1", 0), ("2", 0)])
        for worker in workers:
            worker.start()
        body = {"stream": unique, "records": [{"shard_id": SHARDS[0], "sequence_number": s} for s in "1234"]}
        _wait(lambda: _unprocessed(api, body) == ["3", "4"])

        node.stop()
        publisher.publish(unique, SHARDS[0], [("3", 0)])
        publisher.publish(unique, SHARDS[0], [("4", 0)])
        down = httpx.post(f"{api.url}/reconcile", json=body)
        assert down.status_code == 503 and down.headers["retry-after"] == "5"
        assert httpx.get(f"{api.url}/readyz").status_code == 503
        _wait(lambda: _counts(messaging.sqs, messaging.queue_url) == (0, 2))  # both received
        time.sleep(5)  # well past the 2 s visibility timeout: held in hand, kept invisible, not received again
        assert all(worker.is_alive() for worker in workers)
        assert _counts(messaging.sqs, messaging.queue_url) == (0, 2)

        restarted = int(time.time())
        node = processes.start_memcached(tmp_path, port=port)  # back, empty
        _wait(lambda: _visible(messaging.sqs, messaging.queue_url) == 0, timeout=60)
        answer = httpx.post(f"{api.url}/reconcile", json=body).json()
        # "3" and "4" were recorded after the restart; "1" and "2" went with the old process, and the ledger's
        # start time says so
        assert [r["sequence_number"] for r in answer["unprocessed"]] == ["1", "2"]
        started = datetime.fromisoformat(answer["ledger"]["started_at"]).timestamp()
        assert restarted - 1 <= started <= time.time() + 1
        assert _visible(messaging.sqs, messaging.dlq_url) == 0  # nothing dead-lettered
    finally:
        for recorder in recorders:
            recorder.stop.set()
        for worker in workers:
            worker.join(timeout=40)
        if api is not None:
            api.stop()
        node.stop()
        ledger.close()


def _unprocessed(api: Service, body: dict[str, Any]) -> list[str] | None:
    """The sequence numbers the API calls unprocessed; None while it cannot answer (503)."""
    answer = httpx.post(f"{api.url}/reconcile", json=body)
    if answer.status_code != 200:
        return None
    return [r["sequence_number"] for r in answer.json()["unprocessed"]]


def _counts(sqs: Any, queue_url: str) -> tuple[int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _wait(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_sigterm_finishes_the_batch_in_hand_then_exits_0(
    messaging: Messaging, moto_env: dict[str, str], tmp_path: Path, unique: str
) -> None:
    node = processes.start_memcached(tmp_path)
    env = {
        **moto_env,
        "STREAMWRECK_QUEUE_URL": messaging.queue_url,
        "STREAMWRECK_MEMCACHED_SERVERS": f"127.0.0.1:{node.port}",
        "STREAMWRECK_MEMCACHED_TIMEOUT_SECONDS": "20",
        "STREAMWRECK_RECORDER_WAIT_SECONDS": "1",
    }
    process = subprocess.Popen([STREAMWRECK, "recorder"], env={**processes.os.environ, **env}, stderr=subprocess.PIPE)
    try:
        os.kill(node.pid, signal.SIGSTOP)  # memcached hangs: the batch will be in hand, its write waiting
        EventPublisher(messaging.sns, messaging.topic_arn).publish(unique, SHARDS[0], [("11", 0)])
        _wait(lambda: _counts(messaging.sqs, messaging.queue_url) == (0, 1))
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        os.kill(node.pid, signal.SIGCONT)
        assert process.wait(timeout=30) == 0
        assert _visible(messaging.sqs, messaging.queue_url) == 0  # stored, then deleted, before it exited
        ledger = open_ledger(load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{node.port}"))
        assert list(ledger.lookup([RecordId(unique, SHARDS[0], "11", 0)])) == [RecordId(unique, SHARDS[0], "11", 0)]
        ledger.close()
    finally:
        os.kill(node.pid, signal.SIGCONT)
        process.kill()
        _, stderr = process.communicate()
        node.stop()
    events = [json.loads(line)["event"] for line in stderr.decode().splitlines()]
    assert events[0] == "recorder_started" and events[-1] == "recorder_stopped"
    assert events.index("recorder_stopping") < events.index("batch_recorded")
