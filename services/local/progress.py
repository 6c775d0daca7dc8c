"""How far the local stack's consumer has got: which records of the stream are in the ledger, which the demo rule
skipped, and whether every shard's KCL checkpoint has passed its last record.

The rules are pure functions; :class:`LedgerProbe` (the reconcile API) and :func:`read_stream` are thin I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamwreck.core.records import RecordId

API_BATCH = 10_000


def skipped_by_demo_rule(sequence_number: str, skip_every: int) -> bool:
    """The processor's demo rule: skip a record whose sequence number, as an integer, divides by ``skip_every``.
    Every user record of one KPL-aggregated record shares its sequence number, so they are skipped together."""
    return skip_every > 0 and int(sequence_number) % skip_every == 0


@dataclass(frozen=True)
class Progress:
    total: int  # user records in the stream (sub-records of aggregated ones counted one by one)
    skipped: int  # by the demo rule: never recorded
    recorded: int  # of the others, how many the ledger has
    shards: int  # shards that hold records
    checkpointed: int  # of them, how many the consumer has checkpointed past their last record

    @property
    def expected(self) -> int:
        return self.total - self.skipped

    @property
    def done(self) -> bool:
        return self.recorded >= self.expected and self.checkpointed >= self.shards

    def line(self) -> str:
        skipped = f" ({self.skipped} skipped by the demo rule)" if self.skipped else ""
        return (
            f"consumer: {self.recorded}/{self.expected} records in the ledger{skipped},"
            f" {self.checkpointed}/{self.shards} shards checkpointed"
        )


def measure(
    records: Sequence[RecordId],
    unrecorded: Iterable[RecordId],
    checkpointed: Callable[[RecordId], bool],
    skip_every: int,
) -> Progress:
    """Progress of ``records`` (the stream's) given which of them the ledger lacks; ``checkpointed(r)`` says whether
    the consumer's checkpoint on ``r``'s shard is at or past ``r`` (it is asked about each shard's last record)."""
    skipped = {r for r in records if skipped_by_demo_rule(r.sequence_number, skip_every)}
    missing = set(unrecorded) - skipped
    last: dict[str, RecordId] = {}
    for record in records:
        known = last.get(record.shard_id)
        if known is None or _position(record) > _position(known):
            last[record.shard_id] = record
    return Progress(
        total=len(records),
        skipped=len(skipped),
        recorded=len(records) - len(skipped) - len(missing),
        shards=len(last),
        checkpointed=sum(1 for record in last.values() if checkpointed(record)),
    )


def _position(record: RecordId) -> tuple[int, int]:
    return int(record.sequence_number), record.sub_sequence_number


class LedgerProbe:
    """Asks the reconcile API which records have no ledger entry."""

    def __init__(self, api_url: str, timeout: float = 10.0) -> None:
        import httpx

        self._client = httpx.Client(base_url=api_url, timeout=timeout)

    def unrecorded(self, stream: str, records: Sequence[RecordId]) -> set[RecordId]:
        missing: set[RecordId] = set()
        for start in range(0, len(records), API_BATCH):
            batch = records[start : start + API_BATCH]
            body = {
                "stream": stream,
                "records": [
                    {"shard_id": shard, "sequence_number": seq, "sub_sequence_number": sub}
                    for _, shard, seq, sub in batch
                ],
            }
            response = self._client.post("/reconcile", json=body)
            response.raise_for_status()
            for item in response.json()["unprocessed"]:
                missing.add(RecordId(stream, item["shard_id"], item["sequence_number"], item["sub_sequence_number"]))
        return missing

    def close(self) -> None:
        self._client.close()


def user_records(stream: str, shard_id: str, records: Iterable[Mapping[str, Any]]) -> list[RecordId]:
    """The user records in GetRecords output: one per plain record, one per sub-record of a KPL-aggregated one."""
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    ids = []
    for record in iter_deaggregate_records(list(records), data_format="Boto3"):
        kinesis = record["kinesis"]
        ids.append(RecordId(stream, shard_id, kinesis["sequenceNumber"], int(kinesis.get("subSequenceNumber") or 0)))
    return ids


@dataclass
class StreamContents:
    records: list[RecordId]  # every user record, shard by shard in read order
    parents: dict[str, list[str]]  # shard id -> its parent shards' ids (after a split or merge)


def read_stream(kinesis: Any, stream: str) -> StreamContents:
    """Every user record now in the stream, every shard (closed ones to their end, open ones to the tip)."""
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        page = kinesis.list_shards(**kwargs)
        shards += page["Shards"]
        if not page.get("NextToken"):
            break
        kwargs = {"NextToken": page["NextToken"]}
    contents = StreamContents([], {})
    for shard in shards:
        shard_id = shard["ShardId"]
        contents.parents[shard_id] = [
            parent for parent in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if parent
        ]
        iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            contents.records += user_records(stream, shard_id, page["Records"])
            iterator = page.get("NextShardIterator")
            if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                break  # an open shard's tip (a closed one ends with no next iterator)
    return contents
