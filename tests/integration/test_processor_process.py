"""The record processor as a real process (``python -m streamwreck.processor.record_processor``, exactly what the daemon
starts), driven over stdin/stdout by a scripted daemon, publishing to moto's SNS -> SQS. No Java.

What it proves beyond the unit tests: the real boto3 publisher and SNS path, the settings read from the environment
as the daemon passes them, logs on stderr only (stdout carries nothing but the protocol, even when the user's function
prints), and that a publish outage really ends the process (os._exit) with no checkpoint written.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
from helpers import STREAMWRECK, wait_until

from streamwreck.core.events import Pair, parse_body
from streamwreck.local.processes import free_port
from streamwreck.processor.processor import Record
from streamwreck.processor.record_processor import EXIT_UNPUBLISHED

EVENTS = Path(__file__).resolve().parents[1] / "events"
PLAIN = json.loads((EVENTS / "kcl-process-records.json").read_text())
DEAGGREGATED = json.loads((EVENTS / "kcl-process-records-deaggregated.json").read_text())
SHARD = "shardId-000000000000"
# What the daemon's properties file names as its executable (see test_processor_properties.py)
RECORD_PROCESSOR = [sys.executable, "-m", "streamwreck.processor.record_processor"]
INITIALIZE = {"action": "initialize", "shardId": SHARD, "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0}


def noisy(record: Record) -> bool:
    """A user's processing function that prints (to stdout!) and skips nothing."""
    print(f"processing {record.sequence_number}")
    return True


def _expected(*messages: dict[str, Any], skip_every: int = 5) -> Counter[Pair]:
    pairs = [(r["sequenceNumber"], r["subSequenceNumber"]) for m in messages for r in m["records"]]
    return Counter((seq, sub) for seq, sub in pairs if skip_every == 0 or int(seq) % skip_every)


def _last(message: dict[str, Any]) -> list[Any]:
    return [message["records"][-1]["sequenceNumber"], message["records"][-1]["subSequenceNumber"]]


@dataclass
class ChildProcess:
    """The daemon's side of one record processor process."""

    process: subprocess.Popen[bytes]
    stderr_path: Path
    reader: LineReader
    checkpoint_errors: list[str | None] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    stray_stdout: list[str] = field(default_factory=list)

    def send(self, message: dict[str, Any], timeout: float = 30) -> list[dict[str, Any]]:
        """Send one action; answer checkpoints until the status for it (or the process's end). The messages read."""
        self._write(message)
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            line = self.reader.readline(deadline)
            if line == "":
                return messages  # the process ended
            if not line.strip():
                continue
            try:
                reply = json.loads(line)
            except json.JSONDecodeError:
                self.stray_stdout.append(line)
                continue
            messages.append(reply)
            self.received.append(reply)
            if reply["action"] == "status":
                assert reply["responseFor"] == message["action"]
                return messages
            assert reply["action"] == "checkpoint"
            error = self.checkpoint_errors.pop(0) if self.checkpoint_errors else None
            answer = {"action": "checkpoint", "sequenceNumber": reply["sequenceNumber"]}
            answer["subSequenceNumber"] = reply["subSequenceNumber"]
            if error:
                answer["error"] = error
            self._write(answer)

    def _write(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the process has ended; reading says so

    def checkpoints(self) -> list[list[Any]]:
        return [[m["sequenceNumber"], m["subSequenceNumber"]] for m in self.received if m["action"] == "checkpoint"]

    def close(self, timeout: float = 10) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()  # end of input: KCLProcess returns
        code = self.process.wait(timeout=timeout)
        self.process.stdout.close()
        return code

    def stderr(self) -> str:
        return self.stderr_path.read_text()


class LineReader:
    """Lines from a pipe with a deadline (a buffered file object would hide buffered lines from select)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._fd = stream.fileno()
        self._buffer = b""

    def readline(self, deadline: float) -> str:
        while b"\n" not in self._buffer:
            ready, _, _ = select.select([self._fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise AssertionError("the record processor did not answer in time")
            chunk = os.read(self._fd, 65536)
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line.decode()  # "" at the end of the stream
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode() + "\n"


@dataclass
class Messaging:
    topic_arn: str
    queue_url: str

    def received(self, expected_total: int, timeout: float = 10) -> Counter[Pair]:
        """Every record in the events on the queue, once the queue is drained and held at least ``expected_total``."""
        sqs = boto3.client("sqs")
        records: Counter[Pair] = Counter()

        def drained() -> bool:
            batch = sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            for message in batch.get("Messages", []):
                event = parse_body(message["Body"])
                assert (event.stream, event.shard_id, event.worker_id) == ("orders", SHARD, "protocol-test")
                records.update(event.records)
                sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
            return not batch.get("Messages") and sum(records.values()) >= expected_total

        wait_until(drained, timeout, f"events for {expected_total} records on the queue")
        return records


@pytest.fixture
def messaging(moto_env: dict[str, str], unique: str) -> Messaging:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name=unique)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=unique)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return Messaging(topic_arn, queue_url)


@pytest.fixture
def start_child(messaging: Messaging, tmp_path: Path) -> Iterator[Any]:
    children: list[ChildProcess] = []

    def start(**env: str) -> ChildProcess:
        full_env = {  # what the daemon gives each record processor (see plan_daemon)
            **os.environ,
            "STREAMWRECK_STREAM_NAME": "orders",
            "STREAMWRECK_APPLICATION_NAME": "orders-consumer",
            "STREAMWRECK_TOPIC_ARN": messaging.topic_arn,
            "STREAMWRECK_SKIP_EVERY": "5",
            "STREAMWRECK_WORKER_ID": "protocol-test",
            # the tests say when records are published (shutdown, shard end); no time flush on a slow machine
            "STREAMWRECK_PUBLISH_FLUSH_SECONDS": "300",
            **env,
        }
        stderr_path = tmp_path / f"child-{len(children)}.log"
        with open(stderr_path, "w") as stderr:
            process = subprocess.Popen(
                RECORD_PROCESSOR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=full_env,
            )
        assert process.stdout is not None
        child = ChildProcess(process, stderr_path, LineReader(process.stdout))
        children.append(child)
        return child

    yield start
    for child in children:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()
        for stream in (child.process.stdin, child.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()


def test_publishes_everything_processed_then_checkpoints(start_child: Any, messaging: Messaging) -> None:
    child = start_child()
    child.checkpoint_errors = ["ThrottlingException", None]  # the first checkpoint answer is an error
    assert child.send(INITIALIZE) == [{"action": "status", "responseFor": "initialize"}]
    child.send(PLAIN)
    child.send(DEAGGREGATED)
    replies = child.send({"action": "shutdownRequested"})
    assert [m["action"] for m in replies] == ["checkpoint", "checkpoint", "status"]  # retried after the error
    assert child.checkpoints() == [_last(DEAGGREGATED)] * 2
    assert child.close() == 0

    expected = _expected(PLAIN, DEAGGREGATED)
    assert messaging.received(sum(expected.values())) == expected  # sub-sequence numbers included, nothing twice
    assert child.stray_stdout == []
    log = [json.loads(line) for line in child.stderr().splitlines() if line.startswith("{")]
    published = [entry for entry in log if entry["event"] == "records_published"]
    assert [(e["records"], e["skipped"], e["requests"]) for e in published] == [(9, 4, 1)]


@pytest.mark.parametrize(
    ("ending", "checkpoint"),
    [("shardEnded", [None, None]), ("leaseLost", None)],
    ids=["shard-end-checkpoints-the-end", "lease-lost-never-checkpoints"],
)
def test_endings(start_child: Any, messaging: Messaging, ending: str, checkpoint: list[Any] | None) -> None:
    child = start_child()
    child.send(INITIALIZE)
    child.send(PLAIN)
    child.send({"action": ending})
    assert child.checkpoints() == ([checkpoint] if checkpoint else [])
    assert child.close() == 0
    expected = _expected(PLAIN)
    assert messaging.received(sum(expected.values())) == expected


def test_a_users_function_may_print_without_breaking_the_protocol(start_child: Any, messaging: Messaging) -> None:
    child = start_child(
        STREAMWRECK_PROCESS_FUNCTION="test_processor_process:noisy",
        # this module, and tests/ for the helpers it imports
        PYTHONPATH=os.pathsep.join([str(Path(__file__).parent), str(EVENTS.parent), os.environ.get("PYTHONPATH", "")]),
    )
    child.send(INITIALIZE)
    child.send(PLAIN)
    child.send({"action": "shutdownRequested"})
    assert child.close() == 0
    assert child.stray_stdout == []
    assert "processing " in child.stderr()
    expected = _expected(PLAIN, skip_every=0)
    assert messaging.received(sum(expected.values())) == expected


def test_a_publish_outage_ends_the_process_and_nothing_is_checkpointed(start_child: Any, messaging: Messaging) -> None:
    # SNS at a port where nothing listens: every attempt is refused, the publisher gives up after its retries
    child = start_child(AWS_ENDPOINT_URL_SNS=f"http://127.0.0.1:{free_port()}")
    child.send(INITIALIZE)
    child.send(PLAIN)
    replies = child.send({"action": "shutdownRequested"}, timeout=60)
    assert replies == []  # no checkpoint, no status: the process ended
    assert child.process.wait(timeout=10) == EXIT_UNPUBLISHED
    assert child.checkpoints() == []
    assert "publish_failed_exiting" in child.stderr()
    assert messaging.received(0, timeout=0) == Counter()


def test_a_configuration_error_is_one_line_and_exit_2(start_child: Any) -> None:
    child = start_child(STREAMWRECK_PROCESS_FUNCTION="streamwreck_no_such_module:f")
    assert child.process.wait(timeout=30) == 2
    assert child.stderr().strip().splitlines() == [
        "streamwreck record processor: configuration error: cannot import module 'streamwreck_no_such_module' of "
        "process function 'streamwreck_no_such_module:f': No module named 'streamwreck_no_such_module'"
    ]


def test_a_process_function_in_the_working_directory_is_accepted_as_the_record_processor_will_import_it(
    tmp_path: Path,
) -> None:
    # `streamwreck processor` is a console script (its bin folder first on sys.path); the record processors it has
    # the daemon start run as `python -m` in the same working directory, where they find the user's module.
    (tmp_path / "streamwreck_cwd_rule.py").write_text("def keep(record):\n    return True\n")
    env = {**os.environ, "AWS_REGION": "us-east-1"}
    command = [STREAMWRECK, "processor", "--stream", "s", "--application", "a"]
    command += [
        "--topic-arn",
        "arn:aws:sns:us-east-1:123456789012:t",
        "--process-function",
        "streamwreck_cwd_rule:keep",
    ]
    result = subprocess.run(
        [*command, "--print-properties"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert f" -m {RECORD_PROCESSOR[-1]}\n" in result.stdout  # executableName: this Python, the same module
    # ... and the record processor, run as the daemon runs it from there, loads it (and ends at the end of input)
    child_env = {**env, "STREAMWRECK_STREAM_NAME": "s", "STREAMWRECK_TOPIC_ARN": "arn:aws:sns:us-east-1:1:t"}
    child_env["STREAMWRECK_APPLICATION_NAME"] = "a"
    child_env["STREAMWRECK_PROCESS_FUNCTION"] = "streamwreck_cwd_rule:keep"
    child = subprocess.run(
        RECORD_PROCESSOR,
        cwd=tmp_path,
        env=child_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr
