"""The compact ledger's format: buckets from real sequence numbers, the fingerprint arithmetic, unreadable items."""

from __future__ import annotations

import re

import pytest

from streamwreck.core import buckets
from streamwreck.core.bucket_ledger import InMemoryLedger
from streamwreck.core.records import RecordId

# Sequence numbers from a Kinesis stream (2020, four records of shard 0, ApproximateArrivalTimestamp beside each).
KINESIS = [
    ("49604631341683657867295630657032921195561055316799913986", 1582837173.746),
    ("49604631341683657867295630709617567571338586507588927490", 1582837260.412),
    ("49604631341683657867295630802435265223890981442962849794", 1582837416.581),
    ("49604631341683657867295630802779809082481150757754109954", 1582837416.9),
]
CREATED = 1_796_000_000  # a shard's creation time, Unix seconds


def test_kinesis_sequence_numbers_are_read_as_record_index_and_arrival_second() -> None:
    for sequence, arrival in KINESIS:
        name, window_end = buckets.locate(sequence, 0)
        assert name.startswith("t") and window_end is not None
        # the window holds the record's arrival (the number's second is at most 2 s before it)
        assert window_end - buckets.WINDOW_SECONDS <= arrival - 2 and arrival < window_end + 2
    # The last two arrived in the same second, 285 record indexes apart: one bucket.
    assert buckets.locate(KINESIS[2][0], 0) == buckets.locate(KINESIS[3][0], 0)


def test_making_a_sequence_number_is_the_inverse_of_reading_one() -> None:
    sequence = buckets.sequence_number(0x05E582135, 0, 0x1C2B6A, 0x05E582DB4)
    assert sequence == KINESIS[0][0]


def test_a_shard_at_full_rate_fills_a_bucket_with_at_most_4096_records_in_a_few_seconds() -> None:
    # 1,000 records/s for two minutes, record indexes counting up by one (kinesis-local; Kinesis counts faster).
    start = 1_796_000_040
    sizes: dict[str, int] = {}
    for n in range(120_000):
        name, _ = buckets.locate(buckets.sequence_number(CREATED, 1, n, start + n // 1000), 0)
        sizes[name] = sizes.get(name, 0) + 1
    assert max(sizes.values()) <= 2**buckets.INDEX_BITS == 4096
    assert len(sizes) <= 120_000 // 4096 + 2 * 2 + 1  # plus the blocks cut by the two minute boundaries
    item = buckets.segments(1, start, [buckets.fingerprint(str(n), 0) for n in range(4096)])
    assert sum(map(len, item)) < 25_000  # 6 bytes a record and one segment header


def test_a_bucket_is_bounded_whatever_the_aggregation() -> None:
    # Every Kinesis record an aggregate of 1,000 user records: sub-sequence numbers split the bucket further.
    names = {
        buckets.locate(buckets.sequence_number(CREATED, 0, n, CREATED), sub)[0] for n in range(4) for sub in range(1000)
    }
    per_bucket = 4 * 1000 / len(names)
    assert per_bucket <= 4 * 2**buckets.SUB_BITS
    full = buckets.MAX_BUCKET_RECORDS * buckets.FINGERPRINT_BYTES + 15
    assert full < 1024 * 1024  # memcached's default item limit


def test_other_shapes_fall_back_to_the_number_alone() -> None:
    assert buckets.locate("7", 0) == ("n0.0", None)
    assert buckets.locate(str(5 * 4096 + 3), 17) == ("n5.1", None)


def test_the_fingerprint_arithmetic_in_the_docstring_holds() -> None:
    bits = 8 * buckets.FINGERPRINT_BYTES
    full = buckets.MAX_BUCKET_RECORDS
    chance = (full - 1) / 2**bits
    assert full == 65_536 and bits == 48
    assert chance <= 1e-9
    assert (full - 1) / 2 ** (bits - 8) > 1e-9  # one byte less would not do
    doc = buckets.__doc__ or ""
    assert f"{full - 1:,} / {2**bits:,} = {chance:.1e}" in doc
    assert re.search(r"typical full bucket \(4,096 records\) gives 1\.5e-11", doc)
    assert f"{4095 / 2**bits:.1e}" == "1.5e-11"


def test_no_false_match_in_a_full_bucket() -> None:
    """65,536 records in one bucket, 100,000 absent ones asked about: none answered as processed (the chance that
    any is, by the arithmetic above, is 100,000 x 2.3e-10 = 2.3e-5)."""
    present = {buckets.fingerprint(str(n), sub) for n in range(4096) for sub in range(16)}
    assert len(present) == buckets.MAX_BUCKET_RECORDS  # no two present records collide either
    absent = (buckets.fingerprint(str(n), 0) for n in range(10_000, 110_000))
    assert not any(fp in present for fp in absent)


def _ledger_with(records: list[RecordId]) -> InMemoryLedger:
    ledger = InMemoryLedger()
    ledger.record(records, "event-1", 1_800_000_000)
    return ledger


def _records(n: int, stream: str = "orders") -> list[RecordId]:
    return [
        RecordId(stream, "shardId-000000000000", buckets.sequence_number(CREATED, 0, i, CREATED + 5), 0)
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda item: item[:-1], id="cut short by a byte"),
        pytest.param(lambda item: item[:20], id="cut inside the fingerprints"),
        pytest.param(lambda item: item[:5], id="cut inside the header"),
        pytest.param(lambda item: item[:30] + bytes([item[30] ^ 1]) + item[31:], id="one bit flipped"),
        pytest.param(lambda item: b"\x00" + item[1:], id="no magic"),
        pytest.param(lambda item: item + b"garbage", id="something else appended"),
        pytest.param(lambda item: b"1", id="not ours at all"),
    ],
)
def test_a_damaged_item_makes_its_records_unreadable_never_processed(damage: object) -> None:
    records = _records(10)
    ledger = _ledger_with(records)
    ((key, item),) = ledger.items.values.items()
    ledger.items.values[key] = damage(item)  # type: ignore[operator]
    found = ledger.lookup(records)
    assert set(found) == set(records)
    assert all(not entry.readable and entry.count == 0 for entry in found.values())


def test_a_redelivered_event_counts_once_and_a_second_event_twice() -> None:
    records = _records(5)
    ledger = _ledger_with(records)
    ledger.record(records, "event-1", 1_800_000_000)  # the same event again
    ledger.record(records[:2], "event-2", 1_799_999_000)  # a second, earlier one
    found = ledger.lookup(records)
    assert [found[r].count for r in records] == [2, 2, 1, 1, 1]
    assert found[records[0]].first_processed_at == 1_799_999_000
    assert len(ledger.items.values) == 1  # one bucket, written by appends


def test_one_append_per_bucket_per_event() -> None:
    class Counting(InMemoryLedger):
        appends = 0

    ledger = Counting()
    original = ledger.items.append_or_add

    def counted(key: str, value: bytes, expire: int) -> None:
        Counting.appends += 1
        original(key, value, expire)

    ledger.items.append_or_add = counted  # type: ignore[method-assign]
    records = _records(5000)  # record indexes 0..4999: two buckets
    ledger.record(records, "event-1", 1_800_000_000)
    assert Counting.appends == 2


def test_the_bytes_a_record_costs() -> None:
    records = _records(4096)
    ledger = InMemoryLedger()
    for start in range(0, 4096, 400):  # events of 400 records, as the processor publishes them
        ledger.record(records[start : start + 400], f"event-{start}", 1_800_000_000)
    stored = sum(len(v) for v in ledger.items.values.values())
    assert stored / 4096 < 6.1


def test_the_key_is_short_and_safe_whatever_the_names() -> None:
    key = buckets.item_key("s" * 128, "shardId-" + "9" * 12, "t1.2.3")
    assert len(key) == 18 and key.startswith("w2") and re.fullmatch(r"[A-Za-z0-9_-]+", key)
    assert buckets.item_key("orders", "shardId-000000000000", "t1.2.3") != buckets.item_key(
        "orders", "shardId-000000000001", "t1.2.3"
    )
