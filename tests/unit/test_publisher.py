"""The publisher's retry logic, with a scripted SNS client (the real SNS path is in tests/integration)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from streamwreck.core.errors import PublishError, RejectedInputError
from streamwreck.core.events import parse_body
from streamwreck.core.publisher import EventPublisher


class ScriptedSns:
    """Answers publish_batch from a script: an exception to raise, or ids to fail (None: all succeed)."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls: list[list[dict[str, str]]] = []

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[dict[str, str]]) -> dict[str, Any]:
        self.calls.append(PublishBatchRequestEntries)
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        failed_ids = set(step or ())
        return {
            "Successful": [{"Id": e["Id"]} for e in PublishBatchRequestEntries if e["Id"] not in failed_ids],
            "Failed": [{"Id": i, "Code": "InternalError", "SenderFault": False} for i in failed_ids],
        }


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "PublishBatch")


RECORDS = [(str(10**55 + i), 0) for i in range(10)]


def _publisher(sns: ScriptedSns, attempts: int = 4) -> EventPublisher:
    return EventPublisher(sns, "arn:aws:sns:us-east-1:1:t", "w", attempts=attempts, sleep=lambda _: None)


def test_publishes_once_when_all_succeed() -> None:
    sns = ScriptedSns([])
    report = _publisher(sns).publish("s", "shardId-0", RECORDS)
    assert (report.events, report.requests) == (1, 1)
    assert parse_body(sns.calls[0][0]["Message"]).records == RECORDS


def test_retries_only_the_failed_entries() -> None:
    sns = ScriptedSns([None])
    publisher = _publisher(sns)
    many = [(str(10**55 + i), 0) for i in range(3000)]  # several events in one request
    sns.script = [["1"], None]
    report = publisher.publish("s", "shardId-0", many)
    assert report.requests == 2
    assert [e["Id"] for e in sns.calls[1]] == ["1"]
    assert sns.calls[1][0]["Message"] == sns.calls[0][1]["Message"]  # same event id: the ledger counts it once


def test_throttling_and_connection_errors_are_retried() -> None:
    sns = ScriptedSns([_client_error("Throttled"), EndpointConnectionError(endpoint_url="http://x"), None])
    assert _publisher(sns).publish("s", "shardId-0", RECORDS).requests == 3


def test_gives_up_with_publish_error_after_the_attempts() -> None:
    sns = ScriptedSns([_client_error("InternalError")] * 4)
    with pytest.raises(PublishError, match="after 4 attempts"):
        _publisher(sns, attempts=4).publish("s", "shardId-0", RECORDS)


def test_a_missing_topic_is_a_publish_error_without_retries() -> None:
    sns = ScriptedSns([_client_error("NotFound")])
    with pytest.raises(PublishError, match="NotFound"):
        _publisher(sns).publish("s", "shardId-0", RECORDS)
    assert len(sns.calls) == 1


def test_a_malformed_request_is_rejected_without_retries() -> None:
    sns = ScriptedSns([_client_error("InvalidParameter")])
    with pytest.raises(RejectedInputError, match="InvalidParameter"):
        _publisher(sns).publish("s", "shardId-0", RECORDS)
    assert len(sns.calls) == 1


@pytest.mark.parametrize(
    ("stream", "shard", "records", "message"),
    [
        ("bad stream", "shardId-0", RECORDS, "1 to 128"),
        ("s", "shard/0", RECORDS, "1 to 128"),
        ("s", "shardId-0", [("012", 0)], "decimal number"),
        ("s", "shardId-0", [("12", -1)], "sub-sequence"),
        ("s", "shardId-0", [("12", "0")], "sub-sequence"),
    ],
)
def test_invalid_records_raise_before_anything_is_sent(stream: str, shard: str, records: list, message: str) -> None:
    sns = ScriptedSns([])
    with pytest.raises(ValueError, match=message):
        _publisher(sns).publish(stream, shard, records)
    assert sns.calls == []


def test_nothing_to_publish_sends_nothing() -> None:
    sns = ScriptedSns([])
    assert _publisher(sns).publish("s", "shardId-0", []).requests == 0
    assert sns.calls == []
