"""The README's Docker section, run: the images built from the real Dockerfiles, docker-compose.yml up (LocalStack,
memcached, the init, api, recorder, processor, and the watcher of `--profile watch`), the producer writing 1,000
records, the checker container naming as lost exactly the records the processor's demo rule skipped, and the
watcher counting the same number lost as they arrive (its Prometheus metrics). Then `docker compose down`, and
nothing of the stack is left. Containers share the host's network (docker-compose.hostnet.yml): all on 127.0.0.1.
"""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import httpx
import pytest
from compose_stack import LOGS, Stack, tail

COMPOSE_TIMEOUT = 4500  # the whole cold path (install, bases, builds) included; the CI run allows 90 minutes
STREAM = "demo"  # docker-compose.yml's x-names
APPLICATION = "demo-consumer"
RECORDS = 1000  # the producer's default command
SKIP_EVERY = 5  # docker-compose.yml's default STREAMWRECK_SKIP_EVERY
CATCH_UP_TIMEOUT = 300
CHECK_TIMEOUT = 180
WATCH_TIMEOUT = 300  # the watcher's own KCL application starts beside the processor's: 30-60 s to its leases

# (shard id, sequence number, sub-sequence number). The producer's default records are plain (not KPL-aggregated),
# so each Kinesis record is one user record with sub-sequence number 0. Written out here rather than imported, so
# that this test reads only the deployables' interfaces: Kinesis, the reconcile API and the checker's JSON report.
Record = tuple[str, str, int]


def skipped_by_demo_rule(record: Record) -> bool:
    """The processor's demo rule (README): it skips records whose sequence number divides by SKIP_EVERY."""
    return int(record[1]) % SKIP_EVERY == 0


def read_stream(stack: Stack) -> list[Record]:
    kinesis = boto3.client(
        "kinesis",
        endpoint_url=stack.endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    records = []
    for shard in kinesis.list_shards(StreamName=STREAM)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records += [(shard["ShardId"], r["SequenceNumber"], 0) for r in page["Records"]]
            iterator = page.get("NextShardIterator")
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break
    return records


def unrecorded(api: httpx.Client, records: list[Record]) -> list[Record]:
    """Which of ``records`` the ledger lacks, asked of the reconcile API (POST /reconcile)."""
    body = {
        "stream": STREAM,
        "records": [{"shard_id": s, "sequence_number": q, "sub_sequence_number": n} for s, q, n in records],
    }
    response = api.post("/reconcile", json=body)
    response.raise_for_status()
    return [(r["shard_id"], r["sequence_number"], r["sub_sequence_number"]) for r in response.json()["unprocessed"]]


def wait_for_ledger(stack: Stack, records: list[Record]) -> None:
    """Until every record the demo rule lets through has its ledger entry (the recorder has caught up)."""
    expected = [r for r in records if not skipped_by_demo_rule(r)]
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        while True:
            expected = unrecorded(api, expected)
            if not expected:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"{len(expected)} processed records still not in the ledger after {CATCH_UP_TIMEOUT}s")
            time.sleep(1)


def watched(stack: Stack) -> dict[str, float]:
    """The watcher's records_total by status, summed over shards (its /metrics)."""
    text = httpx.get(f"http://127.0.0.1:{stack.ports['SW_WATCH_PORT']}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("streamwreck_watch_records_total{"):
            status = line.split('status="', 1)[1].split('"', 1)[0]
            counts[status] = counts.get(status, 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


def check(stack: Stack) -> tuple[int, dict[str, Any]]:
    """The README's `docker compose run --rm checker`, with a JSON report on stdout and no grace period (the ledger
    has caught up: a record missing now is missing for good)."""
    result = stack.run(
        "run", "--rm", "-T", "checker",
        "check", "--kcl-app", APPLICATION, "--grace", "0", "--format", "json", "--quiet",
        timeout=CHECK_TIMEOUT, what="docker compose run checker",
    )  # fmt: skip
    assert result.returncode in (0, 1, 3), tail(result)
    return result.returncode, json.loads(result.stdout)


@pytest.mark.compose
@pytest.mark.timeout(COMPOSE_TIMEOUT)
def test_compose_up_names_exactly_the_records_the_demo_rule_skipped(stack: Stack) -> None:
    began = time.monotonic()
    produce = stack.run("run", "--rm", "-T", "producer", timeout=300, what="docker compose run producer")
    assert produce.returncode == 0, tail(produce)

    records = read_stream(stack)
    assert len(records) == RECORDS
    assert len({shard for shard, _, _ in records}) == 2  # compose's init: SHARD_COUNT 2
    skipped = {r for r in records if skipped_by_demo_rule(r)}
    assert 0 < len(skipped) < RECORDS
    wait_for_ledger(stack, records)

    # The ledger is complete; a skipped record at a shard's tail is in flight until the checkpoint passes it.
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    while True:
        code, report = check(stack)
        if report["counts"].get("in_flight", 0) == 0 or time.monotonic() > deadline:
            break
        time.sleep(2)
    (LOGS / "report.json").write_text(json.dumps(report, indent=1))

    listed = {(r["shard_id"], r["sequence_number"], r["sub_sequence_number"]): r["status"] for r in report["records"]}
    lost = {r for r, status in listed.items() if status == "lost"}
    assert lost == skipped, f"lost but processed: {len(lost - skipped)}, skipped but not lost: {len(skipped - lost)}"
    assert set(listed.values()) <= {"lost", "duplicate"}, report["counts"]
    assert report["counts"]["checked"] == RECORDS
    assert report["verdict"] == "gaps"
    assert code == 1

    # The watcher (docker compose --profile watch) judged every record as the processor's checkpoint passed it.
    deadline = time.monotonic() + WATCH_TIMEOUT
    while sum((counts := watched(stack)).values()) < RECORDS and time.monotonic() < deadline:
        time.sleep(2)
    assert counts.get("lost", 0) == len(skipped), counts
    assert counts.get("processed", 0) + counts.get("duplicate", 0) == RECORDS - len(skipped), counts
    assert counts.get("unknown", 0) == 0, counts
    stack.timings["pipeline"] = time.monotonic() - began
    print(f"compose timings (s): {json.dumps({k: round(v) for k, v in stack.timings.items()})}")
