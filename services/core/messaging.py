"""The processed-events plumbing every environment creates the same way: the recorder's queue lets only the topic
send to it, and moves a message it could not record to its dead-letter queue after a few receives."""

from __future__ import annotations

import json

MAX_RECEIVE_COUNT = 5  # receives of a message the recorder cannot record before SQS moves it to the dead-letter queue


def redrive_policy(dead_letter_queue_arn: str, max_receive_count: int = MAX_RECEIVE_COUNT) -> str:
    return json.dumps({"deadLetterTargetArn": dead_letter_queue_arn, "maxReceiveCount": str(max_receive_count)})


def queue_policy(queue_arn: str, topic_arn: str) -> str:
    """Let the topic (and only it) send to the queue, as a real account needs."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "processed-events-topic",
                    "Effect": "Allow",
                    "Principal": {"Service": "sns.amazonaws.com"},
                    "Action": "sqs:SendMessage",
                    "Resource": queue_arn,
                    "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                }
            ],
        }
    )
