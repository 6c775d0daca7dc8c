"""The running totals: counts per shard, the timeline, findings, and the second look at lost records."""

from __future__ import annotations

from streamwreck.checker.reading import UserRecord
from streamwreck.checker.tally import Tally, key_of
from streamwreck.checker.verdict import Judgement, Status

T0 = 1_800_000_000.0
LEDGER = {"healthy": True, "evictions": 0, "started_at": None, "ttl_seconds": 60}


def rec(n: int, shard: str = "s0") -> UserRecord:
    return UserRecord(shard, str(100 + n), 0, f"k{n}", None, T0 + n, b"data", n)


def test_processed_batches_are_counted_without_keeping_records() -> None:
    tally = Tally(["s0", "s1"])
    tally.add_processed([rec(0), rec(1), rec(2, "s1")], LEDGER)
    assert tally.counts["s0"][Status.PROCESSED] == 2 and tally.counts["s1"][Status.PROCESSED] == 1
    assert tally.findings == {}
    assert tally.written["s0"] == {int(T0): 1, int(T0) + 1: 1} == tally.processed["s0"]
    assert tally.totals() == {Status.PROCESSED: 3}


def test_findings_keep_payloads_only_while_lost_and_a_second_look_can_clear_them() -> None:
    tally = Tally(["s0"])
    records = [rec(0), rec(1), rec(2)]
    tally.add(
        records,
        [Judgement(Status.LOST, "x"), Judgement(Status.IN_FLIGHT, "y"), Judgement(Status.PROCESSED, "")],
        [0, 0, 1],
        LEDGER,
    )
    assert tally.findings[key_of(records[0])].record.data == b"data"
    assert tally.findings[key_of(records[1])].record.data == b""  # in flight: no payload kept
    assert [f.record for f in tally.lost()] == [records[0]]
    assert sum(tally.processed["s0"].values()) == 1

    tally.revise(key_of(records[0]), Judgement(Status.PROCESSED, ""), 1, LEDGER)  # recorded meanwhile
    assert tally.lost() == [] and key_of(records[0]) not in tally.findings
    assert tally.totals() == {Status.PROCESSED: 2, Status.IN_FLIGHT: 1, Status.LOST: 0}
    assert sum(tally.processed["s0"].values()) == 2

    tally.revise(key_of(records[1]), Judgement(Status.UNKNOWN, "restarted"), 0, LEDGER)
    assert tally.findings[key_of(records[1])].status is Status.UNKNOWN
    assert tally.counts["s0"][Status.UNKNOWN] == 1 and tally.counts["s0"][Status.IN_FLIGHT] == 0
