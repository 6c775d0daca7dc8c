"""Load on the reconcile API: sustained requests/s and latency for 1,000-record requests, zero errors.

    .venv/bin/python bench/bench_api_load.py [--seconds 20] [--clients 4] [--records 200000]

Starts its own memcached and ``streamwreck api --workers 2`` on 127.0.0.1 (free ports) and stops them. --records
records over 4 shards (realistic sequence numbers) are recorded in the compact ledger; each request asks about 1,000
of them, one in a hundred never recorded (so every answer names some unprocessed). --clients threads, each on its
own keep-alive connection (httpx), send requests back to back for --seconds after a warm-up; every answer is
checked (status 200, the 10 unprocessed named). A small driver rather than locust: the same figures without a
gevent runtime beside the server on a two-core machine; the clients share the cores with the server, so the
figures are a floor. Goal: zero errors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from report import write_section

from streamwreck.core import buckets
from streamwreck.core.ledger import open_ledger
from streamwreck.core.records import RecordId
from streamwreck.core.settings import LedgerSettings, load_settings
from streamwreck.local import processes

STREAM = "orders-load"
SHARDS = 4
REQUEST_RECORDS = 1_000
MISSING_EVERY = 100  # one record in a hundred is never recorded
COMMAND = "make bench (.venv/bin/python bench/bench_api_load.py)"


def records(count: int) -> list[RecordId]:
    start = int(time.time()) - 3600
    return [
        RecordId(STREAM, f"shardId-{s:012d}", buckets.sequence_number(start - 86_400, s, n, start + n // 1000), 0)
        for s in range(SHARDS)
        for n in range(count // SHARDS)
    ]


def body(batch: list[RecordId]) -> bytes:
    items = [{"shard_id": r.shard_id, "sequence_number": r.sequence_number} for r in batch]
    return json.dumps({"stream": STREAM, "records": items}).encode()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(seconds: float, clients: int, count: int) -> dict[str, float]:
    logs = Path(tempfile.mkdtemp(prefix="bench-api-load-"))
    ids = records(count)
    node = processes.start_memcached(logs, memory_mb=256)
    api = None
    try:
        ledger = open_ledger(load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{node.port}"))
        present = [r for i, r in enumerate(ids) if i % MISSING_EVERY]
        for start in range(0, len(present), 400):
            ledger.record(present[start : start + 400], f"e{start}", int(time.time()))
        ledger.close()
        bodies = [body(ids[n : n + REQUEST_RECORDS]) for n in range(0, len(ids), REQUEST_RECORDS)]
        api = processes.start_api(logs, node.port, workers=2, env={"STREAMWRECK_LOG_LEVEL": "WARNING"})
        latencies: list[list[float]] = [[] for _ in range(clients)]
        errors: list[str] = []
        go = threading.Event()
        stop = threading.Event()
        url = api.url

        def client(index: int) -> None:
            headers = {"content-type": "application/json"}
            with httpx.Client(base_url=url, timeout=60) as http:
                for n in range(4):  # warm-up: connections, both workers' first requests
                    http.post("/reconcile", content=bodies[n], headers=headers)
                go.wait()
                n = index
                while not stop.is_set():
                    started = time.perf_counter()
                    response = http.post("/reconcile", content=bodies[n % len(bodies)], headers=headers)
                    elapsed = time.perf_counter() - started
                    if response.status_code != 200 or len(response.json()["unprocessed"]) != 10:
                        errors.append(f"{response.status_code}: {response.text[:200]}")
                    latencies[index].append(elapsed)
                    n += clients

        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        time.sleep(2)
        go.set()
        began = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        every = [value for mine in latencies for value in mine]
        return {
            "requests": len(every),
            "errors": len(errors),
            "requests_per_second": len(every) / elapsed,
            "records_per_second": len(every) * REQUEST_RECORDS / elapsed,
            "p50_ms": statistics.median(every) * 1000,
            "p99_ms": percentile(every, 0.99) * 1000,
            "max_ms": max(every) * 1000,
        }
    finally:
        if api is not None:
            api.stop()
        node.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--records", type=int, default=200_000)
    args = parser.parse_args()
    figures = run(args.seconds, args.clients, args.records)
    print(json.dumps(figures, indent=2))
    rows = [
        ("requests (1,000 records each)", f"{figures['requests']:,.0f} in {args.seconds:g} s", ""),
        ("errors (not 200, or a wrong answer)", f"{figures['errors']:,.0f}", "goal 0"),
        ("sustained requests/s", f"{figures['requests_per_second']:,.0f}", ""),
        ("records/s", f"{figures['records_per_second']:,.0f}", ""),
        ("latency p50", f"{figures['p50_ms']:.1f} ms", ""),
        ("latency p99", f"{figures['p99_ms']:.1f} ms", ""),
        ("latency max", f"{figures['max_ms']:.1f} ms", ""),
    ]
    write_section(
        "api_load",
        COMMAND,
        f"The reconcile API under load (`streamwreck api --workers 2`, {args.clients} clients, 1,000-record requests)",
        rows,
        notes="The clients run on the same two cores as the API's workers and memcached: the figures are a floor.",
    )
    return 1 if figures["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
