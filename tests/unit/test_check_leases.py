"""Reading KCL lease items: checkpoints per shard, special positions, multi-stream keys and their creation epochs,
shards without a lease, and tables that cannot be this stream's consumer's."""

from __future__ import annotations

from typing import Any

import pytest

from streamwreck.checker.leases import checkpoints, lease_shard, multi_stream, parse_checkpoint, verified_checkpoints
from streamwreck.checker.reading import Shard
from streamwreck.checker.verdict import Checkpoint, LeasePosition
from streamwreck.core.errors import AwsError, LeaseTableError


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


HALF = 2**127
TOP = 2**128 - 1
# 0 and 1 at creation; 0 split into 2 (low half) and 3 (high quarter of 0's range); 3 and 1 merged into 4
SHARDS = [
    Shard("shardId-000000000000", (), True, 0, HALF - 1),
    Shard("shardId-000000000001", (), True, HALF, TOP),
    Shard("shardId-000000000002", ("shardId-000000000000",), False, 0, HALF // 2 - 1),
    Shard("shardId-000000000003", ("shardId-000000000000",), True, HALF // 2, HALF - 1),
    Shard("shardId-000000000004", ("shardId-000000000003", "shardId-000000000001"), False, HALF // 2, TOP),
]
BY_ID = {shard.shard_id: shard for shard in SHARDS}


def kcl_lease(shard_id: str, checkpoint: str, *, key: str | None = None, described: bool = True) -> dict[str, Any]:
    """A lease item as KCL 2.x/3.x writes it: with the shard's parents and hash range."""
    item = lease(key or shard_id, checkpoint)
    shard = BY_ID.get(shard_id)
    if described and shard is not None:
        item["startingHashKey"] = {"S": str(shard.starting_hash_key)}
        item["endingHashKey"] = {"S": str(shard.ending_hash_key)}
        if shard.parent_ids:
            item["parentShardId"] = {"SS": list(shard.parent_ids)}
    return item


def verified(items: list[dict[str, Any]], created: int | None = None) -> dict[str, LeasePosition]:
    result = verified_checkpoints(items, "orders", SHARDS, "orders-app", created)
    return {shard_id[-1]: checkpoint.position for shard_id, checkpoint in result.items()}


def test_a_table_without_a_lease_of_this_stream_is_an_error_naming_table_and_stream() -> None:
    with pytest.raises(LeaseTableError) as caught:
        verified([])
    assert str(caught.value).startswith(
        "the lease table 'orders-app' has no lease for any shard of stream 'orders' (it is empty)"
    )
    with pytest.raises(
        LeaseTableError, match=r"of stream 'orders' \(it holds 1 lease, none of them on this stream's shards\)"
    ):
        verified([kcl_lease("shardId-000000000000", "SHARD_END", key="1:payments:5:shardId-000000000000")])


def test_single_stream_leases_that_contradict_the_listing_are_another_streams() -> None:
    with pytest.raises(LeaseTableError, match="leases shardId-000000000007, which stream 'orders' does not have"):
        verified([kcl_lease("shardId-000000000002", "12"), kcl_lease("shardId-000000000007", "99")])
    moved = kcl_lease("shardId-000000000002", "12")
    moved["endingHashKey"] = {"S": str(TOP)}
    with pytest.raises(LeaseTableError, match=r"shardId-000000000002: its lease covers hash keys 0\.\.") as caught:
        verified([moved])
    assert "does not describe stream 'orders'" in str(caught.value)
    orphan = kcl_lease("shardId-000000000004", "12")
    orphan["parentShardId"] = {"SS": ["shardId-000000000001"]}
    with pytest.raises(LeaseTableError, match="its lease names parents shardId-000000000001, the stream's shard has"):
        verified([orphan])
    # a lease without the KCL's descriptive attributes is taken at its word
    assert verified([kcl_lease("shardId-000000000002", "12", described=False)])["2"] is LeasePosition.SEQUENCE


def test_a_finished_lease_may_outlive_its_shard() -> None:
    positions = verified([kcl_lease("shardId-000000000099", "SHARD_END"), kcl_lease("shardId-000000000002", "7")])
    assert positions["2"] is LeasePosition.SEQUENCE


def test_a_shard_without_a_lease_is_pending_only_where_a_relative_is_leased() -> None:
    # 0 finished and cleaned up (its child 2 leased); 3 still being read; 4 (child of 3 and 1) not leased yet;
    # 1 has no lease at all and no leased relative
    positions = verified([kcl_lease("shardId-000000000002", "55"), kcl_lease("shardId-000000000003", "77")])
    assert positions == {
        "0": LeasePosition.DONE,
        "1": LeasePosition.NOT_LEASED,  # a root shard nobody leased, nor any relative of it: unknown, not in flight
        "2": LeasePosition.SEQUENCE,
        "3": LeasePosition.SEQUENCE,
        "4": LeasePosition.AWAITING_LEASE,  # its parent 3 is leased: the consumer is coming
    }
    # a sibling's lease is evidence too: 3 has no lease while its sibling 2 has
    assert verified([kcl_lease("shardId-000000000002", "55")])["3"] is LeasePosition.AWAITING_LEASE
    # a finished parent's lease (SHARD_END) shows the consumer on this stream: its child is pending
    assert verified([kcl_lease("shardId-000000000001", "SHARD_END")])["4"] is LeasePosition.AWAITING_LEASE


def multi(epoch: int, shard_id: str, checkpoint: str) -> dict[str, Any]:
    return kcl_lease(shard_id, checkpoint, key=f"123456789012:orders:{epoch}:{shard_id}", described=False)


def test_multi_stream_leases_of_the_streams_own_creation_epoch_win() -> None:
    old = [multi(1_700_000_000, f"shardId-00000000000{n}", "SHARD_END") for n in range(5)]
    new = [multi(1_800_000_000, "shardId-000000000000", "10")]
    items = old + new
    assert verified(items, created=1_800_000_000)["0"] is LeasePosition.SEQUENCE
    assert verified(items, created=1_800_000_001)["0"] is LeasePosition.SEQUENCE  # rounded the other way
    assert verified(items, created=1_700_000_000)["0"] is LeasePosition.SHARD_END
    assert verified(items)["0"] is LeasePosition.SEQUENCE  # creation unknown: the newest
    with pytest.raises(LeaseTableError, match="created at epoch 1700000000, 1800000000, but this stream was created"):
        verified(items, created=1_900_000_000)
    assert multi_stream(items, "orders") and not multi_stream(items, "payments")
    assert not multi_stream([kcl_lease("shardId-000000000000", "1")], "orders")
