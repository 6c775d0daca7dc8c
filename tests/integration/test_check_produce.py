"""`streamwreck produce` against kinesis-local: what it prints is what the stream holds, aggregates included."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import pytest

from streamwreck.checker.aggregation import MAGIC, deaggregate, hash_key
from streamwreck.checker.reading import ShardReader, list_shards
from streamwreck.cli.main import main


def read_back(kinesis: Any, stream: str) -> dict[str, list[Any]]:
    return {
        shard.shard_id: [r for page in ShardReader(kinesis, stream, shard).pages() for r in page]
        for shard in list_shards(kinesis, stream)
    }


def test_produce_creates_the_stream_and_prints_every_record(
    aws_env: dict[str, str], unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["produce", "--stream", unique, "--create", "--shards", "3", "--count", "60", "--format", "json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["count"] == 60 and printed["kinesis_records"] == 60
    kinesis = boto3.client("kinesis")
    stored = read_back(kinesis, unique)
    assert len(stored) == 3
    assert {(r["shard_id"], r["sequence_number"], r["partition_key"]) for r in printed["records"]} == {
        (r.shard_id, r.sequence_number, r.partition_key) for records in stored.values() for r in records
    }
    assert all(json.loads(r.data)["run"] == printed["run"] for records in stored.values() for r in records)


def test_aggregated_records_are_grouped_by_the_shard_their_keys_hash_to(
    aws_env: dict[str, str], unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["produce", "--stream", unique, "--create", "--shards", "2", "--count", "50", "--aggregate"])
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote 50 records in ") and " Kinesis records to " in out
    kinesis = boto3.client("kinesis")
    shards = {shard.shard_id: shard for shard in list_shards(kinesis, unique)}
    total = 0
    for shard_id, shard in shards.items():
        iterator = kinesis.get_shard_iterator(StreamName=unique, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")
        raw = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
        for record in raw:
            assert record["Data"].startswith(MAGIC)
            subs = deaggregate(
                record["SequenceNumber"], record["PartitionKey"], record["Data"], record["ApproximateArrivalTimestamp"]
            )
            assert all(shard.owns(hash_key(sub.partition_key)) for sub in subs)  # the KCL keeps every one
            total += len(subs)
    assert total == 50


def test_rate_limits_the_writes(aws_env: dict[str, str], unique: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["produce", "--stream", unique, "--create", "--count", "10"])
    started = time.monotonic()
    assert main(["produce", "--stream", unique, "--count", "30", "--rate", "50"]) == 0
    assert time.monotonic() - started >= 0.55  # 30 records at 50/s: at least 0.6 s
    capsys.readouterr()
