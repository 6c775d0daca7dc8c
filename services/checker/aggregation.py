"""KPL aggregation, both ways, through the aws-kinesis-agg package; and the hash-key rule that routes records.

One Kinesis record written by the KPL (or `streamwreck produce --aggregate`) carries many user records under one
sequence number. Consumers (the KCL) hand out each user record with the Kinesis record's sequence number and its
index inside the aggregate as the sub-sequence number; a record that is not aggregated has sub-sequence number 0.
The checker numbers them the same way, so its identities match the ones the processor reports.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, NamedTuple

MAGIC = b"\xf3\x89\x9a\xc2"  # the KPL format's first four bytes (aws_kinesis_agg.MAGIC)


class SubRecord(NamedTuple):
    """A user record inside one Kinesis record."""

    sub_sequence_number: int
    partition_key: str
    explicit_hash_key: str | None
    data: bytes


class Aggregate(NamedTuple):
    """One Kinesis record to put, holding ``count`` user records."""

    partition_key: str
    explicit_hash_key: str | None
    data: bytes
    user_records: int


def hash_key(partition_key: str, explicit_hash_key: str | None = None) -> int:
    """The 128-bit hash key Kinesis routes a record by: the explicit one, else MD5 of the partition key."""
    if explicit_hash_key:
        return int(explicit_hash_key)
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


def deaggregate(sequence_number: str, partition_key: str, data: bytes, arrival: datetime) -> list[SubRecord]:
    """The user records of one Kinesis record (itself, as sub-record 0, when it is not a valid aggregate)."""
    if not data.startswith(MAGIC):  # the cheap test first: most streams carry no aggregates
        return [SubRecord(0, partition_key, None, data)]
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    raw: dict[str, Any] = {
        "SequenceNumber": sequence_number,
        "PartitionKey": partition_key,
        "ApproximateArrivalTimestamp": arrival,
        "Data": data,
    }
    subs = []
    for user in iter_deaggregate_records([raw], data_format="Boto3"):
        record: dict[str, Any] = user["kinesis"]
        if not record.get("aggregated"):  # magic bytes but a bad digest or body: the KCL passes it on whole
            return [SubRecord(0, partition_key, None, data)]
        subs.append(
            SubRecord(
                int(record["subSequenceNumber"]),
                str(record["partitionKey"]),
                record.get("explicitHashKey") or None,
                base64.b64decode(record["data"]),
            )
        )
    return subs


def aggregate(records: Iterable[tuple[str, bytes]], max_user_records: int) -> Iterator[Aggregate]:
    """Pack (partition key, data) pairs into KPL aggregates of at most ``max_user_records`` (and 1 MB) each.

    The aggregate is routed by its first user record's partition key: give it user records that belong to one shard
    (the KCL drops user records whose hash key lies outside the shard they were read from).
    """
    from aws_kinesis_agg.aggregator import AggRecord

    if max_user_records < 1:
        raise ValueError("max_user_records must be at least 1")
    current = AggRecord()
    for partition_key, data in records:
        if current.get_num_user_records() >= max_user_records or not current.add_user_record(partition_key, data):
            yield _contents(current)
            current = AggRecord()
            current.add_user_record(partition_key, data)
    if current.get_num_user_records():
        yield _contents(current)


def _contents(record: Any) -> Aggregate:
    partition_key, explicit_hash_key, data = record.get_contents()
    return Aggregate(str(partition_key), explicit_hash_key or None, bytes(data), record.get_num_user_records())
