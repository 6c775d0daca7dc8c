"""docker-compose's one-shot init (streamwreck.deploy.compose_init), run here against the same kinds of emulators
LocalStack bundles (kinesis-local for Kinesis, moto for SNS and SQS): it creates the stream, topic, queue,
dead-letter queue and raw-delivery subscription with the names the services are given, runs again without changing
anything, and refuses when the services were told another account's ARN."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3

ACCOUNT = "123456789012"  # moto's


def run_init(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamwreck.deploy.compose_init"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_init_creates_the_pipeline_resources_once(aws_env: dict[str, str], unique: str) -> None:
    env = {
        "STREAMWRECK_STREAM_NAME": unique,
        "STREAMWRECK_TOPIC_ARN": f"arn:aws:sns:us-east-1:{ACCOUNT}:{unique}-processed",
        "STREAMWRECK_QUEUE_URL": f"http://localstack:4566/{ACCOUNT}/{unique}-processed-recorder",
        "STREAMWRECK_SHARD_COUNT": "2",
        "STREAMWRECK_MAX_RECEIVE_COUNT": "3",
    }
    first = run_init(env)
    assert first.returncode == 0, first.stderr
    created = json.loads(first.stdout)
    second = run_init(env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == created

    kinesis, sns, sqs = boto3.client("kinesis"), boto3.client("sns"), boto3.client("sqs")
    summary = kinesis.describe_stream_summary(StreamName=unique)["StreamDescriptionSummary"]
    assert summary["StreamStatus"] == "ACTIVE" and summary["OpenShardCount"] == 2
    assert created["topic"] == env["STREAMWRECK_TOPIC_ARN"]
    (subscription,) = sns.list_subscriptions_by_topic(TopicArn=created["topic"])["Subscriptions"]
    attributes = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])["Attributes"]
    assert attributes["RawMessageDelivery"] == "true"
    queue = sqs.get_queue_attributes(QueueUrl=created["queue"], AttributeNames=["All"])["Attributes"]
    assert subscription["Endpoint"] == queue["QueueArn"]
    redrive = json.loads(queue["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) == 3 and redrive["deadLetterTargetArn"].endswith(
        f"{unique}-processed-recorder-dlq"
    )

    sns.publish(TopicArn=created["topic"], Message='{"raw": true}')
    messages = sqs.receive_message(QueueUrl=created["queue"], WaitTimeSeconds=5)["Messages"]
    assert messages[0]["Body"] == '{"raw": true}'


def test_init_refuses_names_the_services_would_not_find(aws_env: dict[str, str], unique: str) -> None:
    result = run_init(
        {
            "STREAMWRECK_STREAM_NAME": unique,
            "STREAMWRECK_TOPIC_ARN": f"arn:aws:sns:us-east-1:000000000000:{unique}-processed",
            "STREAMWRECK_QUEUE_URL": f"http://localstack:4566/000000000000/{unique}-processed-recorder",
            "SHARD_COUNT": "1",
        }
    )
    assert result.returncode == 1
    assert "STREAMWRECK_TOPIC_ARN=arn:aws:sns:us-east-1:000000000000" in result.stderr


def test_init_names_a_missing_variable(aws_env: dict[str, str]) -> None:
    result = run_init({"STREAMWRECK_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t", "STREAMWRECK_QUEUE_URL": "http://x/1/q"})
    assert result.returncode != 0
    assert "STREAMWRECK_STREAM_NAME is required" in result.stderr
