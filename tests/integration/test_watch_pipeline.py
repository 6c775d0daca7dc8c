"""``streamwreck watch`` for real, beside the pipeline it audits: kinesis-local (Kinesis), moto (SNS, SQS, both KCL
lease tables), a memcached and a reconcile API of this module's own (no other test's flush_all can make its ledger
doubtful), the recorder, the consumer (``streamwreck processor`` under the real KCL daemon, the demo rule skipping
every record whose sequence number divides by 5), and the watcher under its own real KCL daemon.

One run, one consumer, in steps that share its start-up (each KCL application takes 30-50 s to its first records):

1. the demo rule running: the watcher reports exactly the skipped records as lost, none else, each within
   grace + 30 s of its arrival (p50 / p99 printed with ``-s``), and its counters say the same;
2. the consumer stops (SIGSTOP) while records arrive: they are held, none reported lost past the grace period, and
   no more than ``--max-held`` per shard (plus the batch that crossed it): the watcher stops reading a full shard;
   it resumes (SIGCONT): they are judged, only the skipped reported;
3. the watcher stops (SIGTERM) and starts again: it resumes from its checkpoint (reads only what came after, give
   or take the last few seconds' records) and reports the new skipped records.

Then two watcher processes of one application share the shards (KCL 3 places leases by throughput when worker
metrics are off, as against emulators: records flow until each watcher holds some); the one that is not the KCL's
leader is SIGKILLed mid-stream, the other takes its leases over and every skipped record is still reported, none
else; a shard is split, and its children merged again, while it watches, and the skipped records of the children
and of the merged shard are reported too (the last test: kinesis-local cannot start a new application at
TRIM_HORIZON on a resharded stream, see ../shared/EMULATORS.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import STREAMWRECK, by_label, scrape, wait_until

from streamwreck.checker.leases import lease_shard, read_leases
from streamwreck.core.aws import error_code, wait_stream_active
from streamwreck.core.errors import AwsError, WaitTimeout
from streamwreck.local import groups, processes
from streamwreck.local.processes import Service
from streamwreck.processor.processor import skipped_by_demo_rule

pytestmark = [pytest.mark.kcl, pytest.mark.timeout(600)]

SKIP_EVERY = 5
SHARDS = 4
GRACE = 10.0
MAX_HELD = 50  # the first watcher's --max-held: per shard
SHARE = 150  # seconds for records flowing to make KCL 3 give the second watcher leases (15-75 s measured)
TAKEOVER = 240  # a killed non-leader's leases expire in seconds; a killed leader's lock lasts 2 minutes
Key = tuple[str, str, int]


@dataclass
class Pipeline:
    stream: str
    kinesis: Any
    consumer: Service
    api_url: str
    logs: Path
    env: dict[str, str]
    written: list[Key] = field(default_factory=list)  # every record this module wrote to the stream
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, count: int, prefix: str) -> list[Key]:
        written: list[Key] = []
        for start in range(0, count, 500):
            entries = [
                {"Data": f"{prefix}-{i}".encode(), "PartitionKey": f"{prefix}-{i}"}
                for i in range(start, min(count, start + 500))
            ]
            response = self.kinesis.put_records(StreamName=self.stream, Records=entries)
            assert response.get("FailedRecordCount", 0) == 0
            written += [(r["ShardId"], r["SequenceNumber"], 0) for r in response["Records"]]
        with self._lock:
            self.written += written
        return written

    def owners(self, application: str) -> dict[str, str]:
        """{shard id: KCL worker} of an application's lease table (the shards of this stream that have an owner)."""
        dynamodb = boto3.client(
            "dynamodb",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        found: dict[str, str] = {}
        try:
            items = read_leases(dynamodb, application)
        except AwsError as exc:
            if error_code(exc.__cause__ or exc) == "ResourceNotFoundException":  # the KCL creates it as it starts
                return found
            raise
        for item in items:
            shard = lease_shard(item.get("leaseKey", {}).get("S", ""), self.stream)
            owner = item.get("leaseOwner", {}).get("S")
            if shard is not None and owner:
                found[shard] = owner
        return found

    @contextlib.contextmanager
    def flowing(self, prefix: str, per_put: int = 40, every: float = 0.5) -> Iterator[None]:
        """Records written in the background (``per_put`` every ``every`` seconds) while the block runs."""
        stop = threading.Event()

        def write() -> None:
            n = 0
            while not stop.wait(every):
                self.put(per_put, f"{prefix}{n}")
                n += 1

        writer = threading.Thread(target=write, name=f"flow-{prefix}", daemon=True)
        writer.start()
        try:
            yield
        finally:
            stop.set()
            writer.join(timeout=30)


def skipped(keys: list[Key]) -> set[Key]:
    return {key for key in keys if skipped_by_demo_rule(key[1], SKIP_EVERY)}


@dataclass
class Watcher:
    service: Service
    export: Path
    metrics_url: str
    seen: dict[Key, float]  # lost record -> when the test first saw its line

    def lost(self) -> dict[Key, dict[str, Any]]:
        """Every lost record reported so far (complete lines), noting when each was first seen."""
        found: dict[Key, dict[str, Any]] = {}
        if not self.export.exists():
            return found
        text = self.export.read_text()
        now = time.time()
        for line in text[: text.rfind("\n") + 1].splitlines():
            entry = json.loads(line)
            key = (entry["shard_id"], entry["sequence_number"], entry["sub_sequence_number"])
            found[key] = entry
            self.seen.setdefault(key, now)
        return found

    def metrics(self) -> dict[str, float]:
        """Sums over shards: records_total by status (as ``status:<status>``), and every other sample by name."""
        sums: dict[str, float] = {}
        for sample in scrape(f"{self.metrics_url}/metrics"):
            name = sample.name
            if name == "streamwreck_watch_records_total":
                name = f"status:{sample.labels['status']}"
            sums[name] = sums.get(name, 0.0) + sample.value
        return sums

    def per_shard(self, name: str) -> dict[str, float]:
        """One metric's value on each shard."""
        return by_label(scrape(f"{self.metrics_url}/metrics"), name, "shard_id")

    def shards_seen(self) -> int:
        return len(self.per_shard("streamwreck_watch_held_records"))


def wait_for(condition: Callable[[], Any], timeout: float, what: str, *services: Service) -> Any:
    def watched() -> Any:
        value = condition()
        for service in services:
            if not value and not service.alive():
                raise AssertionError(f"{service.name} exited while waiting for {what}:\n{service.tail(40)}")
        return value

    try:
        return wait_until(watched, timeout, what, interval=0.3)
    except WaitTimeout as exc:
        tails = "\n".join(f"== {s.name}\n{s.tail(30)}" for s in services)
        raise AssertionError(f"{exc}\n{tails}") from None


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory, moto: Service, kinesis_local: Service) -> Iterator[Pipeline]:
    logs = tmp_path_factory.mktemp("watch-logs")
    env = {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_ENDPOINT_URL_KINESIS": kinesis_local.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    name = f"w{os.getpid()}{int(time.time()) % 100000}"

    def client(service: str, url: str) -> Any:
        credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        return boto3.client(service, endpoint_url=url, region_name="us-east-1", **credentials)  # type: ignore[call-overload]

    kinesis = client("kinesis", kinesis_local.url)
    kinesis.create_stream(StreamName=name, ShardCount=SHARDS)
    wait_stream_active(kinesis, name)
    sns, sqs = client("sns", moto.url), client("sqs", moto.url)
    topic_arn = sns.create_topic(Name=name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    started: list[Service] = []
    try:
        memcached = processes.start_memcached(logs)
        started.append(memcached)
        api = processes.start_api(logs, memcached.port)
        started.append(api)
        servers = {"STREAMWRECK_MEMCACHED_SERVERS": f"127.0.0.1:{memcached.port}"}
        recorder_env = {**env, **servers, "STREAMWRECK_QUEUE_URL": queue_url, "STREAMWRECK_RECORDER_WAIT_SECONDS": "1"}
        recorder = processes.launch(
            "recorder",
            [STREAMWRECK, "recorder"],
            logs,
            0,
            processes.log_marker(logs / "recorder.log", "recorder_started"),
            env=recorder_env,
        )
        started.append(recorder)
        consumer_env = {
            **env,
            "STREAMWRECK_STREAM_NAME": name,
            "STREAMWRECK_APPLICATION_NAME": f"{name}-consumer",
            "STREAMWRECK_TOPIC_ARN": topic_arn,
            "STREAMWRECK_SKIP_EVERY": str(SKIP_EVERY),
            "STREAMWRECK_LOCAL_PROFILE": "true",
            "STREAMWRECK_PUBLISH_FLUSH_SECONDS": "1",
        }
        consumer = processes.launch("consumer", [STREAMWRECK, "processor"], logs, 0, lambda: True, env=consumer_env)
        started.append(consumer)
        yield Pipeline(name, kinesis, consumer, api.url, logs, env)
    finally:
        for service in reversed(started):
            service.stop(timeout=15)


def start_watcher(pipeline: Pipeline, export: Path, name: str, *extra: str) -> Watcher:
    port = processes.free_port()
    argv = [
        STREAMWRECK, "watch", "--quiet",
        "--stream", pipeline.stream,
        "--kcl-app", f"{pipeline.stream}-consumer",
        "--endpoint", pipeline.api_url,
        "--grace", str(GRACE),
        "--settle", "2",
        "--export", str(export),
        "--metrics-port", str(port),
        *extra,
    ]  # fmt: skip
    env = {
        **pipeline.env,
        "STREAMWRECK_LOCAL_PROFILE": "true",
        "STREAMWRECK_LEASE_REFRESH_SECONDS": "1",
        "STREAMWRECK_CHECKPOINT_SECONDS": "2",
        "STREAMWRECK_METRICS_HOST": "127.0.0.1",
        "STREAMWRECK_EMF_SECONDS": "10",
    }
    url = f"http://127.0.0.1:{port}"
    service = processes.launch(
        name, argv, pipeline.logs, port, lambda: processes.http_ready(f"{url}/healthz"), env=env, timeout=60
    )
    return Watcher(service, export, url, {})


def arrival(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["approximate_arrival_timestamp"].replace("Z", "+00:00")).timestamp()


def test_the_watcher_reports_exactly_the_skipped_records_holds_for_a_stopped_consumer_and_resumes(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    export = tmp_path / "lost.jsonl"
    watcher = start_watcher(pipeline, export, "watcher-1", "--max-held", str(MAX_HELD))
    consumer = pipeline.consumer
    try:
        # 1. The demo rule running; the records are written once both applications hold every shard.
        wait_for(lambda: watcher.shards_seen() == SHARDS, 150, "the watcher on every shard", watcher.service, consumer)
        wait_for(
            lambda: consumer.log_path.read_text(errors="replace").count('"shard_initialized"') >= SHARDS,
            150,
            "the consumer on every shard",
            consumer,
        )
        first = pipeline.put(1000, "a")
        want = skipped(first)
        assert 0 < len(want) < len(first)
        wait_for(lambda: set(watcher.lost()) >= want, 90, "the skipped records reported", watcher.service, consumer)
        wait_for(
            lambda: watcher.metrics().get("status:processed", 0) >= len(first) - len(want), 60, "every record judged"
        )
        lost = watcher.lost()
        assert set(lost) == want  # exactly the skipped: none else, none missed
        delays = sorted(watcher.seen[key] - arrival(entry) for key, entry in lost.items())
        p50, p99 = statistics.median(delays), delays[int(0.99 * (len(delays) - 1))]
        print(
            f"\n[watch figures] lost reported after arrival: p50 {p50:.1f}s, p99 {p99:.1f}s, "
            f"max {delays[-1]:.1f}s (grace {GRACE:g}s)"
        )
        assert delays[-1] <= GRACE + 30
        entry = next(iter(lost.values()))
        assert entry["reason"] == "not in the ledger"
        assert arrival(entry) + 24 * 3600 == pytest.approx(
            datetime.fromisoformat(entry["replayable_until"].replace("Z", "+00:00")).timestamp(), abs=0.01
        )
        figures = watcher.metrics()
        assert figures["status:lost"] == len(want)
        assert figures["status:processed"] + figures.get("status:duplicate", 0) == len(first) - len(want)
        assert figures.get("status:unknown", 0) == 0

        # 2. The consumer stops: new records are held, not reported lost after the grace period; then it resumes.
        members = [process.pid for process in groups.group_members(consumer.pid, consumer.started)]
        for pid in members:
            os.kill(pid, signal.SIGSTOP)
        try:
            # Written a put at a time, each read before the next (or its shard full): a batch the KCL delivers holds
            # one put's records at most, so the watcher holds at most MAX_HELD - 1 + one put on any shard.
            read, held = "streamwreck_watch_records_read_total", "streamwreck_watch_held_records"
            before = watcher.per_shard(read)
            second: list[Key] = []
            largest: dict[str, int] = {}  # shard -> the most records one put wrote to it
            for n in range(12):
                batch = pipeline.put(25, f"b{n}")
                second += batch
                for shard in {key[0] for key in batch}:
                    largest[shard] = max(largest.get(shard, 0), sum(1 for key in batch if key[0] == shard))
                written = {shard: sum(1 for key in second if key[0] == shard) for shard in largest}

                def read_or_full(written: dict[str, int] = written) -> bool:
                    reads, holds = watcher.per_shard(read), watcher.per_shard(held)
                    return all(
                        reads.get(shard, 0) - before.get(shard, 0) >= count or holds.get(shard, 0) >= MAX_HELD
                        for shard, count in written.items()
                    )

                wait_for(read_or_full, 60, f"put {n} read, or its shards full", watcher.service)
            written_at = time.time()
            wait_for(
                lambda: time.time() > written_at + GRACE + 5 and watcher.metrics().get(held, 0) > 0,
                90,
                "records held past the grace period",
                watcher.service,
            )
            holding = watcher.per_shard(held)
            assert sum(holding.values()) < len(second), "the watcher read every record: --max-held did not stop it"
            assert all(count <= MAX_HELD - 1 + largest[shard] for shard, count in holding.items()), (holding, largest)
            assert not set(watcher.lost()) & set(second)
        finally:
            for pid in members:
                os.kill(pid, signal.SIGCONT)
        want |= skipped(second)
        wait_for(
            lambda: set(watcher.lost()) >= want and watcher.metrics().get("streamwreck_watch_held_records", 1) == 0,
            120,
            "the held records judged",
            watcher.service,
            consumer,
        )
        assert set(watcher.lost()) == want
    finally:
        watcher.service.stop(timeout=30)

    # 3. A watcher restarted from its checkpoint: it reads what came after, not the stream from the start.
    third = pipeline.put(300, "c")
    want |= skipped(third)
    again = start_watcher(pipeline, export, "watcher-2")
    try:
        wait_for(
            lambda: set(again.lost()) >= want,
            150,
            "the new skipped records reported after the restart",
            again.service,
            consumer,
        )
        assert set(again.lost()) == want
        read = again.metrics().get("streamwreck_watch_records_read_total", 0)
        assert len(third) <= read < len(third) + 300, f"the restarted watcher read {read} records"
    finally:
        again.service.stop(timeout=30)


def kcl_leader(*watchers: Watcher) -> str | None:
    """The worker the watchers' KCL logs last named their leader."""
    found: list[tuple[str, str]] = []
    for watcher in watchers:
        for line in watcher.service.log_path.read_text(errors="replace").splitlines():
            match = re.search(r"Worker : (\S+) is (?:the current|new) leader", line)
            if match:
                found.append((line[:23], match.group(1)))
    return max(found)[1] if found else None


def test_two_watchers_share_the_shards_one_is_killed_the_other_takes_over_and_follows_a_split_and_a_merge(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    export = tmp_path / "lost.jsonl"  # both append to one file, as tasks sharing a volume would
    # From TRIM_HORIZON (the default): a lease taken over before its first checkpoint starts where the application
    # starts; at LATEST the survivor would begin at the tip and skip what the killed watcher had not judged.
    application = f"{pipeline.stream}-pair"
    pair = ("--application", application)
    first = start_watcher(pipeline, export, "pair-1", *pair, "--worker-id", "pair-1")
    second = start_watcher(pipeline, export, "pair-2", *pair, "--worker-id", "pair-2")
    watchers = {"pair-1": first, "pair-2": second}
    try:
        wait_for(
            lambda: len(pipeline.owners(application)) == SHARDS,
            180,
            "every shard leased by one of the watchers",
            first.service,
            second.service,
        )
        # KCL 3 balances the leases on their throughput (worker metrics are off against emulators): idle, one watcher
        # may hold them all; records must flow for the other to be given some.
        with pipeline.flowing("d"):
            wait_for(
                lambda: set(pipeline.owners(application).values()) == set(watchers),
                SHARE,
                "the two watchers to share the shards",
                first.service,
                second.service,
            )
            shared = pipeline.owners(application)
            print(f"\n[watch figures] leases shared: {shared}")
            # The one that is not the KCL's leader is killed: the leader takes its leases over once they expire
            # (a killed leader's shards would wait about 2 minutes for its lock; test_faults.py measures that).
            leader = kcl_leader(first, second)
            survivor_id, victim_id = ("pair-2", "pair-1") if leader == "pair-2" else ("pair-1", "pair-2")
            victim, survivor = watchers[victim_id], watchers[survivor_id]
            read = "streamwreck_watch_records_read_total"
            wait_for(lambda: victim.metrics().get(read, 0) > 0, 60, "the watcher to be killed reading", victim.service)
            os.killpg(victim.service.pid, signal.SIGKILL)  # the JVM and its record processors, no goodbye
            assert victim.service.process is not None
            victim.service.process.wait(timeout=30)
            killed_at = time.monotonic()
            wait_for(
                lambda: set(pipeline.owners(application).values()) == {survivor_id},
                TAKEOVER,
                f"{survivor_id} to take over the leases of {victim_id}",
                survivor.service,
            )
            took = time.monotonic() - killed_at
            print(f"[watch figures] leader {leader}; {victim_id} SIGKILLed; its leases taken over after {took:.0f}s")
        want = skipped(pipeline.written)  # every record of the stream: this application starts at TRIM_HORIZON
        wait_for(
            lambda: set(survivor.lost()) >= want, 150, "every skipped record reported after the kill", survivor.service
        )
        assert set(survivor.lost()) == want

        # A split while watching: the parent is finished first, then its children are watched.
        parent = "shardId-000000000000"
        shards = {s["ShardId"]: s for s in pipeline.kinesis.list_shards(StreamName=pipeline.stream)["Shards"]}
        low, high = (int(shards[parent]["HashKeyRange"][k]) for k in ("StartingHashKey", "EndingHashKey"))
        pipeline.kinesis.split_shard(
            StreamName=pipeline.stream, ShardToSplit=parent, NewStartingHashKey=str((low + high) // 2)
        )
        wait_stream_active(pipeline.kinesis, pipeline.stream)
        split = pipeline.put(400, "f")
        children = sorted({shard for shard, _, _ in split} - set(shards))
        assert len(children) == 2
        want = skipped(pipeline.written)
        wait_for(lambda: set(survivor.lost()) >= want, 150, "the children's skipped records reported", survivor.service)
        assert set(survivor.lost()) == want

        # And a merge of the two children: both are finished before the merged shard is watched.
        pipeline.kinesis.merge_shards(
            StreamName=pipeline.stream, ShardToMerge=children[0], AdjacentShardToMerge=children[1]
        )
        wait_stream_active(pipeline.kinesis, pipeline.stream)
        merged = pipeline.put(400, "g")
        assert {shard for shard, _, _ in merged} - set(shards) - set(children), "no record reached the merged shard"
        want = skipped(pipeline.written)
        wait_for(lambda: set(survivor.lost()) >= want, 150, "the merged shard's skipped records", survivor.service)
        assert set(survivor.lost()) == want
    finally:
        for watcher in (first, second):
            if watcher.service.alive():
                watcher.service.stop(timeout=30)
