"""``streamwreck processor`` for real: the KCL 3 MultiLangDaemon (Java) on kinesis-local (Kinesis) and moto (DynamoDB
lease table, SNS, SQS), running our record processor; processed events are read back from the SQS queue subscribed
to the topic.

- One daemon run: a 2-shard stream of plain and KPL-aggregated records -> exactly the expected records are reported
  (all but the demo rule's skips, sub-sequence numbers included) and the lease table holds each shard's last record
  as its checkpoint; then a shard is split: the parent is finished (SHARD_END) and its children are processed after
  it. (The consumer runs before the split, as in a real deployment: see ../shared/EMULATORS.md.) The launcher's
  Prometheus metrics, merged across the record processors, count every record written on its shard as processed
  or skipped, and the checkpoint lag rises while records are held and is 0 once they are checkpointed; a second
  launcher on the same metrics port stops with a one-line configuration error.
- A publish outage: SNS is reached through a proxy that is closed mid-run. The daemon exits non-zero; no checkpoint
  passes an unpublished record; a restart (what the orchestrator does) reports every processed record.

The daemon takes 10-40 s to its first record (the KCL waits a random 1-30 s on a fresh lease table), so each test
shares one run across its assertions. Select them with ``-m kcl``. Figures (time to the first record, SNS requests
per 1,000 records) are printed with ``-s``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_kinesis_agg.aggregator import RecordAggregator
from helpers import STREAMWRECK, scrape, wait_until

from streamwreck.core.aws import wait_stream_active
from streamwreck.core.errors import WaitTimeout
from streamwreck.core.events import ProcessedEvent, parse_body
from streamwreck.core.records import RecordId
from streamwreck.local import processes
from streamwreck.local.processes import Service
from streamwreck.processor import metrics as m

# Each test waits on the daemon several times (first leases, a restart, graceful shutdown): 60-110 s here, so a
# loaded 2-core machine can pass the suite's 300 s default without anything being wrong.
pytestmark = [pytest.mark.kcl, pytest.mark.timeout(900)]

SKIP_EVERY = 5
PAUSE = 0.2
HOLD_SECONDS = 15  # the main run's time flush: long enough for SIGTERM to arrive first, short enough for the split


def wait_for(condition: Callable[[], Any], timeout: float, what: str, service: Service | None = None) -> Any:
    """:func:`wait_until`, failing at once if the daemon has exited, and with its log tail on either failure."""

    def watched() -> Any:
        value = condition()
        if not value and service is not None and not service.alive():
            raise AssertionError(f"the daemon exited while waiting for {what}:\n{service.tail(40)}")
        return value

    try:
        return wait_until(watched, timeout, what, interval=PAUSE)
    except WaitTimeout as exc:
        tail = f":\n{service.tail(40)}" if service is not None else ""
        raise AssertionError(f"{exc}{tail}") from None


# -- the stream ------------------------------------------------------------------------------------------------------


@dataclass
class Stream:
    name: str
    kinesis: Any

    @classmethod
    def create(cls, name: str, shards: int) -> Stream:
        kinesis = boto3.client("kinesis")
        kinesis.create_stream(StreamName=name, ShardCount=shards)
        wait_stream_active(kinesis, name)
        return cls(name, kinesis)

    def put_plain(self, count: int, prefix: str, partition_key: str | None = None) -> list[RecordId]:
        written: list[RecordId] = []
        for start in range(0, count, 500):
            entries = [
                {"Data": f"{prefix}-{i}".encode(), "PartitionKey": partition_key or f"{prefix}-{i}"}
                for i in range(start, min(count, start + 500))
            ]
            response = self.kinesis.put_records(StreamName=self.name, Records=entries)
            assert response.get("FailedRecordCount", 0) == 0
            written += [RecordId(self.name, r["ShardId"], r["SequenceNumber"], 0) for r in response["Records"]]
        return written

    def put_aggregated(self, count: int, size: int, prefix: str) -> list[RecordId]:
        """``count`` KPL-aggregated records of ``size`` user records each (one partition key per aggregate, so that
        every user record belongs to the shard the aggregate lands in)."""
        written: list[RecordId] = []
        for index in range(count):
            aggregator = RecordAggregator()
            key = f"{prefix}-agg-{index}"
            for sub in range(size):
                assert aggregator.add_user_record(key, f"{key}-{sub}".encode()) is None
            aggregate = aggregator.clear_and_get()
            partition_key, explicit_hash_key, data = aggregate.get_contents()
            put: dict[str, Any] = {"StreamName": self.name, "Data": data, "PartitionKey": partition_key}
            if explicit_hash_key:
                put["ExplicitHashKey"] = explicit_hash_key
            response = self.kinesis.put_record(**put)
            written += [RecordId(self.name, response["ShardId"], response["SequenceNumber"], s) for s in range(size)]
        return written

    def split(self, shard_id: str) -> list[str]:
        """Split ``shard_id`` in the middle of its hash range; the children's ids."""
        shards = {s["ShardId"]: s for s in self.kinesis.list_shards(StreamName=self.name)["Shards"]}
        hash_range = shards[shard_id]["HashKeyRange"]
        middle = (int(hash_range["StartingHashKey"]) + int(hash_range["EndingHashKey"])) // 2
        self.kinesis.split_shard(StreamName=self.name, ShardToSplit=shard_id, NewStartingHashKey=str(middle))
        wait_stream_active(self.kinesis, self.name)  # the split has finished
        after = self.kinesis.list_shards(StreamName=self.name)["Shards"]
        return [s["ShardId"] for s in after if s.get("ParentShardId") == shard_id]


def expected(records: list[RecordId]) -> Counter[RecordId]:
    """What the demo rule reports: every record whose sequence number does not divide by SKIP_EVERY."""
    return Counter(r for r in records if int(r.sequence_number) % SKIP_EVERY)


def last_positions(records: list[RecordId]) -> dict[str, tuple[str, int]]:
    """Each shard's furthest record (sequence, sub-sequence): where its checkpoint should end up."""
    last: dict[str, tuple[str, int]] = {}
    for record in records:
        position = (record.sequence_number, record.sub_sequence_number)
        current = last.get(record.shard_id)
        if current is None or (int(position[0]), position[1]) > (int(current[0]), current[1]):
            last[record.shard_id] = position
    return last


# -- processed events ------------------------------------------------------------------------------------------------


class Queue:
    """The SQS queue subscribed to the topic: keeps every event read."""

    def __init__(self, queue_url: str) -> None:
        self.sqs = boto3.client("sqs")
        self.queue_url = queue_url
        self.events: list[ProcessedEvent] = []
        self.first_at: float | None = None

    def poll(self) -> None:
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = batch.get("Messages", [])
            if not messages:
                return
            if self.first_at is None:
                self.first_at = time.monotonic()
            for message in messages:
                self.events.append(parse_body(message["Body"]))
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    def records(self) -> Counter[RecordId]:
        return Counter(record for event in self.events for record in event.record_ids())

    def has_all(self, wanted: Counter[RecordId]) -> bool:
        self.poll()
        return set(wanted) <= set(self.records())

    def processed_at(self, shard_id: str) -> list[datetime]:
        return sorted(event.processed_at for event in self.events if event.shard_id == shard_id)


def create_messaging(unique: str) -> tuple[str, Queue]:
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name=unique)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=unique)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    return topic_arn, Queue(queue_url)


# -- the lease table -------------------------------------------------------------------------------------------------


def leases(application: str) -> dict[str, dict[str, Any]]:
    dynamodb = boto3.client("dynamodb")
    try:
        items = dynamodb.scan(TableName=application, ConsistentRead=True)["Items"]
    except dynamodb.exceptions.ResourceNotFoundException:
        return {}
    return {
        item["leaseKey"]["S"]: {
            "checkpoint": item.get("checkpoint", {}).get("S"),
            "sub": int(item.get("checkpointSubSequenceNumber", {}).get("N", "0")),
            "owner": item.get("leaseOwner", {}).get("S"),
            "parents": sorted(item.get("parentShardId", {}).get("SS", [])),
            "children": sorted(item.get("childShardIds", {}).get("SS", [])),
        }
        for item in items
    }


def checkpoints(application: str) -> dict[str, tuple[str | None, int]]:
    return {key: (lease["checkpoint"], lease["sub"]) for key, lease in leases(application).items()}


# -- the daemon ------------------------------------------------------------------------------------------------------


@dataclass
class Daemon:
    service: Service
    started_at: float

    def log_events(self, name: str) -> list[dict[str, Any]]:
        """The record processors' JSON log lines of one event name (the daemon relays their stderr)."""
        found = []
        text = self.service.log_path.read_text(errors="replace")
        for line in text[: text.rfind("\n") + 1].splitlines():  # complete lines: the daemon may be mid-write
            if line.startswith("{") and f'"{name}"' in line:
                entry = json.loads(line)
                if entry.get("event") == name:
                    found.append(entry)
        return found

    def exit_code(self, timeout: float) -> int:
        assert self.service.process is not None
        return self.service.process.wait(timeout=timeout)


@pytest.fixture
def start_daemon(aws_env: dict[str, str], server_logs: Path) -> Iterator[Callable[..., Daemon]]:
    daemons: list[Daemon] = []

    def start(name: str, *args: str, **env: str) -> Daemon:
        full_env = {
            "STREAMWRECK_SKIP_EVERY": str(SKIP_EVERY),
            "STREAMWRECK_LOG_LEVEL": "DEBUG",
            "STREAMWRECK_LOCAL_PROFILE": "true",  # emulators: no worker metrics, fast lease sync
            **env,
        }
        started_at = time.monotonic()
        argv = [STREAMWRECK, "processor", *args]
        service = processes.launch(f"processor-{name}-{len(daemons)}", argv, server_logs, 0, lambda: True, env=full_env)
        daemon = Daemon(service, started_at)
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.service.stop(timeout=15)


# -- the processor's metrics ----------------------------------------------------------------------------------------


def figures_of(port: int, stream: str) -> dict[tuple[str, str], float]:
    """The launcher's /metrics for one stream: (sample name[:outcome], shard id) -> value."""
    return {
        (":".join(filter(None, (sample.name, sample.labels.get("outcome")))), sample.labels["shard_id"]): sample.value
        for sample in scrape(f"http://127.0.0.1:{port}/metrics")
        if sample.labels.get("stream") == stream
    }


def counted_as_written(port: int, stream: str, records: list[RecordId]) -> dict[tuple[str, str], float] | None:
    """The metrics once every shard's records are all counted (processed or skipped) and no shard's lag is above 0
    (an exited record processor's lag is gone from them); else None."""
    figures = figures_of(port, stream)
    written = Counter(record.shard_id for record in records)
    handled = {s: sum(figures.get((f"{m.RECORDS}_total:{o}", s), 0) for o in m.OUTCOMES) for s in written}
    lags = [value for (name, _), value in figures.items() if name == m.CHECKPOINT_LAG]
    return figures if handled == dict(written) and lags and not any(lags) else None


def assert_counts(figures: dict[tuple[str, str], float], records: list[RecordId]) -> None:
    """Each shard: processed + skipped = the records written, skipped = the demo rule's, all processed published."""
    for shard, written in Counter(record.shard_id for record in records).items():
        skipped = sum(1 for r in records if r.shard_id == shard and int(r.sequence_number) % SKIP_EVERY == 0)
        assert figures[(f"{m.RECORDS}_total:skipped", shard)] == skipped, shard
        assert figures[(f"{m.RECORDS}_total:processed", shard)] == written - skipped, shard
        assert figures[(f"{m.RECORDS}_total:failed", shard)] == 0, shard
        assert figures[(f"{m.RECORDS_PUBLISHED}_total", shard)] == written - skipped, shard
        assert figures[(f"{m.CHECKPOINTS}_total", shard)] >= 1, shard
        assert figures[(f"{m.PUBLISH_REQUESTS}_total", shard)] >= 1, shard
        assert figures[(f"{m.PUBLISH_REQUESTS_FAILED}_total", shard)] == 0, shard
        assert figures[(f"{m.PUBLISH_ERRORS}_total", shard)] == 0, shard


def report(name: str, figures: dict[str, Any]) -> None:
    print(f"\n[processor figures] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def sns_requests_per_thousand(daemon: Daemon) -> tuple[int, int, float]:
    published = daemon.log_events("records_published")
    records = sum(entry["records"] for entry in published)
    requests = sum(entry["requests"] for entry in published)
    return records, requests, 1000 * requests / max(records, 1)


# -- the tests -------------------------------------------------------------------------------------------------------


def test_daemon_reports_every_processed_record_then_follows_a_split(
    start_daemon: Callable[..., Daemon], unique: str
) -> None:
    stream = Stream.create(unique, shards=2)
    topic_arn, queue = create_messaging(unique)
    first = stream.put_plain(3000, "a") + stream.put_aggregated(40, 10, "a")
    want = expected(first)
    assert 0 < len(want) < len(first)  # the demo rule skips some

    metrics_port = processes.free_port()
    daemon = start_daemon(
        "main",
        STREAMWRECK_STREAM_NAME=unique,
        STREAMWRECK_APPLICATION_NAME=unique,
        STREAMWRECK_TOPIC_ARN=topic_arn,
        STREAMWRECK_WORKER_ID="worker-main",
        # The SIGTERM step below needs records still held when the stop reaches the record processor: with the
        # default 2 s time flush a busy machine could publish them first. (The split's records, too few for a size
        # flush, wait for this interval as well.)
        STREAMWRECK_PUBLISH_FLUSH_SECONDS=str(HOLD_SECONDS),
        STREAMWRECK_PROCESSOR_METRICS_PORT=str(metrics_port),
    )
    wait_for(lambda: queue.has_all(want), 150, "the first records' events", daemon.service)
    assert queue.first_at is not None
    to_first_event = queue.first_at - daemon.started_at
    # exactly the expected records, each once: no skipped one reported, none lost, no duplicates
    assert queue.records() == want
    ends = last_positions(first)
    wait_for(lambda: all(checkpoints(unique).get(s) == ends[s] for s in ends), 30, "checkpoints at the last records")
    figures = wait_for(
        lambda: counted_as_written(metrics_port, unique, first), 30, "the metrics: all counted, lag 0", daemon.service
    )
    assert_counts(figures, first)
    assert all(figures[(m.BEHIND_LATEST, shard)] >= 0 for shard in ends)  # reported by the KCL on every delivery
    # The port is taken: a second launcher says so in one line, before it starts anything.
    taken = subprocess.run(
        [STREAMWRECK, "processor", "--stream", unique, "--application", unique, "--topic-arn", topic_arn],
        env={**os.environ, "STREAMWRECK_PROCESSOR_METRICS_PORT": str(metrics_port)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (taken.returncode, taken.stderr.strip().splitlines()[-1]) == (
        2,
        f"streamwreck processor: configuration error: cannot serve metrics on 127.0.0.1:{metrics_port}: "
        "Address already in use",
    )
    assert {event.worker_id for event in queue.events} == {"worker-main"}
    bulk_records, bulk_requests, bulk_per_thousand = sns_requests_per_thousand(daemon)
    assert bulk_records == sum(want.values())
    assert bulk_per_thousand <= 2

    # Split shard 0 with the consumer running: records written before the split stay in the parent, later ones go
    # to the children (and to shard 1).
    parent = "shardId-000000000000"
    before_split = stream.put_plain(300, "b")
    children = stream.split(parent)
    assert len(children) == 2
    after_split = stream.put_plain(600, "c")
    assert {r.shard_id for r in after_split} >= set(children)
    assert parent not in {r.shard_id for r in after_split}

    everything = first + before_split + after_split
    want_all = expected(everything)
    wait_for(lambda: queue.has_all(want_all), 120, "events of the children's records", daemon.service)
    assert queue.records() == want_all

    # the parent is finished, each child checkpointed at its last record, and every other shard too
    ends: dict[str, tuple[str, int]] = {**last_positions(everything), parent: ("SHARD_END", 0)}
    wait_for(lambda: all(checkpoints(unique).get(s) == ends[s] for s in ends), 30, "the final checkpoints")
    # the parent's record processor has ended (shard end): its counts stay in the launcher's merge
    figures = wait_for(
        lambda: counted_as_written(metrics_port, unique, everything), 30, "the metrics after the split", daemon.service
    )
    assert_counts(figures, everything)
    table = leases(unique)
    assert table[parent]["children"] == sorted(children)
    assert all(table[child]["parents"] == [parent] for child in children)
    # the children were processed after the parent: their first events come after the parent's last
    assert max(queue.processed_at(parent)) <= min(min(queue.processed_at(child)) for child in children)

    records, requests, per_thousand = sns_requests_per_thousand(daemon)
    assert records == sum(want_all.values())

    # SIGTERM (to the command only, as an orchestrator sends it): records the processor holds are published and
    # checkpointed before it leaves, and the exit status is 0. One partition key: all of them go to one shard.
    earlier = len(daemon.log_events("batch_received"))  # only batches after this put count (not an older one of 50)
    last = stream.put_plain(50, "d", partition_key="one-key")
    shard = last[0].shard_id
    wait_for(lambda: received(daemon, shard, earlier) == len(last), 30, "the last records to reach their processor")
    # held (below the flush size, within HOLD_SECONDS): not checkpointed, so the lag rises above 0
    lag = (m.CHECKPOINT_LAG, shard)
    wait_for(lambda: figures_of(metrics_port, unique).get(lag, 0) > 0, 10, "the held records' lag", daemon.service)
    os.kill(daemon.service.pid, signal.SIGTERM)
    assert daemon.exit_code(timeout=60) == 0
    queue.poll()
    everything += last
    assert queue.records() == expected(everything)
    ends = last_positions(everything)
    assert checkpoints(unique)[shard] == ends[shard]
    # they were still held when the stop came (HOLD_SECONDS flush interval), so the shutdown is what published them
    stopping = min(e["ts"] for e in daemon.log_events("shutdown_requested") if e["shard_id"] == shard)
    final = [e for e in daemon.log_events("records_published") if e["shard_id"] == shard and e["ts"] >= stopping]
    assert [e["records"] for e in final] == [sum(expected(last).values())]

    report(
        "daemon run",
        {
            "records_written": len(everything),
            "seconds_from_daemon_start_to_first_event": round(to_first_event, 1),
            "bulk_records": bulk_records,
            "bulk_sns_requests": bulk_requests,
            "bulk_sns_requests_per_1000_records": round(bulk_per_thousand, 2),
            "run_records_before_stop": records,
            "run_sns_requests_before_stop": requests,
            "run_sns_requests_per_1000_records": round(per_thousand, 2),
        },
    )


def received(daemon: Daemon, shard_id: str, earlier: int) -> int:
    """Records the shard's processor was handed in the batches logged after the first `earlier` ones."""
    batches = daemon.log_events("batch_received")[earlier:]
    return sum(entry["records"] for entry in batches if entry["shard_id"] == shard_id)


class FlakyProxy:
    """A TCP proxy to a target port that can be taken down (connections refused, open ones cut) and brought back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = processes.free_port()
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        if self._listener is not None:
            self._close(self._listener)  # shutdown() wakes the thread blocked in accept(); close() alone would not
            self._listener = None
        with self._lock:
            for sock in self._open:
                self._close(sock)
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: down()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                self._close(sock)
                with self._lock:
                    self._open.discard(sock)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


@pytest.fixture
def sns_proxy(moto: Service) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(moto.port)
    proxy.up()
    yield proxy
    proxy.down()


def test_publish_outage_never_checkpoints_past_unpublished_records(
    start_daemon: Callable[..., Daemon], sns_proxy: FlakyProxy, unique: str
) -> None:
    stream = Stream.create(unique, shards=2)
    topic_arn, queue = create_messaging(unique)
    env = {
        "STREAMWRECK_STREAM_NAME": unique,
        "STREAMWRECK_APPLICATION_NAME": unique,
        "STREAMWRECK_TOPIC_ARN": topic_arn,
        "STREAMWRECK_WORKER_ID": "worker-outage",
        "AWS_ENDPOINT_URL_SNS": sns_proxy.url,  # the record processors reach SNS only through the proxy
    }
    published = stream.put_plain(1000, "a")
    want_published = expected(published)
    # When a record processor dies the daemon exits through its graceful-shutdown hook, which waits up to
    # shutdownGraceMillis for the dead one: shortened here, it only delays the exit.
    daemon = start_daemon("outage", "--property", "shutdownGraceMillis=3000", **env)
    wait_for(lambda: queue.has_all(want_published), 150, "the first events", daemon.service)
    ends = last_positions(published)
    wait_for(lambda: all(checkpoints(unique).get(s) == ends[s] for s in ends), 30, "checkpoints after publishing")

    # SNS goes away; new records arrive. The record processor retries, gives up, exits; so does the daemon.
    sns_proxy.down()
    outage_started = time.monotonic()
    unpublished = stream.put_plain(1000, "b")
    code = daemon.exit_code(timeout=120)
    outage_exit = time.monotonic() - outage_started
    assert code != 0
    assert daemon.log_events("publish_failed_exiting")
    queue.poll()
    assert queue.records() == want_published  # nothing of the second batch reached the topic
    # no checkpoint passes an unpublished record: each shard is still at its last published one
    assert checkpoints(unique) == ends

    # The orchestrator restarts the consumer once SNS is back: every processed record is reported.
    sns_proxy.up()
    restarted = start_daemon("restart", **env)
    want_all = expected(published + unpublished)
    wait_for(
        lambda: queue.has_all(want_all), 150, "the unpublished records' events after the restart", restarted.service
    )
    restart_to_first_new_event = time.monotonic() - restarted.started_at
    assert set(queue.records()) == set(want_all)
    duplicates = sum(queue.records().values()) - len(want_all)
    ends = last_positions(published + unpublished)
    wait_for(lambda: all(checkpoints(unique).get(s) == ends[s] for s in ends), 30, "checkpoints after the restart")
    report(
        "publish outage",
        {
            "seconds_from_outage_to_exit": round(outage_exit, 1),
            "daemon_exit_code": code,
            "seconds_from_restart_to_all_reported": round(restart_to_first_new_event, 1),
            "duplicates": duplicates,
        },
    )
    assert duplicates == 0
