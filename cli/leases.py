"""The KCL application's lease table (DynamoDB, named after the application): where the consumer stands per shard.

KCL 2.x and 3.x keep one item per shard lease. Single-stream applications key it by the shard id; multi-stream ones
by ``account:stream:creation-epoch:shard-id``. ``checkpoint`` holds a sequence number or one of ``TRIM_HORIZON``,
``LATEST``, ``AT_TIMESTAMP`` (nothing checkpointed yet) or ``SHARD_END``; ``checkpointSubSequenceNumber`` the
sub-sequence number of an aggregated record. The KCL deletes a finished parent's lease once its children have
started, so a shard without a lease is finished if a descendant has one, else not reached yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cli.aws import AwsError, error_code, translate
from cli.verdict import Checkpoint, LeasePosition

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_SPECIAL = {
    "SHARD_END": LeasePosition.SHARD_END,
    "TRIM_HORIZON": LeasePosition.TRIM_HORIZON,
    "AT_TIMESTAMP": LeasePosition.AT_TIMESTAMP,
    "LATEST": LeasePosition.LATEST,
}


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
    except Exception as exc:
        if error_code(exc) == "ResourceNotFoundException":
            raise AwsError(f"the KCL lease table {table!r} does not exist: is --kcl-app the application name?") from exc
        raise translate(exc, f"reading the lease table {table!r}") from exc


def lease_shard(lease_key: str, stream: str) -> str | None:
    """The shard a lease key names, if it belongs to ``stream`` (single-stream keys belong to any)."""
    parts = lease_key.split(":")
    if len(parts) == 1:
        return lease_key
    if len(parts) == 4 and parts[1] == stream:
        return parts[3]
    return None


def parse_checkpoint(item: Mapping[str, Any]) -> Checkpoint:
    """A lease item (DynamoDB attribute values) to the consumer's position on its shard."""
    raw = str(item.get("checkpoint", {}).get("S", "TRIM_HORIZON"))
    sub = int(item.get("checkpointSubSequenceNumber", {}).get("N", "0"))
    if raw in _SPECIAL:
        return Checkpoint(_SPECIAL[raw])
    if raw.isdigit():
        return Checkpoint(LeasePosition.SEQUENCE, raw, sub)
    raise AwsError(f"lease {item.get('leaseKey', {}).get('S')!r} has a checkpoint this tool does not know: {raw!r}")


def checkpoints(
    items: Iterable[Mapping[str, Any]], stream: str, parents: Mapping[str, Sequence[str]]
) -> dict[str, Checkpoint]:
    """The consumer's position on every shard of ``parents`` (shard id -> its parents' ids)."""
    leased: dict[str, Checkpoint] = {}
    for item in items:
        key = item.get("leaseKey", {}).get("S")
        shard = lease_shard(key, stream) if key else None
        if shard is not None and shard in parents:
            leased[shard] = parse_checkpoint(item)
    children: dict[str, list[str]] = {shard: [] for shard in parents}
    for shard, shard_parents in parents.items():
        for parent in shard_parents:
            children.setdefault(parent, []).append(shard)

    def descendant_leased(shard: str) -> bool:
        stack, seen = list(children.get(shard, [])), set()
        while stack:
            child = stack.pop()
            if child in leased:
                return True
            if child not in seen:
                seen.add(child)
                stack.extend(children.get(child, []))
        return False

    result = {}
    for shard in parents:
        if shard in leased:
            result[shard] = leased[shard]
        elif descendant_leased(shard):
            result[shard] = Checkpoint(LeasePosition.DONE)
        else:
            result[shard] = Checkpoint(LeasePosition.NOT_LEASED)
    return result
