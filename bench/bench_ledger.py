"""The compact ledger: memory per record, the API's lookup rate, and the recorder's rate, each against a baseline.

    .venv/bin/python bench/bench_ledger.py [--records 1000000] [--requests 24] [--messages 400]

Starts its own memcached, moto and API on 127.0.0.1 (free ports) and stops them. Figures (issue 10's goals):
- bytes per record: memcached's ``stats`` bytes / records recorded, for --records records over 4 shards with
  realistic sequence numbers (1,000 records/s per shard), recorded in events of 400 records as the processor
  publishes them; beside the per-record format (``records``) on 100,000 of them in the same run. Goal <= 8.
- API records/s: POST /reconcile with 10,000-record requests, ``streamwreck api --workers 2``, two client threads;
  against a raw text-protocol multi-get (``get k1 k2 ...`` on one socket) of one key per record from the same
  memcached. Goal >= 1.0.
- recorder records/s: draining --messages processed events (400 records each) from a full SQS queue (moto) into the
  ledger, against receiving and deleting the same messages with boto3 alone. Goal >= 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from pymemcache.client.base import Client
from report import write_section

from streamwreck.core import buckets
from streamwreck.core.events import encode
from streamwreck.core.ledger import open_ledger
from streamwreck.core.records import RecordId, ledger_key
from streamwreck.core.settings import LedgerSettings, load_settings
from streamwreck.local import processes

STREAM = "orders-benchmark"
SHARDS = 4
EVENT_RECORDS = 400  # records per processed event, as the processor publishes them
REQUEST_RECORDS = 10_000
COMMAND = "make bench (.venv/bin/python bench/bench_ledger.py)"


def realistic(records: int) -> list[RecordId]:
    """``records`` records over 4 shards, each written at 1,000 records/s, in the order a consumer sees them."""
    start = int(time.time()) - 3600
    per_shard = records // SHARDS
    return [
        RecordId(
            STREAM, f"shardId-{shard:012d}", buckets.sequence_number(start - 86_400, shard, n, start + n // 1000), 0
        )
        for shard in range(SHARDS)
        for n in range(per_shard)
    ]


def _stats(port: int) -> dict[bytes, int]:
    client = Client(("127.0.0.1", port))
    try:
        return client.stats()
    finally:
        client.close()


def memory(compact: processes.Service, ids: list[RecordId], logs: Path) -> tuple[float, float]:
    """(bytes a record in the compact ledger on ``compact``, bytes a record in the per-record format)."""
    per_record = processes.start_memcached(logs / "per-record", memory_mb=256)
    try:
        for node, fmt, sample in ((compact, "buckets", ids), (per_record, "records", ids[:100_000])):
            settings = load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{node.port}", ledger_format=fmt)
            ledger = open_ledger(settings)
            for start in range(0, len(sample), EVENT_RECORDS):
                ledger.record(sample[start : start + EVENT_RECORDS], f"event-{start}", int(time.time()))
            ledger.close()
        compact_bytes = _stats(compact.port)[b"bytes"] / len(ids)
        per_record_stats = _stats(per_record.port)
        per_record_bytes = per_record_stats[b"bytes"] / (per_record_stats[b"curr_items"] - 1)  # less the marker
        return compact_bytes, per_record_bytes
    finally:
        per_record.stop()


def raw_multi_get(port: int, keys: list[str]) -> int:
    """``get k1 k2 ...`` on one socket, answered values counted: memcached serving one key a record, with no client
    library in the way."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"get " + " ".join(keys).encode() + b"\r\n")
        data = bytearray()
        while not data.endswith(b"END\r\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("memcached closed the connection")
            data += chunk
    return data.count(b"VALUE ")


def api_rate(port: int, logs: Path, ids: list[RecordId], requests: int) -> tuple[float, float]:
    """(API records/s with 2 workers and 2 client threads, raw multi-get records/s on one socket)."""
    per_record_keys = {ledger_key(r): b"1" for r in ids[: REQUEST_RECORDS * requests]}
    client = Client(("127.0.0.1", port), default_noreply=False)
    keys = list(per_record_keys)
    for start in range(0, len(keys), 10_000):
        client.set_many({k: b"1" for k in keys[start : start + 10_000]})
    client.close()
    batches = [ids[n * REQUEST_RECORDS : (n + 1) * REQUEST_RECORDS] for n in range(requests)]
    raw_times = []
    for batch in batches:
        batch_keys = [ledger_key(r) for r in batch]
        started = time.perf_counter()
        assert raw_multi_get(port, batch_keys) == len(batch_keys)
        raw_times.append(time.perf_counter() - started)
    raw = REQUEST_RECORDS / statistics.median(raw_times)

    api = processes.start_api(logs, port, workers=2, env={"STREAMWRECK_LOG_LEVEL": "WARNING"})
    try:
        bodies = [
            json.dumps(
                {
                    "stream": STREAM,
                    "records": [
                        {"shard_id": r.shard_id, "sequence_number": r.sequence_number, "sub_sequence_number": 0}
                        for r in batch
                    ],
                }
            ).encode()
            for batch in batches
        ]
        with httpx.Client(base_url=api.url, timeout=120) as http:  # warm both workers, and check the answer
            for body in bodies[:4]:
                answer = http.post("/reconcile", content=body, headers={"content-type": "application/json"}).json()
                assert answer["checked"] == REQUEST_RECORDS and answer["unprocessed"] == [], answer.get("message")
        errors: list[str] = []

        def client_thread(mine: list[bytes]) -> None:
            with httpx.Client(base_url=api.url, timeout=120) as http:
                for body in mine:
                    response = http.post("/reconcile", content=body, headers={"content-type": "application/json"})
                    if response.status_code != 200 or b'"unprocessed":[]' not in response.content:
                        errors.append(f"{response.status_code}: {response.text[:200]}")

        threads = [threading.Thread(target=client_thread, args=(bodies[i::2],)) for i in range(2)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        assert not errors, errors[:3]
        return REQUEST_RECORDS * len(bodies) / elapsed, raw
    finally:
        api.stop()


def recorder_rate(ledger_port: int, logs: Path, ids: list[RecordId], messages: int) -> tuple[float, float]:
    """(recorder records/s draining the queue into the ledger, boto3 receive+delete records/s of the same queue)."""
    import boto3

    from streamwreck.recorder.worker import Recorder

    moto = processes.start_moto(logs)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=moto.url,
    )
    try:
        sqs = boto3.client("sqs")
        at = datetime.now(UTC)
        events = [
            encode(
                f"bench-{n}",
                STREAM,
                ids[n * EVENT_RECORDS].shard_id,
                "bench",
                at,
                [(r.sequence_number, 0) for r in ids[n * EVENT_RECORDS : (n + 1) * EVENT_RECORDS]],
            )
            for n in range(messages)
        ]

        def fill(name: str) -> str:
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            for start in range(0, len(events), 10):
                entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(events[start : start + 10])]
                sqs.send_message_batch(QueueUrl=url, Entries=entries)
            return url

        baseline_url = fill("bench-baseline")
        started = time.perf_counter()
        drained = 0
        while drained < messages:
            got = sqs.receive_message(QueueUrl=baseline_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            batch = got.get("Messages", [])
            if batch:
                entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)]
                sqs.delete_message_batch(QueueUrl=baseline_url, Entries=entries)
            drained += len(batch)
        boto3_rate = messages * EVENT_RECORDS / (time.perf_counter() - started)

        recorder_url = fill("bench-recorder")
        ledger = open_ledger(load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{ledger_port}"))
        recorder = Recorder(sqs, recorder_url, ledger, wait_seconds=0, visibility_timeout=60)
        started = time.perf_counter()
        stored = 0
        while stored < messages * EVENT_RECORDS:
            stored += recorder.poll_once().records
        rate = stored / (time.perf_counter() - started)
        ledger.close()
        return rate, boto3_rate
    finally:
        moto.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=24, help="10,000-record API requests to time")
    parser.add_argument("--messages", type=int, default=400, help="processed events (400 records each) to drain")
    args = parser.parse_args()
    if args.records < max(args.requests * REQUEST_RECORDS, args.messages * EVENT_RECORDS, 100_000):
        parser.error("--records must cover --requests x 10,000, --messages x 400 and 100,000")
    logs = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    ids = realistic(args.records)
    node = processes.start_memcached(logs / "compact", memory_mb=1024)
    try:
        compact, per_record = memory(node, ids, logs)
        api, raw = api_rate(node.port, logs, ids, args.requests)
        recorder, boto3_alone = recorder_rate(node.port, logs, ids, args.messages)
    finally:
        node.stop()
    rows = [
        ("ledger bytes per record (compact, `buckets`)", f"{compact:.2f} B", "goal <= 8 B"),
        ("ledger bytes per record (per-record, `records`)", f"{per_record:.1f} B", "baseline"),
        ("API records/s (10,000-record requests, 2 workers)", f"{api:,.0f}", ""),
        ("raw `get k1 ... k10000` records/s (one key a record, one socket)", f"{raw:,.0f}", "baseline"),
        ("API / raw multi-get", f"{api / raw:.2f}", "goal >= 1.0"),
        ("recorder records/s (events of 400 from a full queue)", f"{recorder:,.0f}", ""),
        ("boto3 receive + delete records/s (same messages)", f"{boto3_alone:,.0f}", "baseline"),
        ("recorder / boto3 alone", f"{recorder / boto3_alone:.2f}", "goal >= 0.8"),
    ]
    print(json.dumps({figure: value for figure, value, _ in rows}, indent=2))
    write_section(
        "ledger",
        COMMAND,
        f"The ledger: memory, lookups, recording ({len(ids):,} records over {SHARDS} shards)",
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
