"""Which topic a message came from: the SNS envelope's TopicArn, or a raw message's TopicArn attribute."""

from __future__ import annotations

import json

import pytest

from streamwreck.recorder.topics import WrongTopic, check_topic, topic_of

TOPIC = "arn:aws:sns:us-east-1:123456789012:processed"
EVENT = '{"schema": "streamwreck.processed.v1"}'


def envelope(topic: str) -> dict[str, object]:
    return {"Body": json.dumps({"Type": "Notification", "TopicArn": topic, "Message": EVENT})}


def test_the_envelope_names_the_topic() -> None:
    assert topic_of(envelope(TOPIC)) == TOPIC
    check_topic(envelope(TOPIC), TOPIC)
    with pytest.raises(WrongTopic, match="from arn:aws:sns:us-east-1:123456789012:other; only"):
        check_topic(envelope(TOPIC.replace("processed", "other")), TOPIC)


def test_a_raw_message_needs_the_attribute() -> None:
    raw = {"Body": EVENT}
    assert topic_of(raw) is None
    with pytest.raises(WrongTopic, match="naming no topic"):
        check_topic(raw, TOPIC)
    tagged = {"Body": EVENT, "MessageAttributes": {"TopicArn": {"DataType": "String", "StringValue": TOPIC}}}
    check_topic(tagged, TOPIC)
    check_topic(raw, None)  # no topic configured: everything goes


@pytest.mark.parametrize(
    "body",
    ['{"TopicArn": ', '{"Type": "Notification", "TopicArn": 7}', "[" * 5000 + '"TopicArn"', '{"TopicArn": "x"}'],
)
def test_garbage_names_no_topic(body: str) -> None:
    assert topic_of({"Body": body}) is None
