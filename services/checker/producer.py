"""Writing records to a stream, plain or KPL-aggregated, and knowing each one's shard and numbers afterwards.

Used by ``streamwreck produce``, the tests and the benchmarks. Aggregated records are packed per shard, as the KPL
does: the KCL drops user records that are not in the hash range of the shard they were read from.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from streamwreck.core.clock import iso

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

MAX_ENTRIES = 500


class Written(NamedTuple):
    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    data: bytes


@dataclass
class Produced:
    stream: str
    run: str
    records: list[Written] = field(default_factory=list)
    kinesis_records: int = 0
    seconds: float = 0.0

    def by_shard(self) -> dict[str, list[Written]]:
        shards: dict[str, list[Written]] = defaultdict(list)
        for record in self.records:
            shards[record.shard_id].append(record)
        return dict(sorted(shards.items()))


def payloads(count: int, run: str, size: int) -> list[tuple[str, bytes]]:
    at = iso(time.time(), "seconds")
    records = []
    for n in range(count):
        data = json.dumps({"n": n, "run": run, "at": at}).encode()
        records.append((f"{run}-{n}", data.ljust(size, b" ") if len(data) < size else data))
    return records


def produce(
    kinesis: KinesisClient,
    stream: str,
    count: int,
    *,
    aggregate: bool = False,
    per_aggregate: int = 25,
    rate: float | None = None,
    size: int = 64,
    run: str | None = None,
    records: Sequence[tuple[str, bytes]] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Produced:
    """Write ``count`` records (or the given (partition key, data) pairs); returns each with its shard and numbers."""
    from streamwreck.checker.aggregation import aggregate as pack
    from streamwreck.checker.aggregation import hash_key
    from streamwreck.checker.reading import list_shards
    from streamwreck.checker.remediation import batches, put_all

    run = run or uuid.uuid4().hex[:8]
    users = list(records) if records is not None else payloads(count, run, size)
    produced = Produced(stream=stream, run=run)
    started = time.monotonic()
    # Each entry to put, with the user records it carries.
    entries: list[tuple[dict[str, Any], list[tuple[str, bytes]]]] = []
    if aggregate:
        open_shards = [shard for shard in list_shards(kinesis, stream) if not shard.closed]
        groups: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        for key, data in users:
            hashed = hash_key(key)
            owner = next((s.shard_id for s in open_shards if s.owns(hashed)), open_shards[0].shard_id)
            groups[owner].append((key, data))
        for group in groups.values():
            start = 0
            for packed in pack(group, per_aggregate):
                entry: dict[str, Any] = {"Data": packed.data, "PartitionKey": packed.partition_key}
                if packed.explicit_hash_key:
                    entry["ExplicitHashKey"] = packed.explicit_hash_key
                entries.append((entry, group[start : start + packed.user_records]))
                start += packed.user_records
    else:
        entries = [({"Data": data, "PartitionKey": key}, [(key, data)]) for key, data in users]
    sent = 0
    index = 0
    per_request = MAX_ENTRIES
    if rate:  # about five requests a second, so that the rate holds within a second too
        per_request = max(1, min(MAX_ENTRIES, int(rate / 5 / (per_aggregate if aggregate else 1))))
    for batch in batches([entry for entry, _ in entries], per_request):
        results = put_all(kinesis, stream, batch, sleep=sleep)
        for result in results:
            carried = entries[index][1]
            index += 1
            produced.kinesis_records += 1
            for sub, (key, data) in enumerate(carried):
                produced.records.append(
                    Written(result["ShardId"], result["SequenceNumber"], sub if aggregate else 0, key, data)
                )
            sent += len(carried)
        if rate:
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                sleep(ahead)
    produced.seconds = time.monotonic() - started
    return produced
