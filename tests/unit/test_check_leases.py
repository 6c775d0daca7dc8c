"""Reading KCL lease items: checkpoints per shard, special positions, multi-stream keys, shards without a lease."""

from __future__ import annotations

from typing import Any

import pytest

from cli.aws import AwsError
from cli.leases import checkpoints, lease_shard, parse_checkpoint
from cli.verdict import Checkpoint, LeasePosition


def lease(key: str, checkpoint: str, sub: int = 0) -> dict[str, Any]:
    return {
        "leaseKey": {"S": key},
        "leaseOwner": {"S": "worker-1"},
        "leaseCounter": {"N": "7"},
        "checkpoint": {"S": checkpoint},
        "checkpointSubSequenceNumber": {"N": str(sub)},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
    }


def test_parse_checkpoint() -> None:
    assert parse_checkpoint(lease("s", "4959", 2)) == Checkpoint(LeasePosition.SEQUENCE, "4959", 2)
    assert parse_checkpoint(lease("s", "SHARD_END")) == Checkpoint(LeasePosition.SHARD_END)
    assert parse_checkpoint(lease("s", "TRIM_HORIZON")) == Checkpoint(LeasePosition.TRIM_HORIZON)
    assert parse_checkpoint(lease("s", "LATEST")) == Checkpoint(LeasePosition.LATEST)
    assert parse_checkpoint(lease("s", "AT_TIMESTAMP")) == Checkpoint(LeasePosition.AT_TIMESTAMP)
    assert parse_checkpoint({"leaseKey": {"S": "s"}}) == Checkpoint(LeasePosition.TRIM_HORIZON)
    with pytest.raises(AwsError, match="does not know"):
        parse_checkpoint(lease("s", "SOMEWHERE"))


def test_lease_keys_single_and_multi_stream() -> None:
    assert lease_shard("shardId-000000000001", "orders") == "shardId-000000000001"
    assert lease_shard("123456789012:orders:1700000000:shardId-000000000001", "orders") == "shardId-000000000001"
    assert lease_shard("123456789012:other:1700000000:shardId-000000000001", "orders") is None


def test_checkpoints_over_a_resharded_stream() -> None:
    # 0 split into 2 and 3; 1 and 2 merged into 4; a parent lease is deleted once its children started
    parents = {
        "shardId-0": (),
        "shardId-1": (),
        "shardId-2": ("shardId-0",),
        "shardId-3": ("shardId-0",),
        "shardId-4": ("shardId-1", "shardId-2"),
        "shardId-5": (),
    }
    items = [
        lease("shardId-1", "SHARD_END"),
        lease("shardId-3", "120", 1),
        lease("shardId-4", "TRIM_HORIZON"),
        lease("unrelated:stream:1:shardId-5", "99"),
    ]
    result = checkpoints(items, "orders", parents)
    assert result == {
        "shardId-0": Checkpoint(LeasePosition.DONE),  # lease cleaned up: its children have leases
        "shardId-1": Checkpoint(LeasePosition.SHARD_END),
        "shardId-2": Checkpoint(LeasePosition.DONE),  # its child shardId-4 is leased
        "shardId-3": Checkpoint(LeasePosition.SEQUENCE, "120", 1),
        "shardId-4": Checkpoint(LeasePosition.TRIM_HORIZON),
        "shardId-5": Checkpoint(LeasePosition.NOT_LEASED),  # another stream's lease does not count
    }
