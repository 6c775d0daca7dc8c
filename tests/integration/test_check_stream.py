"""`streamwreck check` against real parts: streams in kinesis-local, leases in moto's DynamoDB, ledger entries in
the session's memcached written by the real memcached ledger, and a real `streamwreck api` process.

Each test writes a small stream, records in the ledger what "the consumer" processed, runs the command (in process,
through streamwreck.cli.main.main, exactly as the console script does) and checks the report names exactly the right
records.
"""

from __future__ import annotations

import base64
import json
import os
import pty
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamwreck.checker.check import Check
from streamwreck.checker.producer import Written, produce
from streamwreck.cli.main import main
from streamwreck.core.aws import wait_stream_active
from streamwreck.core.ledger import Ledger, open_ledger
from streamwreck.core.records import RecordId
from streamwreck.core.settings import LedgerSettings, load_settings
from streamwreck.local import processes
from streamwreck.local.processes import Service

STREAMWRECK = str(Path(sys.executable).with_name("streamwreck"))
HALF = 2**127


@pytest.fixture
def kinesis(aws_env: dict[str, str]) -> Any:
    return boto3.client("kinesis")


@pytest.fixture
def ledger(memcached: Service) -> Iterator[Ledger]:
    the_ledger = open_ledger(load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{memcached.port}"))
    try:
        # A record that arrived within a second of memcached's start is rightly `unknown`: begin after that second.
        started = the_ledger.health().started_at
        assert started is not None
        while time.time() < started.timestamp() + 2:
            time.sleep(0.05)
        yield the_ledger
    finally:
        the_ledger.close()


def create_stream(kinesis: Any, name: str, shards: int) -> None:
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    wait_stream_active(kinesis, name)


def ids(stream: str, records: Iterable[Written]) -> list[RecordId]:
    return [RecordId(stream, r.shard_id, r.sequence_number, r.sub_sequence_number) for r in records]


def process(ledger: Ledger, stream: str, records: Iterable[Written], event: str | None = None) -> None:
    """What the consumer + recorder would leave behind: one processed event naming these records."""
    ledger.record(ids(stream, records), event or uuid.uuid4().hex, int(time.time()))


def check(api: Service, stream: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """The command in process. No --settle wait (these tests leave no recorder lag) unless ``args`` set one."""
    code = main(["check", "--stream", stream, "--endpoint", api.url, "--settle", "0", *args])
    out, err = capsys.readouterr()
    return code, out, err


def check_json(
    api: Service, stream: str, tmp_path: Path, *args: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, dict[str, Any]]:
    report = tmp_path / f"report-{uuid.uuid4().hex[:6]}.json"
    code, out, _ = check(api, stream, "--format", "json", "--output", str(report), *args, capsys=capsys)
    assert out == ""  # the report went to the file
    return code, json.loads(report.read_text())


def keys(records: Iterable[Any]) -> set[tuple[str, str, int]]:
    result = set()
    for r in records:
        if isinstance(r, dict):
            result.add((r["shard_id"], r["sequence_number"], r["sub_sequence_number"]))
        else:
            result.add((r.shard_id, r.sequence_number, r.sub_sequence_number))
    return result


def by_status(document: dict[str, Any], status: str) -> set[tuple[str, str, int]]:
    return keys(r for r in document["records"] if r["status"] == status)


def test_multi_shard_stream_names_exactly_the_unprocessed_records(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stream(kinesis, unique, 4)
    written = produce(kinesis, unique, 400).records
    shard0 = [r for r in written if r.shard_id == "shardId-000000000000"]
    missing = [shard0[10], shard0[11], written[-1] if written[-1].shard_id != shard0[0].shard_id else written[-2]]
    process(ledger, unique, [r for r in written if r not in missing])

    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", "--batch-size", "64", capsys=capsys)

    assert code == 1 and document["verdict"] == "gaps"
    assert document["counts"] == {
        "checked": 400,
        "processed": 397,
        "lost": 3,
        "in_flight": 0,
        "duplicate": 0,
        "unknown": 0,
    }
    assert by_status(document, "lost") == keys(missing)
    assert [r["count"] for r in document["lost_ranges"]] == [2, 1]  # two records read one after the other: one range
    assert document["lost_ranges"][0]["first"]["sequence_number"] == shard0[10].sequence_number
    assert document["lost_ranges"][0]["last"]["sequence_number"] == shard0[11].sequence_number
    per_shard = {s["shard_id"]: s["checked"] for s in document["shards"]}
    assert per_shard == {shard: sum(r.shard_id == shard for r in written) for shard in per_shard}
    assert len(per_shard) == 4 and all(s["ended"] == "caught_up" for s in document["shards"])
    lost = next(r for r in document["records"] if r["sequence_number"] == shard0[10].sequence_number)
    assert lost["partition_key"] == shard0[10].partition_key and lost["approximate_arrival_timestamp"].endswith("Z")

    code, out, _ = check(api_server, unique, "--grace", "0", capsys=capsys)  # the table, on stdout
    assert code == 1
    assert "GAPS (exit 1)" in out and "Lost records (3, in 2 ranges)" in out
    assert f"{shard0[10].sequence_number}/0" in out


def test_split_and_merge_parents_are_read_before_children(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stream(kinesis, unique, 2)
    written = produce(kinesis, unique, 60).records
    kinesis.split_shard(StreamName=unique, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(HALF // 2))
    wait_stream_active(kinesis, unique)
    written += produce(kinesis, unique, 60).records  # into 2 (low half of 0), 3 (high half of 0) and 1
    kinesis.merge_shards(
        StreamName=unique, ShardToMerge="shardId-000000000003", AdjacentShardToMerge="shardId-000000000001"
    )
    wait_stream_active(kinesis, unique)
    written += produce(kinesis, unique, 60).records  # into 2 and 4
    shards = {r.shard_id for r in written}
    assert shards == {f"shardId-00000000000{n}" for n in range(5)}
    missing = [next(r for r in written if r.shard_id == shard) for shard in sorted(shards)]
    process(ledger, unique, [r for r in written if r not in missing])

    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", "--concurrency", "4", capsys=capsys)

    assert code == 1
    assert document["counts"]["checked"] == 180 and document["counts"]["lost"] == 5
    assert by_status(document, "lost") == keys(missing)
    report = {s["shard_id"]: s for s in document["shards"]}
    assert report["shardId-000000000002"]["parent_shard_ids"] == ["shardId-000000000000"]
    assert sorted(report["shardId-000000000004"]["parent_shard_ids"]) == [
        "shardId-000000000001",
        "shardId-000000000003",
    ]
    for shard_id in ("shardId-000000000000", "shardId-000000000001", "shardId-000000000003"):
        assert report[shard_id]["state"] == "closed" and report[shard_id]["ended"] == "shard_end"
    for shard in report.values():
        assert shard["checked"] == sum(r.shard_id == shard["shard_id"] for r in written)
        for parent in shard["parent_shard_ids"]:
            assert report[parent]["read_finished_at"] <= shard["read_started_at"], (parent, shard["shard_id"])
    order = [s["shard_id"] for s in document["shards"]]
    assert order.index("shardId-000000000003") < order.index("shardId-000000000004")


def test_one_lost_sub_record_among_aggregated_ones(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stream(kinesis, unique, 2)
    produced = produce(kinesis, unique, 120, aggregate=True, per_aggregate=12)
    written = produced.records
    assert produced.kinesis_records < 20 and max(r.sub_sequence_number for r in written) == 11
    victim = next(r for r in written if r.sub_sequence_number == 5)
    process(ledger, unique, [r for r in written if r != victim])

    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", capsys=capsys)

    assert code == 1
    assert document["counts"]["checked"] == 120 and document["counts"]["processed"] == 119
    assert by_status(document, "lost") == keys([victim])
    lost = document["records"][0]
    assert lost["sub_sequence_number"] == 5 and lost["partition_key"] == victim.partition_key
    assert sum(s["kinesis_records"] for s in document["shards"]) == produced.kinesis_records


def kcl_lease_table(dynamodb: Any, name: str) -> None:
    """A lease table as KCL 3 creates it: leaseKey hash key, on-demand, the lease-owner index."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[
            {"AttributeName": "leaseKey", "AttributeType": "S"},
            {"AttributeName": "leaseOwner", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        GlobalSecondaryIndexes=[
            {
                "IndexName": "LeaseOwnerToLeaseKeyIndex",
                "KeySchema": [
                    {"AttributeName": "leaseOwner", "KeyType": "HASH"},
                    {"AttributeName": "leaseKey", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    )


def listing(kinesis: Any, stream: str) -> dict[str, dict[str, Any]]:
    return {shard["ShardId"]: shard for shard in kinesis.list_shards(StreamName=stream)["Shards"]}


def put_lease(dynamodb: Any, table: str, shard: dict[str, Any], checkpoint: str, sub: int = 0) -> None:
    """A lease as the KCL writes it for ``shard`` (as ListShards describes it): its parents and hash range too."""
    item = {
        "leaseKey": {"S": shard["ShardId"]},
        "leaseOwner": {"S": "worker-a"},
        "leaseCounter": {"N": "42"},
        "checkpoint": {"S": checkpoint},
        "checkpointSubSequenceNumber": {"N": str(sub)},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "startingHashKey": {"S": shard["HashKeyRange"]["StartingHashKey"]},
        "endingHashKey": {"S": shard["HashKeyRange"]["EndingHashKey"]},
    }
    parents = [shard[name] for name in ("ParentShardId", "AdjacentParentShardId") if shard.get(name)]
    if parents:
        item["parentShardId"] = {"SS": parents}
    dynamodb.put_item(TableName=table, Item=item)


def test_records_beyond_the_consumers_checkpoint_are_in_flight(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stream(kinesis, unique, 5)
    written = produce(kinesis, unique, 200).records
    shard = {n: [r for r in written if r.shard_id == f"shardId-00000000000{n}"] for n in range(5)}
    assert all(len(records) > 12 for records in shard.values())
    shards = listing(kinesis, unique)
    dynamodb = boto3.client("dynamodb")
    kcl_lease_table(dynamodb, unique)
    # shard 0: checkpointed at its 10th record; the 5th was skipped, the rest not reached yet
    put_lease(dynamodb, unique, shards["shardId-000000000000"], shard[0][9].sequence_number)
    process(ledger, unique, [r for r in shard[0][:10] if r != shard[0][4]])
    # shard 1: leased, nothing checkpointed yet (TRIM_HORIZON); nothing processed
    put_lease(dynamodb, unique, shards["shardId-000000000001"], "TRIM_HORIZON")
    # shard 2: checkpointed at its last record; one record skipped
    put_lease(dynamodb, unique, shards["shardId-000000000002"], shard[2][-1].sequence_number)
    process(ledger, unique, shard[2][1:])
    # shard 3: leased at LATEST (a consumer started at the tip): its records came before it, or it has not
    # checkpointed them yet - no telling which
    put_lease(dynamodb, unique, shards["shardId-000000000003"], "LATEST")
    # shard 4: no lease at all, and no parent or sibling with one: nothing says the consumer will come
    # (nothing processed on 3 and 4: without the lease table they would be lost)

    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", "--kcl-app", unique, capsys=capsys)

    assert code == 1
    assert by_status(document, "lost") == keys([shard[0][4], shard[2][0]])
    assert by_status(document, "in_flight") == keys(shard[0][10:] + shard[1])
    assert by_status(document, "unknown") == keys(shard[3] + shard[4])
    reasons = {(r["shard_id"][-1], r["status"], r["reason"]) for r in document["records"] if r["status"] != "lost"}
    assert reasons == {
        ("0", "in_flight", "beyond the consumer's checkpoint"),
        ("1", "in_flight", "consumer's lease is at trim_horizon"),
        (
            "3",
            "unknown",
            "consumer's lease is still at LATEST: written before the consumer started (never processed) or not "
            "checkpointed yet, which cannot be told apart",
        ),
        ("4", "unknown", "its shard has no lease, nor has any parent or sibling of it"),
    }
    checkpoints = {s["shard_id"]: s["checkpoint"] for s in document["shards"]}
    assert checkpoints["shardId-000000000000"] == f"{shard[0][9].sequence_number}/0"
    assert checkpoints["shardId-000000000001"] == "trim_horizon"
    assert checkpoints["shardId-000000000003"] == "latest" and checkpoints["shardId-000000000004"] == "not_leased"

    # Without the lease table the same evidence can only say "lost" for everything not in the ledger.
    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", capsys=capsys)
    assert code == 1
    assert document["counts"]["lost"] == 2 + len(shard[0][10:]) + len(shard[1]) + len(shard[3]) + len(shard[4])

    code, out, err = check(api_server, unique, "--kcl-app", f"{unique}-nope", capsys=capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"the KCL lease table '{unique}-nope' does not exist" in err


def test_a_lease_table_that_is_not_this_streams_consumers_is_an_error(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stream(kinesis, unique, 2)
    produce(kinesis, unique, 20)  # none of them in the ledger
    dynamodb = boto3.client("dynamodb")
    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", capsys=capsys)
    assert code == 1 and document["counts"]["lost"] == 20

    # an existing table with no lease in it (another application, or a consumer that never started)
    empty = f"{unique}-empty"
    kcl_lease_table(dynamodb, empty)
    code, out, err = check(api_server, unique, "--grace", "0", "--kcl-app", empty, capsys=capsys)
    assert (code, out) == (2, "")
    assert err == (
        f"streamwreck check: error: the lease table '{empty}' has no lease for any shard of stream '{unique}' (it is "
        "empty): is --kcl-app the application that consumes this stream, and has it started?\n"
    )

    # the consumer of another stream: its lease keys are shard ids too, but its shard covers other hash keys
    other = f"{unique}-other"
    create_stream(kinesis, other, 1)
    foreign = f"{unique}-foreign"
    kcl_lease_table(dynamodb, foreign)
    put_lease(dynamodb, foreign, listing(kinesis, other)["shardId-000000000000"], "TRIM_HORIZON")
    code, out, err = check(api_server, unique, "--grace", "0", "--kcl-app", foreign, capsys=capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert (
        f"the lease table '{foreign}' does not describe stream '{unique}': shardId-000000000000: its lease covers"
        in err
    )

    # ... or names shards this stream does not have
    put_lease(dynamodb, empty, listing(kinesis, unique)["shardId-000000000000"], "TRIM_HORIZON")
    put_lease(
        dynamodb, empty, {**listing(kinesis, unique)["shardId-000000000001"], "ShardId": "shardId-000000000007"}, "7"
    )
    code, _, err = check(api_server, unique, "--grace", "0", "--kcl-app", empty, capsys=capsys)
    assert code == 2 and "leases shardId-000000000007, which stream" in err and err.count("\n") == 1


def test_a_child_shard_not_leased_yet_is_in_flight_while_its_parent_is_being_read(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stream(kinesis, unique, 1)
    before = produce(kinesis, unique, 20).records
    kinesis.split_shard(StreamName=unique, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(HALF))
    wait_stream_active(kinesis, unique)
    after = produce(kinesis, unique, 20).records
    assert {r.shard_id for r in after} == {"shardId-000000000001", "shardId-000000000002"}
    dynamodb = boto3.client("dynamodb")
    kcl_lease_table(dynamodb, unique)
    # the consumer is halfway through the closed parent; the KCL leases the children once the parent ends
    put_lease(dynamodb, unique, listing(kinesis, unique)["shardId-000000000000"], before[9].sequence_number)
    process(ledger, unique, before[:10])

    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", "--kcl-app", unique, capsys=capsys)

    assert code == 0 and document["verdict"] == "clean"
    assert by_status(document, "in_flight") == keys(before[10:] + after)
    children = {r["reason"] for r in document["records"] if r["shard_id"] != "shardId-000000000000"}
    assert children == {"no lease on its shard yet, but a parent's or sibling's lease shows the consumer coming"}


def test_a_record_recorded_while_the_check_settles_is_processed(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The processor checkpoints after publishing; the event still has to go through SNS, SQS and the recorder.
    A record behind the checkpoint that is not in the ledger yet is looked at again --settle seconds after the
    checkpoints were read: recorded in between, it is processed."""
    import streamwreck.checker.check

    create_stream(kinesis, unique, 1)
    written = produce(kinesis, unique, 20).records
    dynamodb = boto3.client("dynamodb")
    kcl_lease_table(dynamodb, unique)
    put_lease(dynamodb, unique, listing(kinesis, unique)["shardId-000000000000"], written[-1].sequence_number)
    process(ledger, unique, written[:-1])  # the last record's event is still on its way to the ledger
    late = written[-1]
    check = Check(stream=unique, endpoint=api_server.url, grace=0, settle=2.0, kcl_app=unique)
    settle_until = streamwreck.checker.check.settle_until
    seen: list[list[str]] = []

    def recorder_catches_up_while_settling(moment: float) -> None:
        # The first look is over and found the late record missing; the recorder stores it as the wait begins
        # (at whatever time that is on a busy machine), and the second look must see it.
        assert check.tally is not None
        seen.append([finding.record.sequence_number for finding in check.tally.lost()])
        process(ledger, unique, [late])
        settle_until(moment)

    monkeypatch.setattr(streamwreck.checker.check, "settle_until", recorder_catches_up_while_settling)
    started = time.monotonic()
    document = check.run()
    assert seen == [[late.sequence_number]]
    assert document["counts"]["processed"] == 20 and document["counts"]["lost"] == 0
    assert document["options"]["settle_seconds"] == 2.0
    assert time.monotonic() - started >= 2.0  # the second look waited for the settle time


def test_new_records_within_the_grace_are_in_flight(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stream(kinesis, unique, 1)
    written = produce(kinesis, unique, 30).records
    process(ledger, unique, written[:20])

    code, document = check_json(api_server, unique, tmp_path, capsys=capsys)  # default --grace 60
    assert code == 0 and document["verdict"] == "clean"
    assert by_status(document, "in_flight") == keys(written[20:])
    assert all("within the grace period" in r["reason"] for r in document["records"])

    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", capsys=capsys)
    assert code == 1 and by_status(document, "lost") == keys(written[20:])


def test_a_record_processed_twice_is_a_duplicate(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stream(kinesis, unique, 1)
    written = produce(kinesis, unique, 10).records
    process(ledger, unique, written)
    process(ledger, unique, written[3:4])  # a second event names record 3 again

    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", capsys=capsys)
    assert code == 0 and document["verdict"] == "clean"
    assert document["counts"]["duplicate"] == 1 and document["counts"]["processed"] == 9
    assert document["records"] == [
        {
            "shard_id": written[3].shard_id,
            "sequence_number": written[3].sequence_number,
            "sub_sequence_number": 0,
            "status": "duplicate",
            "reason": "processed 2 times",
            "partition_key": written[3].partition_key,
            "approximate_arrival_timestamp": document["records"][0]["approximate_arrival_timestamp"],
            "count": 2,
        }
    ]
    code, _ = check_json(api_server, unique, tmp_path, "--grace", "0", "--fail-on-duplicates", capsys=capsys)
    assert code == 1


def test_export_and_redrive_the_lost_records(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stream(kinesis, unique, 2)
    create_stream(kinesis, f"{unique}-redrive", 1)
    written = produce(kinesis, unique, 20).records + produce(kinesis, unique, 20, aggregate=True).records
    missing = [written[2], written[3], next(r for r in written if r.sub_sequence_number == 2)]
    process(ledger, unique, [r for r in written if r not in missing])
    export = tmp_path / "lost.jsonl"

    code, _, err = check(
        api_server,
        unique,
        "--grace",
        "0",
        "--quiet",
        "--export",
        str(export),
        "--redrive-to",
        f"{unique}-redrive",
        capsys=capsys,
    )

    assert code == 1 and err == ""  # --quiet: nothing on stderr
    lines = [json.loads(line) for line in export.read_text().splitlines()]
    assert keys(lines) == keys(missing)
    by_key = {(r.shard_id, r.sequence_number, r.sub_sequence_number): r for r in missing}
    for line in lines:
        original = by_key[(line["shard_id"], line["sequence_number"], line["sub_sequence_number"])]
        assert base64.b64decode(line["data"]) == original.data
        assert line["partition_key"] == original.partition_key and line["stream"] == unique
    target = f"{unique}-redrive"
    iterator = kinesis.get_shard_iterator(
        StreamName=target, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    redriven = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert sorted((r["PartitionKey"], r["Data"]) for r in redriven) == sorted(
        (r.partition_key, r.data) for r in missing
    )


def test_since_and_until_bound_the_records_checked(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stream(kinesis, unique, 1)
    before = produce(kinesis, unique, 10).records
    boundary = int(time.time()) + 1  # kinesis-local resolves timestamps to the second
    while time.time() < boundary + 0.2:
        time.sleep(0.02)
    after = produce(kinesis, unique, 15).records
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(boundary))

    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", "--since", at, capsys=capsys)
    assert code == 1 and by_status(document, "lost") == keys(after)
    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", "--until", at, capsys=capsys)
    assert code == 1 and by_status(document, "lost") == keys(before)
    assert document["shards"][0]["ended"] == "until"


def test_usage_and_infrastructure_errors_are_one_line(
    kinesis: Any, api_server: Service, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = check(api_server, f"{unique}-missing", capsys=capsys)
    assert (code, out) == (2, "")
    assert err == f"streamwreck check: error: stream '{unique}-missing' not found (while listing the shards of " + (
        f"'{unique}-missing')\n"
    )
    create_stream(kinesis, unique, 1)
    code, _, err = check(api_server, unique, "--shard", "shardId-000000000009", capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "has no shard 'shardId-000000000009'" in err


def test_api_down_exits_2_with_one_line(aws_env: dict[str, str], kinesis: Any, unique: str) -> None:
    create_stream(kinesis, unique, 1)
    produce(kinesis, unique, 5)
    nobody = f"http://127.0.0.1:{processes.free_port()}"
    result = subprocess.run(
        [STREAMWRECK, "check", "--stream", unique, "--endpoint", nobody],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"streamwreck check: error: the reconcile API at {nobody} is unreachable")


def test_no_credentials_exits_2_with_one_line(
    aws_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert main(["check", "--stream", "anything"]) == 2
    assert capsys.readouterr().err.startswith("streamwreck check: error: no AWS credentials found")


def test_progress_per_shard_on_a_terminal_only(
    aws_env: dict[str, str], kinesis: Any, api_server: Service, unique: str
) -> None:
    create_stream(kinesis, unique, 2)
    produce(kinesis, unique, 40)
    argv = [STREAMWRECK, "check", "--stream", unique, "--endpoint", api_server.url, "--format", "json"]
    controller, terminal = pty.openpty()
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=terminal, env=os.environ.copy()) as process:
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other end closed
                break
            if not chunk:
                break
            shown += chunk
        report = json.loads(process.stdout.read() if process.stdout else b"")
        assert process.wait(timeout=60) == 0
    os.close(controller)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode(errors="replace"))  # without colours and moves
    for shard in ("shardId-000000000000", "shardId-000000000001"):
        assert re.search(rf"{shard}\s+\d+ records.*caught_up", text), text[-2000:]
    assert f"{unique} reconciled" in text and "40" in text
    assert report["counts"]["checked"] == 40  # stdout carries only the report

    # not a terminal: nothing but the one-line summary
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stderr.startswith(f"{unique}: CLEAN (exit 0)")
    assert result.stderr.count("\n") == 1


def test_multi_stream_leases_of_an_earlier_stream_of_the_same_name_are_ignored(
    kinesis: Any,
    ledger: Ledger,
    api_server: Service,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stream(kinesis, unique, 1)
    written = produce(kinesis, unique, 20).records
    created = kinesis.describe_stream_summary(StreamName=unique)["StreamDescriptionSummary"]["StreamCreationTimestamp"]
    epoch = int(created.timestamp())
    dynamodb = boto3.client("dynamodb")
    kcl_lease_table(dynamodb, unique)
    for stream_epoch, checkpoint in ((epoch - 86400, "SHARD_END"), (epoch, written[9].sequence_number)):
        dynamodb.put_item(
            TableName=unique,
            Item={
                "leaseKey": {"S": f"123456789012:{unique}:{stream_epoch}:shardId-000000000000"},
                "streamName": {"S": f"123456789012:{unique}:{stream_epoch}"},
                "shardId": {"S": "shardId-000000000000"},
                "leaseOwner": {"S": "worker-a"},
                "leaseCounter": {"N": "3"},
                "checkpoint": {"S": checkpoint},
                "checkpointSubSequenceNumber": {"N": "0"},
            },
        )
    process(ledger, unique, written[:10])

    code, document = check_json(api_server, unique, tmp_path, "--grace", "0", "--kcl-app", unique, capsys=capsys)

    assert code == 0 and by_status(document, "in_flight") == keys(written[10:])  # this stream's checkpoint
    assert document["shards"][0]["checkpoint"] == f"{written[9].sequence_number}/0"

    # the consumer has not started on this stream yet: only the earlier stream's leases are there
    dynamodb.delete_item(
        TableName=unique, Key={"leaseKey": {"S": f"123456789012:{unique}:{epoch}:shardId-000000000000"}}
    )
    code, out, err = check(api_server, unique, "--grace", "0", "--kcl-app", unique, capsys=capsys)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert f"created at epoch {epoch - 86400}, but this stream was created at {epoch}" in err
