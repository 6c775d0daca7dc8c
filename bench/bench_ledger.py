"""Ledger memory per record, and the API's lookup rate against a raw memcached get_many of the same keys.

    .venv/bin/python bench/bench_ledger.py [--entries 1000000] [--requests 20]

Starts its own memcached and API on 127.0.0.1 (free ports) and stops them. Figures:
- bytes per record: memcached's own `stats` (bytes / curr_items) after recording --entries records through
  MemcachedLedger.record, beside the naive `stream:shard:sequence` key with value "1" measured in the same run;
- keys/s: POST /reconcile with 10,000-record requests against pymemcache get_many of the same 10,000 keys.
The ratios are what to compare between runs: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from pymemcache.client.base import Client

from streamwreck.core.ledger import MemcachedLedger
from streamwreck.core.records import RecordId, ledger_key
from streamwreck.core.settings import load_settings
from streamwreck.local import processes

STREAM = "orders-benchmark"
SHARDS = [f"shardId-{i:012d}" for i in range(4)]
BATCH = 10_000


def _ids(n: int) -> list[RecordId]:
    base = 49_590_338_271_490_256_608_559_692_538_361_571_095_921_575_989_136_588_898
    return [RecordId(STREAM, SHARDS[i % 4], str(base + i * 7), 0) for i in range(n)]


def _stats(port: int) -> dict[bytes, int]:
    client = Client(("127.0.0.1", port))
    stats = client.stats()
    client.close()
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20, help="10,000-record API requests to time")
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    ledger_node = processes.start_memcached(logs / "ledger", memory_mb=1024)
    naive_node = processes.start_memcached(logs / "naive", memory_mb=256)
    api = None
    try:
        settings = load_settings(memcached_servers=f"127.0.0.1:{ledger_node.port}")
        ledger = MemcachedLedger.from_settings(settings)
        ids = _ids(args.entries)
        started = time.perf_counter()
        for i in range(0, len(ids), BATCH):
            ledger.record(ids[i : i + BATCH], f"event-{i}", int(time.time()))
        record_seconds = time.perf_counter() - started
        stats = _stats(ledger_node.port)
        per_record = stats[b"bytes"] / stats[b"curr_items"]

        naive = Client(("127.0.0.1", naive_node.port), default_noreply=False)
        sample = ids[:100_000]
        for i in range(0, len(sample), BATCH):
            naive.set_many({f"{r.stream}:{r.shard_id}:{r.sequence_number}": b"1" for r in sample[i : i + BATCH]})
        naive_stats = _stats(naive_node.port)
        naive_per_record = naive_stats[b"bytes"] / naive_stats[b"curr_items"]
        naive.close()

        port = processes.free_port()
        api = processes.launch(
            "api",
            [str(Path(sys.executable).with_name("streamwreck")), "api"],
            logs,
            port,
            lambda: processes.http_ready(f"http://127.0.0.1:{port}/healthz"),
            env={
                "STREAMWRECK_MEMCACHED_SERVERS": f"127.0.0.1:{ledger_node.port}",
                "STREAMWRECK_API_PORT": str(port),
                "STREAMWRECK_LOG_LEVEL": "WARNING",
            },
        )
        raw = Client(("127.0.0.1", ledger_node.port), no_delay=True)
        http = httpx.Client(base_url=api.url, timeout=60)
        api_rates, raw_rates = [], []
        for n in range(args.requests):
            batch = ids[(n * BATCH) % len(ids) :][:BATCH]
            keys = [ledger_key(r) for r in batch]
            t = time.perf_counter()
            found = raw.get_many(keys)
            raw_rates.append(len(keys) / (time.perf_counter() - t))
            body = {
                "stream": STREAM,
                "records": [{"shard_id": r.shard_id, "sequence_number": r.sequence_number} for r in batch],
            }
            t = time.perf_counter()
            answer = http.post("/reconcile", json=body).json()
            api_rates.append(len(batch) / (time.perf_counter() - t))
            assert len(found) == len(batch) and answer["unprocessed"] == [], "the benchmark's records must be found"
        raw.close()
        http.close()
        result = {
            "entries": stats[b"curr_items"],
            "bytes_per_record": round(per_record, 1),
            "naive_key_bytes_per_record": round(naive_per_record, 1),
            "memory_ratio_vs_naive": round(per_record / naive_per_record, 3),
            "evictions": stats[b"evictions"],
            "record_rate_per_s": round(args.entries / record_seconds),
            "api_keys_per_s_median": round(statistics.median(api_rates)),
            "raw_get_many_keys_per_s_median": round(statistics.median(raw_rates)),
            "api_ratio_vs_raw_get_many": round(statistics.median(api_rates) / statistics.median(raw_rates), 3),
        }
        print(json.dumps(result, indent=2))
        return 0
    finally:
        if api:
            api.stop()
        ledger_node.stop()
        naive_node.stop()


if __name__ == "__main__":
    sys.exit(main())
