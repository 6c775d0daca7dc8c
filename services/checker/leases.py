"""The KCL application's lease table (DynamoDB, named after the application): where the consumer stands per shard.

KCL 2.x and 3.x keep one item per shard lease. Single-stream applications key it by the shard id; multi-stream ones
by ``account:stream:creation-epoch:shard-id``. ``checkpoint`` holds a sequence number or one of ``TRIM_HORIZON``,
``LATEST``, ``AT_TIMESTAMP`` (nothing checkpointed yet) or ``SHARD_END``; ``checkpointSubSequenceNumber`` the
sub-sequence number of an aggregated record; ``parentShardId`` (a string set) and ``startingHashKey`` /
``endingHashKey`` describe the shard as the KCL saw it.

A table is only evidence about a stream if it really is that stream's consumer's. A single-stream key is a bare
shard id, which every stream has (``shardId-000000000000``), so the leases are checked against the listing: each
must name a shard of the stream (a finished one may have outlived the shard's retention) with the same parents and
hash range where the lease records them. A table with no lease for any shard of the stream is an error, not a
consumer that has not started: nothing in it can vouch for any record.

Shards without a lease: the KCL deletes a finished parent's lease once its children have started, so a shard
without a lease is finished if a descendant has one. Otherwise the KCL creates a child's lease when its parents
reach their end, so a child without a lease while a parent or a sibling has one is pending (the consumer is
working towards it); a shard with no lease and no leased relative is something the table cannot explain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamwreck.checker.reading import Shard
from streamwreck.checker.verdict import Checkpoint, LeasePosition
from streamwreck.core.aws import AWS_ERRORS, error_code, translate
from streamwreck.core.errors import AwsError, LeaseTableError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient

_SPECIAL = {
    "SHARD_END": LeasePosition.SHARD_END,
    "TRIM_HORIZON": LeasePosition.TRIM_HORIZON,
    "AT_TIMESTAMP": LeasePosition.AT_TIMESTAMP,
    "LATEST": LeasePosition.LATEST,
}
EPOCH_SLACK = 1  # seconds: a creation epoch computed from StreamCreationTimestamp may be rounded either way


def read_leases(dynamodb: DynamoDBClient, table: str) -> list[dict[str, Any]]:
    """Every item of the lease table (strongly consistent scan, paginated)."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    try:
        while True:
            page = dynamodb.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    except AWS_ERRORS as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise AwsError(f"the KCL lease table {table!r} does not exist: is --kcl-app the application name?") from exc
        raise translate(exc, f"reading the lease table {table!r}") from exc


def creation_epoch(kinesis: KinesisClient, stream: str) -> int:
    """The stream's creation time in epoch seconds, as multi-stream lease keys carry it."""
    try:
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    except AWS_ERRORS as exc:
        raise translate(exc, f"describing {stream!r}", not_found=f"stream {stream!r}") from exc
    return int(summary["StreamCreationTimestamp"].timestamp())


@dataclass(frozen=True)
class LeaseKey:
    shard_id: str
    stream: str | None = None  # multi-stream keys only
    epoch: int | None = None  # multi-stream keys only


def parse_key(lease_key: str) -> LeaseKey | None:
    """A lease key: a bare shard id (single-stream) or ``account:stream:epoch:shard`` (multi-stream); else None."""
    parts = lease_key.split(":")
    if len(parts) == 1 and lease_key:
        return LeaseKey(lease_key)
    if len(parts) == 4 and parts[2].isdigit() and parts[1] and parts[3]:
        return LeaseKey(parts[3], parts[1], int(parts[2]))
    return None


def lease_shard(lease_key: str, stream: str) -> str | None:
    """The shard a lease key names, if it may belong to ``stream`` (single-stream keys may belong to any)."""
    key = parse_key(lease_key)
    if key is None or (key.stream is not None and key.stream != stream):
        return None
    return key.shard_id


def multi_stream(items: Iterable[Mapping[str, Any]], stream: str) -> bool:
    """True when the table holds multi-stream leases of ``stream`` (then its creation epoch picks among them)."""
    for item in items:
        key = parse_key(_string(item, "leaseKey") or "")
        if key is not None and key.stream == stream:
            return True
    return False


def parse_checkpoint(item: Mapping[str, Any]) -> Checkpoint:
    """A lease item (DynamoDB attribute values) to the consumer's position on its shard."""
    raw = str(item.get("checkpoint", {}).get("S", "TRIM_HORIZON"))
    sub = int(item.get("checkpointSubSequenceNumber", {}).get("N", "0"))
    if raw in _SPECIAL:
        return Checkpoint(_SPECIAL[raw])
    if raw.isdigit():
        return Checkpoint(LeasePosition.SEQUENCE, raw, sub)
    raise AwsError(f"lease {item.get('leaseKey', {}).get('S')!r} has a checkpoint this tool does not know: {raw!r}")


def _string(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    if isinstance(value, Mapping) and isinstance(value.get("S"), str):
        return str(value["S"])
    return None


def _disagreement(item: Mapping[str, Any], shard: Shard) -> str | None:
    """How a single-stream lease contradicts the listed shard of the same id, if it does."""
    parents = item.get("parentShardId", {}).get("SS") if isinstance(item.get("parentShardId"), Mapping) else None
    if parents is not None and set(parents) != set(shard.parent_ids):
        listed = ", ".join(shard.parent_ids) or "none"
        return f"its lease names parents {', '.join(sorted(parents))}, the stream's shard has {listed}"
    start, end = _string(item, "startingHashKey"), _string(item, "endingHashKey")
    if (
        start is not None
        and end is not None
        and (start, end)
        != (
            str(shard.starting_hash_key),
            str(shard.ending_hash_key),
        )
    ):
        return (
            f"its lease covers hash keys {start}..{end}, the stream's shard {shard.starting_hash_key}.."
            f"{shard.ending_hash_key}"
        )
    return None


def _pick_epoch(epochs: set[int], created: int | None) -> int | None:
    """The multi-stream epoch that is this stream's: the one matching its creation, else (unknown creation) the
    newest; None when the leases are all of an earlier stream of the same name."""
    if created is None:
        return max(epochs)
    matching = [epoch for epoch in epochs if abs(epoch - created) <= EPOCH_SLACK]
    return min(matching, key=lambda epoch: abs(epoch - created)) if matching else None


def _by_kind(
    items: Iterable[Mapping[str, Any]], stream: str
) -> tuple[dict[str, Mapping[str, Any]], dict[int, dict[str, Mapping[str, Any]]]]:
    """Single-stream leases by shard id; multi-stream leases of ``stream`` by creation epoch, then shard id."""
    single: dict[str, Mapping[str, Any]] = {}
    multi: dict[int, dict[str, Mapping[str, Any]]] = {}
    for item in items:
        key = parse_key(_string(item, "leaseKey") or "")
        if key is None:
            continue
        if key.stream is None:
            single[key.shard_id] = item
        elif key.stream == stream and key.epoch is not None:
            multi.setdefault(key.epoch, {})[key.shard_id] = item
    return single, multi


def checkpoints(
    items: Iterable[Mapping[str, Any]], stream: str, parents: Mapping[str, Sequence[str]]
) -> dict[str, Checkpoint]:
    """The consumer's position on every shard of ``parents`` (shard id -> its parents' ids), taking the leases as
    they are (the newest multi-stream epoch). The checker uses :func:`verified_checkpoints`."""
    single, multi = _by_kind(items, stream)
    chosen = {**single, **(multi[max(multi)] if multi else {})}
    leased = {shard: parse_checkpoint(item) for shard, item in chosen.items() if shard in parents}
    return positions(leased, parents)


def verified_checkpoints(
    items: Iterable[Mapping[str, Any]],
    stream: str,
    shards: Sequence[Shard],
    table: str,
    created: int | None = None,
) -> dict[str, Checkpoint]:
    """The consumer's position on every listed shard of the stream, from a table checked to be its consumer's.
    ``created``: the stream's creation epoch (seconds), which picks among multi-stream leases of streams that had
    this name.

    Raises LeaseTableError when the table has no lease for any shard of the stream, or a single-stream lease
    contradicts the listing (a shard the stream does not have, other parents, another hash range).
    """
    by_id = {shard.shard_id: shard for shard in shards}
    items = list(items)
    single, multi = _by_kind(items, stream)

    leased_items: dict[str, Mapping[str, Any]] = {}
    if multi:
        epoch = _pick_epoch(set(multi), created)
        if epoch is None:
            raise LeaseTableError(
                f"the lease table {table!r} has leases of stream {stream!r} created at epoch "
                f"{', '.join(str(e) for e in sorted(multi))}, but this stream was created at {created}: they belong "
                "to an earlier stream of that name"
            )
        leased_items = {shard_id: item for shard_id, item in multi[epoch].items() if shard_id in by_id}
    for shard_id, item in single.items():
        shard = by_id.get(shard_id)
        if shard is None:
            if parse_checkpoint(item).position is LeasePosition.SHARD_END:
                continue  # finished, and its shard has since passed the stream's retention
            raise LeaseTableError(
                f"the lease table {table!r} leases {shard_id}, which stream {stream!r} does not have: --kcl-app "
                "names the consumer of another stream"
            )
        problem = _disagreement(item, shard)
        if problem is not None:
            raise LeaseTableError(
                f"the lease table {table!r} does not describe stream {stream!r}: {shard_id}: {problem}; --kcl-app "
                "names the consumer of another stream"
            )
        leased_items[shard_id] = item
    if not leased_items:
        count = len(items)
        held = (
            f"it holds {count} lease{'' if count == 1 else 's'}, none of them on this stream's shards"
            if items
            else "it is empty"
        )
        raise LeaseTableError(
            f"the lease table {table!r} has no lease for any shard of stream {stream!r} ({held}): is --kcl-app the "
            "application that consumes this stream, and has it started?"
        )
    leased = {shard_id: parse_checkpoint(item) for shard_id, item in leased_items.items()}
    return positions(leased, {shard.shard_id: shard.parent_ids for shard in shards})


def positions(leased: Mapping[str, Checkpoint], parents: Mapping[str, Sequence[str]]) -> dict[str, Checkpoint]:
    """Every shard's position from the leases there are (shard id -> its checkpoint) and the family tree."""
    children: dict[str, list[str]] = {shard: [] for shard in parents}
    for shard, shard_parents in parents.items():
        for parent in shard_parents:
            children.setdefault(parent, []).append(shard)

    def lease_among(start: Iterable[str], next_of: Mapping[str, Sequence[str]]) -> bool:
        """Whether a shard reached from ``start`` by following ``next_of`` (children or parents) is leased."""
        stack, seen = list(start), set()
        while stack:
            shard = stack.pop()
            if shard in leased:
                return True
            if shard not in seen:
                seen.add(shard)
                stack.extend(next_of.get(shard, ()))
        return False

    def descendant_leased(shard: str) -> bool:
        return lease_among(children.get(shard, ()), children)

    def relative_leased(shard: str) -> bool:
        """A lease on an ancestor (the consumer is working down to this shard) or on a sibling (a child of the
        same parent: the KCL leased the children of a finished parent, this one's lease is yet to come)."""
        shard_parents = parents.get(shard, ())
        siblings = (sibling for parent in shard_parents for sibling in children.get(parent, ()) if sibling != shard)
        return any(sibling in leased for sibling in siblings) or lease_among(shard_parents, parents)

    result = {}
    for shard in parents:
        if shard in leased:
            result[shard] = leased[shard]
        elif descendant_leased(shard):
            result[shard] = Checkpoint(LeasePosition.DONE)
        elif relative_leased(shard):
            result[shard] = Checkpoint(LeasePosition.AWAITING_LEASE)
        else:
            result[shard] = Checkpoint(LeasePosition.NOT_LEASED)
    return result
