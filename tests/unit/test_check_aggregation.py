"""KPL aggregation both ways (aws-kinesis-agg), and the hash-key rule."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from streamwreck.checker.aggregation import MAGIC, aggregate, deaggregate, hash_key

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def test_round_trip_keeps_order_keys_and_data() -> None:
    users = [(f"key-{n % 3}", f"payload {n}".encode() * (n + 1)) for n in range(25)]
    packed = list(aggregate(users, max_user_records=10))
    assert [p.user_records for p in packed] == [10, 10, 5]
    assert all(p.data.startswith(MAGIC) for p in packed)
    unpacked = []
    for number, p in enumerate(packed):
        subs = deaggregate(str(number), p.partition_key, p.data, NOW)
        assert [s.sub_sequence_number for s in subs] == list(range(p.user_records))
        unpacked += [(s.partition_key, s.data) for s in subs]
    assert unpacked == users
    assert packed[0].partition_key == "key-0"  # routed by its first user record


def test_a_plain_record_is_its_own_sub_record_zero() -> None:
    assert deaggregate("7", "pk", b"hello", NOW) == [(0, "pk", None, b"hello")]


def test_magic_bytes_with_a_bad_digest_are_passed_on_whole_as_the_kcl_does() -> None:
    packed = next(aggregate([("a", b"1"), ("b", b"2")], max_user_records=5))
    corrupt = packed.data[:-1] + bytes([packed.data[-1] ^ 0xFF])
    assert deaggregate("7", "a", corrupt, NOW) == [(0, "a", None, corrupt)]


def test_size_limit_starts_a_new_aggregate() -> None:
    big = b"x" * 400_000
    assert [p.user_records for p in aggregate([("k", big)] * 5, max_user_records=100)] == [2, 2, 1]
    with pytest.raises(ValueError):
        list(aggregate([("k", b"x")], max_user_records=0))


def test_hash_key_is_md5_of_the_partition_key_unless_explicit() -> None:
    assert hash_key("orders-1") == int.from_bytes(hashlib.md5(b"orders-1").digest(), "big")
    assert hash_key("orders-1", "42") == 42
