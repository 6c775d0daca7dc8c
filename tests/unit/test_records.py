from __future__ import annotations

import re

import pytest

from streamwreck.core.records import RecordId, ledger_key, validate_name, validate_sequence_number

LONGEST_NAME = "a" * 128
LONGEST_SEQUENCE = "9" * 129


@pytest.mark.parametrize("value", ["0", "1", "10", LONGEST_SEQUENCE, "4959033827149025660855969253836157109592157"])
def test_valid_sequence_numbers(value: str) -> None:
    assert validate_sequence_number(value) == value


@pytest.mark.parametrize("value", ["", "01", "-1", "1.0", " 1", "1 ", "9" * 130, "\uff11\uff12", "0x10", "1e5"])
def test_invalid_sequence_numbers(value: str) -> None:
    with pytest.raises(ValueError, match="decimal number"):
        validate_sequence_number(value)


@pytest.mark.parametrize("value", ["a", "shardId-000000000000", "my.stream_1-x", LONGEST_NAME])
def test_valid_names(value: str) -> None:
    assert validate_name(value) == value


@pytest.mark.parametrize("value", ["", "a" * 129, "has space", "tab\t", "new\nline", "slash/x", "colon:x", "é"])
def test_invalid_names(value: str) -> None:
    with pytest.raises(ValueError, match="1 to 128"):
        validate_name(value)


def test_key_is_a_valid_memcached_key_for_the_longest_identity() -> None:
    key = ledger_key(RecordId(LONGEST_NAME, "s" * 128, LONGEST_SEQUENCE, 2**63 - 1))
    assert len(key.encode()) == 18
    assert re.fullmatch(r"w1[A-Za-z0-9_-]{16}", key)


def test_key_is_stable_across_versions() -> None:
    # Entries written by an earlier version must be found by this one: these values must never change.
    sequence = "49590338271490256608559692538361571095921575989136588898"
    assert ledger_key(RecordId("orders", "shardId-000000000000", sequence, 0)) == "w1-ackd4NWZuQdztF1"
    assert ledger_key(RecordId("orders", "shardId-000000000000", sequence, 3)) == "w1wKHHktRziEsldsap"


def test_key_tells_apart_every_part_of_the_identity() -> None:
    base = RecordId("orders", "shardId-000000000001", "12345", 0)
    variants = [
        base,
        base._replace(stream="orders2"),
        base._replace(shard_id="shardId-000000000002"),
        base._replace(sequence_number="123450"),
        base._replace(sub_sequence_number=1),
        # the same characters split differently between the fields
        RecordId("orders", "shardId-0000000000011", "2345", 0),
        RecordId("ordersshardId-000000000001", "x", "12345", 0),
        RecordId("orders", "shardId-000000000001", "1234", 50),
    ]
    assert len({ledger_key(v) for v in variants}) == len(variants)


def test_same_sequence_number_in_two_shards_are_two_records() -> None:
    a = RecordId("orders", "shardId-000000000000", "1", 0)
    b = RecordId("orders", "shardId-000000000001", "1", 0)
    assert ledger_key(a) != ledger_key(b)
