"""How fast `streamwreck check` reads a stream, against a bare boto3 read of the same stream in the same run.

Everything runs on 127.0.0.1 and is started and stopped here (streamwreck.local.processes): kinesis-local, memcached
and a real `streamwreck api`. One stream is written once (every record also recorded in the ledger, so the check
does its full work: read, de-aggregate, reconcile every record, classify, build the report), then read alternately
four ways, interleaved, ROUNDS times each after a warm-up: a bare boto3 read with the checker's stopping rule (an empty
read at the tip) shard after shard, and all shards at once; the checker with --concurrency 1 and with its default.
Both sides use the same Kinesis client, built before the clock starts with the checker's own kinesis_client()
(botocore with a fast epoch-timestamp parser: boto3's default client spends more time converting timestamps to the
local zone than parsing the rest of a record, so a baseline with it would flatter the checker). The checker's time
includes everything else: listing, asking the API, classifying, building the report. The ratio compares the best
(by median) of each side; the like-for-like ratios are printed too. kinesis-local answers concurrent reads more
slowly than serial ones (one Node.js thread), which is why both modes are measured.

kinesis-local is the slow part of both (about one core, CPU-bound): the figures say how busy it was, so a reader
can tell the emulator's limit from the checker's. Goal: checker records/s >= 0.85 x baseline records/s.

    .venv/bin/python bench/bench_checker.py [--records 6000] [--shards 4] [--rounds 5] [--aggregate]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from report import write_section  # noqa: E402

from streamwreck.checker import DEFAULT_CONCURRENCY  # noqa: E402
from streamwreck.checker.check import Check  # noqa: E402
from streamwreck.checker.producer import produce  # noqa: E402
from streamwreck.core.aws import kinesis_client  # noqa: E402
from streamwreck.core.ledger import open_ledger  # noqa: E402
from streamwreck.core.records import RecordId  # noqa: E402
from streamwreck.core.settings import load_settings  # noqa: E402
from streamwreck.local import processes  # noqa: E402
from streamwreck.local.processes import Service  # noqa: E402

GOAL = 0.85


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_read_shard(kinesis: Any, stream: str, shard_id: str) -> int:
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    count = 0
    while iterator:
        response = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        count += len(response["Records"])
        if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
            break
        iterator = response.get("NextShardIterator")
    return count


def bare_read(kinesis: Any, stream: str, parallel: bool) -> int:
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]]
    if not parallel:
        return sum(bare_read_shard(kinesis, stream, shard) for shard in shards)
    with ThreadPoolExecutor(len(shards)) as pool:
        return sum(pool.map(lambda shard: bare_read_shard(kinesis, stream, shard), shards))


def timed(run: Callable[[], int], emulator: Service) -> dict[str, float]:
    cpu = cpu_seconds(emulator.pid)
    started = time.perf_counter()
    records = run()
    seconds = time.perf_counter() - started
    busy = (cpu_seconds(emulator.pid) - cpu) / seconds
    return {"records": records, "seconds": seconds, "rate": records / seconds, "emulator_busy": busy}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=6000, help="records written (default 6000; keep it small)")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--aggregate", action="store_true", help="write KPL aggregates of 25 user records")
    args = parser.parse_args()
    if not 1 <= args.records <= 50_000 or not 1 <= args.shards <= 32 or not 1 <= args.rounds <= 10:
        parser.error("--records 1..50000, --shards 1..32, --rounds 1..10")

    import boto3

    logs = Path(tempfile.mkdtemp(prefix="bench-checker-"))
    started: list[Service] = []
    try:
        memcached = processes.start_memcached(logs)
        started.append(memcached)
        kinesis_local = processes.start_kinesis_local(logs)
        started.append(kinesis_local)
        api = processes.start_api(logs, memcached.port)
        started.append(api)
        os.environ.update(
            AWS_ENDPOINT_URL_KINESIS=kinesis_local.url,
            AWS_ACCESS_KEY_ID=os.environ.get("AWS_ACCESS_KEY_ID", "bench"),
            AWS_SECRET_ACCESS_KEY=os.environ.get("AWS_SECRET_ACCESS_KEY", "bench"),
            AWS_DEFAULT_REGION=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
        kinesis = boto3.session.Session().client("kinesis", endpoint_url=kinesis_local.url)
        stream = f"bench-{uuid.uuid4().hex[:8]}"
        kinesis.create_stream(StreamName=stream, ShardCount=args.shards)
        while (
            kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE"
        ):
            time.sleep(0.05)

        write_started = time.perf_counter()
        written = produce(kinesis, stream, args.records, aggregate=args.aggregate, size=100).records
        write_seconds = time.perf_counter() - write_started
        ledger = open_ledger(load_settings(memcached_servers=f"127.0.0.1:{memcached.port}"))
        ids = [RecordId(stream, w.shard_id, w.sequence_number, w.sub_sequence_number) for w in written]
        for start in range(0, len(ids), 5000):
            ledger.record(ids[start : start + 5000], uuid.uuid4().hex, int(time.time()))
        ledger.close()
        kinesis_records = len({(w.shard_id, w.sequence_number) for w in written})
        print(
            f"wrote {len(written):,} records ({kinesis_records:,} Kinesis records) to {args.shards} shards in "
            f"{write_seconds:.1f}s; reading it {args.rounds} times each way",
            file=sys.stderr,
        )

        # what `streamwreck check` builds; the bare read gets the very same client, so the ratio is like-for-like
        own_client = kinesis_client(max_connections=max(DEFAULT_CONCURRENCY, args.shards) + 4)

        def checker(concurrency: int) -> Callable[[], int]:
            def run() -> int:
                document = Check(
                    stream=stream, endpoint=api.url, grace=0, kinesis=own_client, concurrency=concurrency
                ).run()
                assert document["verdict"] == "clean", document["counts"]
                return int(document["counts"]["checked"]) * kinesis_records // len(written)

            return run

        modes: dict[str, Callable[[], int]] = {
            "bare_sequential": lambda: bare_read(own_client, stream, parallel=False),
            "bare_parallel": lambda: bare_read(own_client, stream, parallel=True),
            "checker_concurrency_1": checker(1),
            f"checker_concurrency_{DEFAULT_CONCURRENCY}": checker(DEFAULT_CONCURRENCY),
        }
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in modes}
        for mode in modes.values():  # warm up: kinesis-local's JIT, connection pools
            mode()
        for _ in range(args.rounds):  # interleaved, so that a noisy moment hits every mode alike
            for name, mode in modes.items():
                runs[name].append(timed(mode, kinesis_local))
        # Kinesis records per second on both sides (the checker counts user records: the same without --aggregate)
        rate = {name: statistics.median(r["rate"] for r in results) for name, results in runs.items()}
        busy = {name: statistics.median(r["emulator_busy"] for r in results) for name, results in runs.items()}
        best_bare = max(("bare_sequential", "bare_parallel"), key=rate.__getitem__)
        best_checker = max((name for name in rate if name.startswith("checker")), key=rate.__getitem__)
        result = {
            "records": len(written),
            "kinesis_records": kinesis_records,
            "shards": args.shards,
            "aggregate": args.aggregate,
            "records_per_second": {name: round(value) for name, value in rate.items()},
            "ratio": round(rate[best_checker] / rate[best_bare], 3),
            "compared": f"{best_checker} vs {best_bare}",
            "ratio_default_vs_bare_parallel": round(
                rate[f"checker_concurrency_{DEFAULT_CONCURRENCY}"] / rate["bare_parallel"], 3
            ),
            "ratio_concurrency_1_vs_bare_sequential": round(rate["checker_concurrency_1"] / rate["bare_sequential"], 3),
            "goal": GOAL,
            "emulator_busy": {name: round(value, 2) for name, value in busy.items()},
            "seconds": {name: [round(r["seconds"], 3) for r in results] for name, results in runs.items()},
            "load_average": round(os.getloadavg()[0], 2),
        }
        print(json.dumps(result, indent=2))
        verdict = "meets" if result["ratio"] >= GOAL else "MISSES"
        print(
            f"checker {rate[best_checker]:,.0f} rec/s ({best_checker}) vs bare boto3 {rate[best_bare]:,.0f} rec/s "
            f"({best_bare}): ratio {result['ratio']:.2f} ({verdict} the {GOAL} goal); default settings vs the bare "
            f"read of the same shape (all shards at once): {result['ratio_default_vs_bare_parallel']:.2f}",
            file=sys.stderr,
        )
        write_section(
            "checker",
            "make bench (.venv/bin/python bench/bench_checker.py)",
            f"The checker against a bare boto3 read ({len(written):,} records over {args.shards} shards)",
            [
                ("checker records/s", f"{rate[best_checker]:,.0f} ({best_checker})", ""),
                (
                    "bare boto3 read records/s (same client, same stream)",
                    f"{rate[best_bare]:,.0f} ({best_bare})",
                    "baseline",
                ),
                ("checker / bare read", f"{result['ratio']:.2f}", f"goal >= {GOAL}"),
                (
                    "default settings / bare read of the same shape",
                    f"{result['ratio_default_vs_bare_parallel']:.2f}",
                    "",
                ),
            ],
            "kinesis-local, not the checker, sets the absolute rate here (one CPU-bound Node process).",
        )
        return 0
    finally:
        for service in reversed(started):
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
