"""What a record processor of the watcher reads from AWS: the audited consumer's position on its shard, and the
stream's retention (how long a lost record can still be replayed).

The position comes from the consumer's lease table (:mod:`streamwreck.checker.leases` parses it). A record processor
reads one item, its shard's lease (GetItem, strongly consistent), every few seconds; only when its shard has no
lease (a child the consumer has not reached, a finished parent whose lease the KCL removed, or a multi-stream
table keyed otherwise) does it scan the table and place the shard in the family tree as ``check`` does
(:func:`streamwreck.checker.leases.checkpoints`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from streamwreck.checker import leases
from streamwreck.checker.reading import list_shards
from streamwreck.checker.verdict import Checkpoint
from streamwreck.core.aws import AWS_ERRORS, error_code, translate
from streamwreck.core.errors import AwsError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient

DEFAULT_RETENTION_HOURS = 24


class ConsumerLeases:
    """The audited consumer's checkpoint on one shard."""

    def __init__(self, dynamodb: DynamoDBClient, kinesis: KinesisClient, table: str, stream: str) -> None:
        self._dynamodb = dynamodb
        self._kinesis = kinesis
        self.table = table
        self.stream = stream
        self._parents: dict[str, tuple[str, ...]] | None = None

    def checkpoint(self, shard_id: str) -> Checkpoint:
        item = self._lease(shard_id)
        if item is not None:
            return leases.parse_checkpoint(item)
        items = leases.read_leases(self._dynamodb, self.table)
        parents = self._family(shard_id)
        return leases.checkpoints(items, self.stream, parents)[shard_id]

    def _lease(self, shard_id: str) -> dict[str, Any] | None:
        try:
            answer = self._dynamodb.get_item(
                TableName=self.table, Key={"leaseKey": {"S": shard_id}}, ConsistentRead=True
            )
        except AWS_ERRORS as exc:
            if error_code(exc) == "ResourceNotFoundException":
                raise AwsError(
                    f"the consumer's lease table {self.table!r} does not exist: is --kcl-app its name?"
                ) from exc
            raise translate(exc, f"reading the lease of {shard_id} in {self.table!r}") from exc
        item = answer.get("Item")
        return dict(item) if item else None

    def _family(self, shard_id: str) -> dict[str, tuple[str, ...]]:
        """Every listed shard's parents; listed again when ``shard_id`` is new to it (a split since)."""
        if self._parents is None or shard_id not in self._parents:
            self._parents = {s.shard_id: s.parent_ids for s in list_shards(self._kinesis, self.stream)}
        if shard_id not in self._parents:
            self._parents[shard_id] = ()
        return self._parents


def retention_seconds(kinesis: KinesisClient, stream: str) -> float:
    """The stream's retention period (DescribeStreamSummary), in seconds."""
    try:
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
    except AWS_ERRORS as exc:
        raise translate(exc, f"describing {stream!r}", not_found=f"stream {stream!r}") from exc
    return float(summary.get("RetentionPeriodHours") or DEFAULT_RETENTION_HOURS) * 3600
