"""The processor (the real KCL 3 MultiLangDaemon and our record processor): time from daemon start to the first
processed event, SNS requests per 1,000 records, and how fast it works through a backlog, against a bare boto3 read
of the same stream on the same emulator in the same run.

Everything runs on 127.0.0.1 and is started and stopped here: moto (DynamoDB lease table, SNS, SQS), kinesis-local.
A stream of --shards shards gets --records records before the daemon starts (a backlog, as after an outage); the
demo rule is off, so every record is reported. Then:

1. baseline: a bare boto3 read of every shard (GetRecords until the tip), records/s;
2. fresh start: `streamwreck processor` on a new application -> seconds to the first event on the SQS queue (the
   KCL waits a random 1-30 s on an empty lease table: this figure varies run to run), seconds until every record is
   reported, SNS requests per 1,000 records (the processors' own log),
   and backlog records/s (from the first batch the KCL hands over to the last event);
3. restart: SIGTERM (graceful: exit 0), --records-after more records, a new daemon on the same application ->
   seconds to the first new event (no lease-table wait: the leases exist).

kinesis-local is one CPU-bound Node.js process: the baseline says what it can serve, so a reader can tell its limit
from the processor's. Goals: SNS requests per 1,000 records <= 2; backlog records/s within the same order as the
baseline (the daemon polls each shard every 0.5 s locally, up to 10,000 records a poll).

    .venv/bin/python bench/bench_processor.py [--records 10000] [--shards 4] [--records-after 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from report import write_section

from streamwreck.core.aws import wait_stream_active
from streamwreck.core.clock import parse_iso, wait_until
from streamwreck.core.commands import streamwreck_argv
from streamwreck.core.errors import WaitTimeout
from streamwreck.core.events import parse_body
from streamwreck.local import processes
from streamwreck.local.processes import Service


def write(kinesis: Any, stream: str, count: int, prefix: str) -> None:
    for start in range(0, count, 500):
        entries = [
            {"Data": f"{prefix}-{i}".encode(), "PartitionKey": f"{prefix}-{i}"}
            for i in range(start, min(count, start + 500))
        ]
        response = kinesis.put_records(StreamName=stream, Records=entries)
        assert response.get("FailedRecordCount", 0) == 0, response


def baseline_read(kinesis: Any, stream: str) -> tuple[int, float]:
    """Every record of every shard, shard after shard, until an empty read at the tip; (records, seconds)."""
    started = time.monotonic()
    total = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            total += len(response["Records"])
            if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
                break
            iterator = response.get("NextShardIterator")
    return total, time.monotonic() - started


class QueueWatcher(threading.Thread):
    """Drains the queue in the background, noting when records arrive."""

    def __init__(self, queue_url: str) -> None:
        super().__init__(daemon=True)
        self.sqs = boto3.client("sqs")
        self.queue_url = queue_url
        self.records = 0
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop.is_set():
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            messages = batch.get("Messages", [])
            if not messages:
                continue
            now = time.monotonic()
            count = sum(len(parse_body(m["Body"]).records) for m in messages)
            with self.lock:
                self.records += count
                self.first_at = self.first_at or now
                self.last_at = now
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    def snapshot(self) -> tuple[int, float | None, float | None]:
        with self.lock:
            return self.records, self.first_at, self.last_at


def wait_for(condition: Callable[[], bool], timeout: float, what: str, service: Service) -> None:
    """:func:`wait_until`, stopping the benchmark (with the daemon's log tail) if the daemon exits or time runs out."""

    def watched() -> bool:
        if condition():
            return True
        if not service.alive():
            raise SystemExit(f"the daemon exited while waiting for {what}:\n{service.tail(30)}")
        return False

    try:
        wait_until(watched, timeout, what, interval=0.1)
    except WaitTimeout as exc:
        raise SystemExit(f"{exc}:\n{service.tail(30)}") from None


def first_batch_at(log_path: Path) -> float:
    """Unix time of the first batch a record processor received."""
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"batch_received"' in line:
            return parse_iso(json.loads(line)["ts"]).timestamp()
    raise SystemExit(f"no batch_received in {log_path}")


def published(log_path: Path) -> tuple[int, int]:
    records = requests = 0
    for line in log_path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"records_published"' in line:
            entry = json.loads(line)
            records += entry["records"]
            requests += entry["requests"]
    return records, requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--records-after", type=int, default=1_000)
    args = parser.parse_args()

    logs = Path(tempfile.mkdtemp(prefix="bench-processor-"))
    started: list[Service] = []
    try:
        moto = processes.start_moto(logs)
        started.append(moto)
        kinesis_local = processes.start_kinesis_local(logs)
        started.append(kinesis_local)
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": moto.url,
                "AWS_ENDPOINT_URL_KINESIS": kinesis_local.url,
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        name = f"bench{uuid.uuid4().hex[:8]}"
        kinesis, sns, sqs = boto3.client("kinesis"), boto3.client("sns"), boto3.client("sqs")
        kinesis.create_stream(StreamName=name, ShardCount=args.shards)
        wait_stream_active(kinesis, name)
        topic_arn = sns.create_topic(Name=name)["TopicArn"]
        queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})

        t = time.monotonic()
        write(kinesis, name, args.records, "a")
        write_seconds = time.monotonic() - t
        read_records, read_seconds = baseline_read(kinesis, name)
        assert read_records == args.records, (read_records, args.records)

        env = {
            "STREAMWRECK_STREAM_NAME": name,
            "STREAMWRECK_APPLICATION_NAME": name,
            "STREAMWRECK_TOPIC_ARN": topic_arn,
            "STREAMWRECK_SKIP_EVERY": "0",
            "STREAMWRECK_LOCAL_PROFILE": "true",  # emulators: no worker metrics, fast lease sync
            "STREAMWRECK_LOG_LEVEL": "DEBUG",  # batch_received: when the KCL first handed records over
        }
        watcher = QueueWatcher(queue_url)
        watcher.start()
        launched, launched_wall = time.monotonic(), time.time()
        # Each run is a new worker id, as the default (hostname + random suffix) makes it in production. Measured here
        # (KCL 3.1.3 on moto): after a graceful stop the leases stay assigned to the old id, and a new daemon under the
        # same id was not given them in 300 s.
        argv = streamwreck_argv("processor")
        daemon = processes.launch(
            "processor-1", argv, logs, 0, lambda: True, env={**env, "STREAMWRECK_WORKER_ID": "bench-1"}
        )
        started.append(daemon)
        wait_for(lambda: watcher.snapshot()[0] >= args.records, 300, "every record's event", daemon)
        records, first_at, last_at = watcher.snapshot()
        assert first_at is not None and last_at is not None
        to_first = first_at - launched
        to_all = last_at - launched
        first_batch = first_batch_at(daemon.log_path)
        # wall clock of the first batch_received (the processors' log) -> the last event, on this machine's clock
        backlog_seconds = max(to_all - (first_batch - launched_wall), 1e-3)
        backlog_rate = args.records / backlog_seconds

        os.kill(daemon.pid, signal.SIGTERM)
        assert daemon.process is not None
        stop_started = time.monotonic()
        stop_code = daemon.process.wait(timeout=60)
        stop_seconds = time.monotonic() - stop_started
        reported, requests = published(daemon.log_path)

        write(kinesis, name, args.records_after, "b")
        relaunched = time.monotonic()
        restarted = processes.launch(
            "processor-2", argv, logs, 0, lambda: True, env={**env, "STREAMWRECK_WORKER_ID": "bench-2"}
        )
        started.append(restarted)
        wait_for(lambda: watcher.snapshot()[0] > records, 300, "the first event after the restart", restarted)
        restart_to_first = (watcher.snapshot()[2] or 0) - relaunched  # first new event = last_at at that moment
        wait_for(lambda: watcher.snapshot()[0] >= args.records + args.records_after, 120, "every new record", restarted)
        watcher.stop.set()

        figures = {
            "records": args.records,
            "shards": args.shards,
            "emulator_write_records_per_s": round(args.records / write_seconds),
            "baseline_read_records_per_s": round(read_records / read_seconds),
            "fresh_start_seconds_to_first_event": round(to_first, 1),
            "fresh_start_seconds_to_all_reported": round(to_all, 1),
            "backlog_seconds_first_batch_to_last_event": round(backlog_seconds, 2),
            "backlog_records_per_s": round(backlog_rate),
            "backlog_vs_baseline": round(backlog_rate / (read_records / read_seconds), 2),
            "sns_requests": requests,
            "sns_requests_per_1000_records": round(1000 * requests / max(reported, 1), 2),
            "graceful_stop_exit_code": stop_code,
            "graceful_stop_seconds": round(stop_seconds, 1),
            "restart_seconds_to_first_event": round(restart_to_first, 1),
            "logs": str(logs),
        }
        print(json.dumps(figures, indent=2))
        goal_met = figures["sns_requests_per_1000_records"] <= 2 and stop_code == 0
        print(f"goal (<= 2 SNS requests per 1,000 records, graceful stop exits 0): {'met' if goal_met else 'MISSED'}")
        write_section(
            "processor",
            "make bench (.venv/bin/python bench/bench_processor.py)",
            f"The processor under the real KCL daemon ({args.records:,} records over {args.shards} shards)",
            [
                ("SNS requests per 1,000 records", f"{figures['sns_requests_per_1000_records']}", "goal <= 2"),
                ("backlog records/s reported", f"{figures['backlog_records_per_s']:,}", ""),
                ("bare read of the same stream, records/s", f"{figures['baseline_read_records_per_s']:,}", "baseline"),
                ("backlog / bare read", f"{figures['backlog_vs_baseline']}", ""),
                ("new application: seconds to the first event", f"{figures['fresh_start_seconds_to_first_event']}", ""),
                ("restart: seconds to the first event", f"{figures['restart_seconds_to_first_event']}", ""),
                ("graceful stop exit code (seconds)", f"{stop_code} ({figures['graceful_stop_seconds']})", "goal 0"),
            ],
        )
        return 0
    finally:
        for service in reversed(started):
            service.stop(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
