"""Which SNS topic a message came from, when the recorder is told to accept only one
(``STREAMWRECK_RECORDER_TOPIC_ARN``).

- An SNS-envelope body (the default delivery) names its topic: ``TopicArn``.
- A raw-delivery body is the event alone: no envelope, so no topic. It is accepted only when it carries an SQS
  message attribute ``TopicArn`` (String) naming the topic; otherwise it is refused. With raw delivery, either
  publish with that attribute or leave ``STREAMWRECK_RECORDER_TOPIC_ARN`` unset and let the queue's policy (only
  the topic may send, ``aws:SourceArn``) do the guarding.

This is a guard against wiring mistakes (a queue subscribed to the wrong topic, test traffic sent to a production
queue), not authentication: whoever may send to the queue can write any envelope. Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from streamwreck.core.errors import RejectedInputError

ATTRIBUTE = "TopicArn"


class WrongTopic(RejectedInputError):
    """A message from another topic (or from none): left for the dead-letter queue."""


def topic_of(message: dict[str, Any]) -> str | None:
    """The topic an SQS message says it came from: the envelope's TopicArn, else the TopicArn attribute."""
    body = message.get("Body", "")
    if body.lstrip().startswith("{") and '"TopicArn"' in body:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            document = None
        if isinstance(document, dict) and document.get("Type") == "Notification":
            topic = document.get("TopicArn")
            return topic if isinstance(topic, str) else None
    attribute = message.get("MessageAttributes", {}).get(ATTRIBUTE)
    if isinstance(attribute, dict) and attribute.get("DataType") == "String":
        value = attribute.get("StringValue")
        return value if isinstance(value, str) else None
    return None


def check_topic(message: dict[str, Any], expected: str | None) -> None:
    """WrongTopic unless the message comes from ``expected`` (anything goes when it is None)."""
    if expected is None:
        return
    topic = topic_of(message)
    if topic != expected:
        said = f"from {topic}" if topic else "naming no topic (raw delivery without a TopicArn attribute)"
        raise WrongTopic(f"a message {said}; only {expected} is recorded")
