"""``streamwreck watch``: records judged per second per watcher process, against a bare KCL record processor that only
reads, and the time from a lost record's arrival to its report.

    .venv/bin/python bench/bench_watch.py [--records 20000] [--shards 4] [--live 1000]

Starts kinesis-local, moto, memcached, the API, the recorder and the consumer (``streamwreck processor``, demo rule
skipping every 5th record) on 127.0.0.1, all stopped at the end. Figures (issue 11's goals):

- watcher records/s: --records records are written and the consumer processes them all (its checkpoints at the last
  records); then, on the same stream in the same run, under the same daemon with the same properties (pages of 500
  records), a bare record processor that only counts what it is given (this file, ``--reader``: run by
  ``streamwreck watch --property executableName=...``), then a watcher. The reader's rate is records / (last page
  received - first page received); the watcher's records / (every record judged - first record read), with settle
  0 (the consumer is done: its checkpoints need no settling, and the fixed wait would only measure the setting). The
  KCL's start-up (30-50 s for a new application) is in neither. Goal >= 0.8 x the reader.
- lost record -> report: a watcher at its defaults (grace 60 s, settle 5 s, lease read every 3 s) from the stream's
  tip; --live records are written at 200/s while the consumer runs; for each record the demo rule skipped, the time
  from its arrival to its line in the export file. Goal p50 <= grace + 10 s.

Both KCL applications poll kinesis-local (one core, CPU-bound): where both rates are about the same, the emulator's
reads, not the watcher, are the limit.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
from report import write_section

from streamwreck.core.aws import wait_stream_active
from streamwreck.core.clock import wait_until
from streamwreck.core.commands import streamwreck_argv
from streamwreck.local import processes
from streamwreck.local.processes import Service
from streamwreck.processor.processor import skipped_by_demo_rule

COMMAND = "make bench (.venv/bin/python bench/bench_watch.py)"
SKIP_EVERY = 5
PAGE = 500  # maxRecords per GetRecords, for both applications


def reader() -> int:
    """The bare record processor: counts what the daemon gives it, one JSON line per batch on stderr."""
    from amazon_kclpy import kcl
    from amazon_kclpy.v3 import processor

    class Reader(processor.RecordProcessorBase):
        shard = "?"

        def initialize(self, initialize_input: Any) -> None:
            self.shard = initialize_input.shard_id

        def process_records(self, process_records_input: Any) -> None:
            records = process_records_input.records
            if records:
                line = {"event": "bench_read", "shard_id": self.shard, "records": len(records), "t": time.time()}
                sys.stderr.write(json.dumps(line) + "\n")
                sys.stderr.flush()

        def lease_lost(self, lease_lost_input: Any) -> None:
            pass

        def shard_ended(self, shard_ended_input: Any) -> None:
            shard_ended_input.checkpointer.checkpoint()

        def shutdown_requested(self, shutdown_requested_input: Any) -> None:
            pass

    kcl.KCLProcess(Reader()).run()
    return 0


def put(kinesis: Any, stream: str, count: int, prefix: str, rate: float | None = None) -> list[tuple[str, str]]:
    written: list[tuple[str, str]] = []
    step = 100 if rate else 500
    for start in range(0, count, step):
        began = time.monotonic()
        entries = [
            {"Data": f"{prefix}-{i}".encode(), "PartitionKey": f"{prefix}-{i}"}
            for i in range(start, min(count, start + step))
        ]
        response = kinesis.put_records(StreamName=stream, Records=entries)
        assert response.get("FailedRecordCount", 0) == 0
        written += [(r["ShardId"], r["SequenceNumber"]) for r in response["Records"]]
        if rate:
            time.sleep(max(0.0, len(entries) / rate - (time.monotonic() - began)))
    return written


def consumer_done(dynamodb: Any, table: str, last: dict[str, str]) -> bool:
    try:
        items = dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
    except dynamodb.exceptions.ResourceNotFoundException:
        return False
    at = {item["leaseKey"]["S"]: item.get("checkpoint", {}).get("S") for item in items}
    return all(at.get(shard) == sequence for shard, sequence in last.items())


def read_lines(path: Path, event: str) -> list[dict[str, Any]]:
    text = path.read_text(errors="replace")
    return [
        json.loads(line)
        for line in text[: text.rfind("\n") + 1].splitlines()
        if line.startswith("{") and f'"{event}"' in line
    ]


def metric(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def shards_held(url: str) -> int:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return text.count("streamwreck_watch_held_records{")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--live", type=int, default=1_000)
    parser.add_argument("--reader", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reader:
        return reader()

    logs = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    started: list[Service] = []
    try:
        moto = processes.start_moto(logs)
        started.append(moto)
        kinesis_local = processes.start_kinesis_local(logs)
        started.append(kinesis_local)
        memcached = processes.start_memcached(logs)
        started.append(memcached)
        api = processes.start_api(logs, memcached.port)
        started.append(api)
        aws = {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": moto.url,
            "AWS_ENDPOINT_URL_KINESIS": kinesis_local.url,
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        os.environ.update(aws)
        name = f"bench{uuid.uuid4().hex[:8]}"
        kinesis, sns, sqs, dynamodb = (boto3.client(s) for s in ("kinesis", "sns", "sqs", "dynamodb"))
        kinesis.create_stream(StreamName=name, ShardCount=args.shards)
        wait_stream_active(kinesis, name)
        topic_arn = sns.create_topic(Name=name)["TopicArn"]
        queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        httpx.post(f"{api.url}/reconcile", json={"stream": name, "records": []}, timeout=10)  # the ledger begins

        servers = {"STREAMWRECK_MEMCACHED_SERVERS": f"127.0.0.1:{memcached.port}"}
        recorder_env = {**servers, "STREAMWRECK_QUEUE_URL": queue_url, "STREAMWRECK_RECORDER_WAIT_SECONDS": "1"}
        ready = processes.log_marker(logs / "recorder.log", "recorder_started")
        started.append(processes.launch("recorder", streamwreck_argv("recorder"), logs, 0, ready, env=recorder_env))
        consumer_app = f"{name}-consumer"
        consumer_env = {
            "STREAMWRECK_STREAM_NAME": name,
            "STREAMWRECK_APPLICATION_NAME": consumer_app,
            "STREAMWRECK_TOPIC_ARN": topic_arn,
            "STREAMWRECK_SKIP_EVERY": str(SKIP_EVERY),
            "STREAMWRECK_LOCAL_PROFILE": "true",
        }
        started.append(
            processes.launch("consumer", streamwreck_argv("processor"), logs, 0, lambda: True, env=consumer_env)
        )

        began = time.monotonic()
        written = put(kinesis, name, args.records, "a")
        print(f"wrote {len(written):,} records in {time.monotonic() - began:.1f}s", file=sys.stderr)
        last = {shard: sequence for shard, sequence in written}
        wait_until(
            lambda: consumer_done(dynamodb, consumer_app, last), 300, "the consumer's last checkpoints", interval=1
        )

        watch_env = {"STREAMWRECK_LOCAL_PROFILE": "true", "STREAMWRECK_METRICS_HOST": "127.0.0.1"}
        base = ["watch", "--quiet", "--stream", name, "--kcl-app", consumer_app, "--endpoint", api.url]
        # Both applications get the same properties: pages of PAGE records, so that a rate spans many reads.
        paging = ["--property", f"maxRecords={PAGE}"]

        # The bare reader: the same daemon and properties, a record processor that only counts.
        executable = f"executableName={sys.executable} {Path(__file__).resolve()} --reader"
        argv = streamwreck_argv(
            *base, *paging, "--application", f"{name}-reader", "--no-metrics", "--property", executable
        )
        bare = processes.launch("reader", argv, logs, 0, lambda: True, env=watch_env)
        started.append(bare)

        def read_all() -> bool:
            return sum(e["records"] for e in read_lines(bare.log_path, "bench_read")) >= args.records

        wait_until(read_all, 300, "the reader", interval=1)
        times = [e["t"] for e in read_lines(bare.log_path, "bench_read")]
        reader_rate = args.records / max(max(times) - min(times), 1e-3)
        bare.stop(timeout=20)

        # The watcher. The consumer is done, so its checkpoints need no settling: settle 0 keeps the fixed 5 s wait
        # for the consumer's events out of a rate (the latency below runs at the defaults).
        port = processes.free_port()
        url = f"http://127.0.0.1:{port}"
        argv = streamwreck_argv(*base, *paging, "--application", f"{name}-rate", "--metrics-port", str(port))
        rate_env = {**watch_env, "STREAMWRECK_SETTLE_SECONDS": "0", "STREAMWRECK_LEASE_REFRESH_SECONDS": "1"}
        ready = lambda: processes.http_ready(f"{url}/healthz")  # noqa: E731
        watcher = processes.launch("watcher-rate", argv, logs, port, ready, env=rate_env)
        started.append(watcher)
        first: list[float] = []

        def judged_all() -> bool:
            if not first and metric(url, "streamwreck_watch_records_read_total") > 0:
                first.append(time.time())
            return metric(url, "streamwreck_watch_records_total") >= args.records

        wait_until(judged_all, 600, "the watcher judging every record", interval=0.1)
        watcher_rate = args.records / max(time.time() - first[0], 1e-3)
        watcher.stop(timeout=20)

        # The watcher at its defaults (grace 60 s, settle 5 s, lease read every 3 s), from the stream's tip.
        port = processes.free_port()
        url = f"http://127.0.0.1:{port}"
        export = logs / "lost.jsonl"
        argv = streamwreck_argv(
            *base, "--initial-position", "LATEST", "--metrics-port", str(port), "--export", str(export)
        )
        ready = lambda: processes.http_ready(f"{url}/healthz")  # noqa: E731
        watcher = processes.launch("watcher", argv, logs, port, ready, env=watch_env)
        started.append(watcher)
        wait_until(lambda: shards_held(url) >= args.shards, 300, "the watcher's leases", interval=1)

        # Lost record -> report, live.
        live = put(kinesis, name, args.live, "b", rate=200)
        skipped = {(shard, sequence) for shard, sequence in live if skipped_by_demo_rule(sequence, SKIP_EVERY)}
        seen: dict[tuple[str, str], float] = {}
        entries: dict[tuple[str, str], dict[str, Any]] = {}

        def reported() -> bool:
            if export.exists():
                text = export.read_text()
                for line in text[: text.rfind("\n") + 1].splitlines():
                    entry = json.loads(line)
                    key = (entry["shard_id"], entry["sequence_number"])
                    seen.setdefault(key, time.time())
                    entries[key] = entry
            return skipped <= seen.keys()

        wait_until(reported, 300, "the live skipped records reported", interval=0.2)
        delays = sorted(
            seen[key]
            - datetime.fromisoformat(entries[key]["approximate_arrival_timestamp"].replace("Z", "+00:00")).timestamp()
            for key in skipped
        )
        p50, p99 = statistics.median(delays), delays[int(0.99 * (len(delays) - 1))]
    finally:
        for service in reversed(started):
            try:
                service.stop(timeout=20)
            except Exception as exc:
                print(f"stopping {service.name}: {exc}", file=sys.stderr)

    ratio = watcher_rate / reader_rate
    print(f"reader {reader_rate:,.0f} rec/s, watcher {watcher_rate:,.0f} rec/s ({ratio:.2f}x)")
    print(f"lost -> report: p50 {p50:.1f}s, p99 {p99:.1f}s")
    write_section(
        "watch",
        COMMAND,
        "streamwreck watch: records/s per watcher process, lost record to report",
        [
            (
                "watcher records/s (one process, all shards)",
                f"{watcher_rate:,.0f}",
                f"bare KCL reader {reader_rate:,.0f}",
            ),
            ("watcher / bare reader", f"{ratio:.2f}x", ">= 0.8x"),
            ("lost record: arrival -> report, p50", f"{p50:.1f} s", "<= grace + 10 s = 70 s"),
            ("lost record: arrival -> report, p99", f"{p99:.1f} s", "(grace 60 s, settle 5 s, lease read every 3 s)"),
        ],
        notes=f"{args.records:,} records over {args.shards} shards on kinesis-local, already processed by the consumer "
        f"(demo rule: every {SKIP_EVERY}th skipped), read in pages of {PAGE} by both applications; the reader's rate "
        "from its first page to its last, the watcher's from its first record read to every record judged (settle "
        "0: the consumer was done), the KCL's start-up excluded. Latency: a watcher at its defaults from the tip, "
        f"{args.live:,} records written at 200/s with the consumer running, {len(skipped)} of them skipped. Both "
        "applications poll one kinesis-local (one core) on 2 shared cores; at these properties (the local profile: "
        "a read of 500 records every 0.5 s a shard) the KCL's own polling is the reader's limit.",
    )
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
