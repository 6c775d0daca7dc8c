"""A deploy you can run here: `python -m streamwreck.deploy.stacks` (what `make deploy` runs) deploys
cfn/messaging.yaml into moto's CloudFormation, and the pipeline runs on the resources that stack created: processed
events published to the stack's topic reach the stack's queue, the recorder stores them in a real memcached, and the
API answers which records were processed. Then `destroy` removes the stack.

moto's CloudFormation does not implement AWS::SNS::Subscription (nor AWS::SQS::QueuePolicy): it reports them
created and creates nothing. The test applies the subscription exactly as the template declares it (protocol, the
stack's queue, raw delivery) - that one step is the emulator's gap, not ours, and the test says so if moto ever
starts creating it itself. The processor is not run here: moto's Kinesis is not fit for the KCL (EMULATORS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
from fastapi.testclient import TestClient

from streamwreck.api.app import create_app
from streamwreck.core.clock import wait_until
from streamwreck.core.ledger import open_ledger
from streamwreck.core.publisher import EventPublisher
from streamwreck.core.settings import ApiSettings, load_settings
from streamwreck.deploy import iac
from streamwreck.local.processes import Service
from streamwreck.recorder.worker import Recorder

ROOT = Path(__file__).resolve().parents[2]
SHARD = "shardId-000000000000"


def stacks(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "streamwreck.deploy.stacks", "--poll", "0.2", "--timeout", "60", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=dict(os.environ), cwd=ROOT)


def declared_subscription() -> dict[str, Any]:
    template = iac.load_template(ROOT / "cfn" / "messaging.yaml")
    subscription: dict[str, Any] = template["Resources"]["RecorderSubscription"]["Properties"]
    return subscription


def test_messaging_stack_deployed_into_moto_carries_the_pipeline(
    moto_env: dict[str, str], memcached: Service, unique: str
) -> None:
    deployed = stacks("--prefix", unique, "--only", "messaging", "deploy", "--param", "messaging.ShardCount=1")
    assert deployed.returncode == 0, deployed.stderr
    again = stacks("--prefix", unique, "--only", "messaging", "deploy", "--param", "messaging.ShardCount=1")
    assert again.returncode == 0, again.stderr  # a second deploy is an update (or no change), not an error
    listed = stacks("--prefix", unique, "--only", "messaging", "outputs")
    assert listed.returncode == 0, listed.stderr
    outputs = json.loads(listed.stdout)["messaging"]
    assert outputs["StreamName"] == unique  # the stream is named after the prefix unless --stream says otherwise

    sns, sqs, kinesis = boto3.client("sns"), boto3.client("sqs"), boto3.client("kinesis")
    summary = kinesis.describe_stream_summary(StreamName=unique)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 1
    attributes = sqs.get_queue_attributes(QueueUrl=outputs["QueueUrl"], AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    dlq_arn = sqs.get_queue_attributes(QueueUrl=outputs["DeadLetterQueueUrl"], AttributeNames=["QueueArn"])
    assert redrive["deadLetterTargetArn"] == dlq_arn["Attributes"]["QueueArn"]
    assert int(redrive["maxReceiveCount"]) == 5

    # The emulator's gap: create the subscription the template declares, on the stack's own topic and queue.
    assert not sns.list_subscriptions_by_topic(TopicArn=outputs["TopicArn"])["Subscriptions"], (
        "moto now creates AWS::SNS::Subscription itself: drop this step"
    )
    declared = declared_subscription()
    assert declared["TopicArn"] == {"Ref": "ProcessedTopic"}
    assert declared["Endpoint"] == {"Fn::GetAtt": ["RecorderQueue", "Arn"]}
    sns.subscribe(
        TopicArn=outputs["TopicArn"],
        Protocol=declared["Protocol"],
        Endpoint=outputs["QueueArn"],
        Attributes={"RawMessageDelivery": str(declared["RawMessageDelivery"]).lower()},
    )

    publisher = EventPublisher(sns, outputs["TopicArn"], "deploy-test")
    report = publisher.publish(unique, SHARD, [("100", 0), ("101", 0), ("101", 1)])
    assert report.events >= 1

    # Raw delivery: the queue holds the processed event itself, not SNS's envelope.
    peeked = sqs.receive_message(QueueUrl=outputs["QueueUrl"], WaitTimeSeconds=5, VisibilityTimeout=0)["Messages"]
    body = json.loads(peeked[0]["Body"])
    assert "TopicArn" not in body and "records" in body

    settings = load_settings(ApiSettings, memcached_servers=f"127.0.0.1:{memcached.port}")
    ledger = open_ledger(settings)
    try:
        recorder = Recorder(sqs, outputs["QueueUrl"], ledger, wait_seconds=1, visibility_timeout=30)
        stored = 0

        def all_stored() -> bool:
            nonlocal stored
            stored += recorder.poll_once().records
            return stored >= 3

        wait_until(all_stored, 30, "the recorder to store the 3 records")
        assert stored == 3

        with TestClient(create_app(settings, ledger)) as client:
            records = [
                {"shard_id": SHARD, "sequence_number": seq, "sub_sequence_number": sub}
                for seq, sub in (("100", 0), ("101", 0), ("101", 1), ("102", 0))
            ]
            response = client.post("/reconcile", json={"stream": unique, "records": records})
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["checked"] == 4
        assert [(r["sequence_number"], r["sub_sequence_number"]) for r in answer["unprocessed"]] == [("102", 0)]
        assert answer["duplicates"] == []
    finally:
        ledger.close()

    destroyed = stacks("--prefix", unique, "--only", "messaging", "destroy")
    assert destroyed.returncode == 0, destroyed.stderr
    cfn = boto3.client("cloudformation")
    remaining = [s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"]
    assert f"{unique}-messaging" not in remaining
