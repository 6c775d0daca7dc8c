"""Latency from a record written to Kinesis to its entry in the ledger, on the embedded local stack.

    .venv/bin/python bench/bench_pipeline_latency.py                    # starts its own stack (2 shards), stops it
    .venv/bin/python bench/bench_pipeline_latency.py --dir .streamwreck  # on a stack that is up already

A writer puts single records at a steady rate (PutRecord; "written" is when the put returned); a poller asks the
reconcile API every --poll seconds which of the written records are still missing, and a record's latency is the
time until the first answer that had it. The path measured: kinesis-local -> KCL daemon polling GetRecords ->
processor -> SNS (moto) -> SQS (moto) -> recorder long poll -> memcached -> API. Records the demo rule skips are
not written to the ledger and not counted.

Two intervals set the figure, not streamwreck's code paths: the processor publishes its processed events every
2 s (or every 4,000 records: FLUSH_SECONDS in services/processor/processor.py) and the KCL polls each shard every
0.5 s locally (idleTimeBetweenReadsInMillis); expect a p50 near 1.3 s and a maximum near 2.7 s. PutRecord's own
latency on the same emulator is printed beside it as the baseline. The first ~10 s after the consumer took its
leases are slower (the JVM warming up, lease balancing): --warmup records are written through them, not measured.
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

from report import write_section

from streamwreck.checker.reconciling import ReconcileApi
from streamwreck.core.records import RecordId
from streamwreck.local import stack
from streamwreck.local.state import StackState, status
from streamwreck.processor.processor import skipped_by_demo_rule


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(state: StackState, records: int, rate: float, poll: float, warmup: int) -> dict[str, object]:
    kinesis = state.client("kinesis")
    probe = ReconcileApi(state.api_url)
    written: dict[RecordId, float] = {}
    put_seconds: list[float] = []
    lock = threading.Lock()
    done_writing = threading.Event()

    def write() -> None:
        start = time.monotonic()
        for i in range(warmup + records):
            due = start + i / rate
            time.sleep(max(0.0, due - time.monotonic()))
            before = time.monotonic()
            answer = kinesis.put_record(StreamName=state.stream, Data=f"bench {i}".encode(), PartitionKey=f"k{i}")
            after = time.monotonic()
            put_seconds.append(after - before)
            if i < warmup or skipped_by_demo_rule(answer["SequenceNumber"], state.skip_every):
                continue
            with lock:
                written[RecordId(state.stream, answer["ShardId"], answer["SequenceNumber"], 0)] = after
        done_writing.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    latencies: dict[RecordId, float] = {}
    deadline = time.monotonic() + (warmup + records) / rate + 120
    try:
        while time.monotonic() < deadline:
            with lock:
                pending = [r for r in written if r not in latencies]
            if pending:
                missing = probe.reconcile(state.stream, pending).unprocessed  # type: ignore[arg-type]
                now = time.monotonic()
                for record in pending:
                    if (record.shard_id, record.sequence_number, record.sub_sequence_number) not in missing:
                        latencies[record] = now - written[record]
            elif done_writing.is_set():
                break
            time.sleep(poll)
    finally:
        probe.close()
    values = list(latencies.values())
    if not values:
        raise SystemExit("no record reached the ledger within the time limit: see the stack's logs")
    return {
        "records": len(written),
        "reached_ledger": len(values),
        "rate_per_second": rate,
        "poll_seconds": poll,
        "p50_seconds": round(statistics.median(values), 3),
        "p90_seconds": round(percentile(values, 0.9), 3),
        "p99_seconds": round(percentile(values, 0.99), 3),
        "max_seconds": round(max(values), 3),
        "baseline_put_record_p50_seconds": round(statistics.median(put_seconds), 4),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", type=Path, help="use the stack that is up in this folder instead of starting one")
    parser.add_argument("--records", type=int, default=200, help="records measured (default 200)")
    parser.add_argument("--rate", type=float, default=20.0, help="records written per second (default 20)")
    parser.add_argument("--poll", type=float, default=0.02, help="seconds between API polls (default 0.02)")
    parser.add_argument(
        "--warmup", type=int, default=200, help="records written first and not measured (default 200: 10 s at 20/s)"
    )
    args = parser.parse_args()

    def say(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    if args.dir:
        state = status(args.dir)
        say(f"using the stack in {args.dir}")
        result = measure(state, args.records, args.rate, args.poll, args.warmup)
    else:
        with tempfile.TemporaryDirectory(prefix="streamwreck-bench-") as folder:
            began = time.monotonic()
            state = stack.up(stack.Options(dir=Path(folder), stream="bench", shards=2, skip_every=0), say=say)
            say(f"stack up in {time.monotonic() - began:.0f}s")
            try:
                result = measure(state, args.records, args.rate, args.poll, args.warmup)
            finally:
                stack.down(Path(folder), say=say)
    print(
        f"pipeline latency, record written -> ledger entry: p50 {result['p50_seconds']}s,"
        f" p90 {result['p90_seconds']}s, p99 {result['p99_seconds']}s, max {result['max_seconds']}s"
        f" ({result['reached_ledger']}/{result['records']} records at {args.rate:g}/s;"
        f" PutRecord itself p50 {result['baseline_put_record_p50_seconds']}s)"
    )
    print(json.dumps({"benchmark": "pipeline_latency", **result}))
    write_section(
        "pipeline-latency",
        "make bench (.venv/bin/python bench/bench_pipeline_latency.py)",
        f"Latency from a record written to its ledger entry ({result['records']} records at {args.rate:g}/s, "
        "local stack)",
        [
            (
                "p50 / p90 / p99 seconds",
                f"{result['p50_seconds']} / {result['p90_seconds']} / {result['p99_seconds']}",
                "",
            ),
            ("PutRecord itself, p50 seconds", f"{result['baseline_put_record_p50_seconds']}", "baseline"),
        ],
        "Set by the processor's 2 s publish flush and the KCL's 0.5 s polling, not by the recorder or the ledger.",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
