"""The pure rules: one record's status from its evidence, the verdict, the exit code, lost ranges."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamwreck.checker.verdict import (
    Checkpoint,
    ExitCode,
    Judgement,
    LeasePosition,
    LedgerView,
    Place,
    Status,
    Verdict,
    exit_code,
    judge,
    lost_ranges,
    verdict,
)
from streamwreck.core.answers import LEDGER

NOW = 1_800_000_000.0
HOUR = 3600.0
SEQ = "49590338271490256608559692538361571095921575989136588898"
INTACT = LedgerView(healthy=True, evictions=0, started_at=NOW - 10 * HOUR, ttl_seconds=7 * 24 * 3600, flushes=0)


def judged(
    *,
    count: int = 0,
    arrival: float = NOW - HOUR,
    checkpoint: Checkpoint | None = None,
    ledger: LedgerView = INTACT,
    grace: float = 60,
    seq: str = SEQ,
    sub: int = 0,
    readable: bool = True,
) -> Judgement:
    return judge(
        arrival=arrival,
        sequence_number=seq,
        sub_sequence_number=sub,
        count=count,
        checkpoint=checkpoint,
        ledger=ledger,
        now=NOW,
        grace=grace,
        readable=readable,
    )


def test_a_record_whose_ledger_data_is_unreadable_is_unknown_never_lost_or_processed() -> None:
    judgement = judged(readable=False)
    assert judgement.status is Status.UNKNOWN and "could not be read" in judgement.reason
    assert judged(readable=False, arrival=NOW - 10).status is Status.IN_FLIGHT  # young: still in flight


def status(**arguments: Any) -> Status:
    return judged(**arguments).status


def test_in_the_ledger_once_is_processed_and_more_is_duplicate() -> None:
    assert status(count=1) is Status.PROCESSED
    assert status(count=2) is Status.DUPLICATE
    # the ledger's word wins over every doubt: an unreliable ledger still proves what it holds
    assert status(count=1, ledger=LedgerView(True, 5, NOW, 60)) is Status.PROCESSED


def test_missing_from_an_intact_ledger_is_lost() -> None:
    result = judge(
        arrival=NOW - HOUR,
        sequence_number=SEQ,
        sub_sequence_number=0,
        count=0,
        checkpoint=None,
        ledger=INTACT,
        now=NOW,
        grace=60,
    )
    assert result.status is Status.LOST
    assert result.reason == "not in the ledger"


def test_younger_than_the_grace_is_in_flight() -> None:
    assert status(arrival=NOW - 59) is Status.IN_FLIGHT
    assert status(arrival=NOW - 61) is Status.LOST
    assert status(arrival=NOW - 1, grace=0) is Status.LOST


@pytest.mark.parametrize(
    ("ledger", "arrival"),
    [
        pytest.param(LedgerView(True, 1, NOW - 10 * HOUR, 7 * 86400), NOW - HOUR, id="evictions"),
        pytest.param(LedgerView(True, 0, NOW - HOUR / 2, 7 * 86400), NOW - HOUR, id="restarted after arrival"),
        pytest.param(LedgerView(True, 0, NOW - HOUR - 0.5, 7 * 86400), NOW - HOUR, id="started within rounding"),
        pytest.param(LedgerView(True, 0, NOW - 10 * HOUR, 1800), NOW - HOUR, id="older than the TTL"),
        pytest.param(LedgerView(False, 0, NOW - 10 * HOUR, 7 * 86400), NOW - HOUR, id="a node down"),
        pytest.param(LedgerView(True, 0, None, 7 * 86400), NOW - HOUR, id="start not reported"),
        pytest.param(LedgerView(True, 0, NOW - 10 * HOUR, 7 * 86400, flushes=1), NOW - HOUR, id="flushed"),
        pytest.param(LedgerView(True, 0, NOW - 10 * HOUR, 7 * 86400, flushes=None), NOW - HOUR, id="flushes unsaid"),
    ],
)
def test_missing_where_the_ledger_cannot_vouch_is_unknown(ledger: LedgerView, arrival: float) -> None:
    assert status(arrival=arrival, ledger=ledger) is Status.UNKNOWN


def test_a_record_that_arrived_after_the_restart_is_judged_by_the_new_ledger() -> None:
    ledger = LedgerView(True, 0, NOW - 2 * HOUR, 7 * 86400)
    assert status(arrival=NOW - HOUR, ledger=ledger) is Status.LOST


def test_in_flight_wins_over_unknown() -> None:
    restarted = LedgerView(True, 0, NOW, 7 * 86400)
    assert status(arrival=NOW - 10, ledger=restarted) is Status.IN_FLIGHT


def test_beyond_a_sequence_checkpoint_is_in_flight_and_behind_it_is_lost() -> None:
    checkpoint = Checkpoint(LeasePosition.SEQUENCE, "1000", 3)
    assert status(checkpoint=checkpoint, seq="1001") is Status.IN_FLIGHT
    assert status(checkpoint=checkpoint, seq="1000", sub=4) is Status.IN_FLIGHT
    assert status(checkpoint=checkpoint, seq="1000", sub=3) is Status.LOST
    assert status(checkpoint=checkpoint, seq="999", sub=9) is Status.LOST
    # numeric, not lexicographic: 10 digits > 4 digits
    assert status(checkpoint=checkpoint, seq="1000000000") is Status.IN_FLIGHT


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        (LeasePosition.TRIM_HORIZON, Status.IN_FLIGHT),
        (LeasePosition.AT_TIMESTAMP, Status.IN_FLIGHT),
        (LeasePosition.AWAITING_LEASE, Status.IN_FLIGHT),  # a parent's or sibling's lease shows the consumer
        (LeasePosition.NOT_LEASED, Status.UNKNOWN),  # no lease and no leased relative: no evidence either way
        (LeasePosition.LATEST, Status.UNKNOWN),
        (LeasePosition.SHARD_END, Status.LOST),
        (LeasePosition.DONE, Status.LOST),
    ],
)
def test_lease_positions(position: LeasePosition, expected: Status) -> None:
    assert status(checkpoint=Checkpoint(position)) is expected


def test_a_lease_still_at_latest_cannot_tell_records_before_the_consumer_from_records_it_has_not_reached() -> None:
    latest = Checkpoint(LeasePosition.LATEST)
    result, reason = judged(checkpoint=latest, arrival=NOW - HOUR)
    assert result is Status.UNKNOWN and "LATEST" in reason and "cannot be told apart" in reason
    assert status(checkpoint=latest, arrival=NOW - 10) is Status.IN_FLIGHT  # within the grace: in flight anyway
    assert status(checkpoint=latest, count=1) is Status.PROCESSED


def test_reasons_name_the_missing_evidence() -> None:
    assert judged(checkpoint=Checkpoint(LeasePosition.NOT_LEASED))[1] == (
        "its shard has no lease, nor has any parent or sibling of it"
    )
    assert "parent's or sibling's lease" in judged(checkpoint=Checkpoint(LeasePosition.AWAITING_LEASE))[1]
    flushed = LedgerView(True, 0, NOW - 10 * HOUR, 7 * 86400, flushes=2)
    assert judged(ledger=flushed) == (Status.UNKNOWN, "the ledger was flushed (2 flush_all since it started)")


def test_verdict_and_exit_codes() -> None:
    assert verdict({}) is Verdict.CLEAN
    assert verdict({Status.PROCESSED: 5, Status.IN_FLIGHT: 3, Status.DUPLICATE: 1}) is Verdict.CLEAN
    assert verdict({Status.UNKNOWN: 1}) is Verdict.UNRELIABLE
    assert verdict({Status.UNKNOWN: 1, Status.LOST: 1}) is Verdict.GAPS
    assert exit_code(Verdict.CLEAN, {}, fail_on_duplicates=True) == ExitCode.CLEAN == 0
    assert exit_code(Verdict.GAPS, {Status.LOST: 1}, fail_on_duplicates=False) == ExitCode.FAILED == 1
    assert exit_code(Verdict.UNRELIABLE, {Status.UNKNOWN: 1}, fail_on_duplicates=False) == ExitCode.UNRELIABLE == 3
    duplicates = {Status.DUPLICATE: 2}
    assert exit_code(Verdict.CLEAN, duplicates, fail_on_duplicates=False) == 0
    assert exit_code(Verdict.CLEAN, duplicates, fail_on_duplicates=True) == 1
    assert exit_code(Verdict.UNRELIABLE, {**duplicates, Status.UNKNOWN: 1}, fail_on_duplicates=True) == 1


def test_lost_ranges_collapse_only_records_read_one_after_another() -> None:
    lost = [Place(i, str(100 + i), 0, NOW) for i in (7, 1, 2, 3, 9, 10)]
    ranges = lost_ranges("s", lost)
    assert [(r.first.ordinal, r.last.ordinal, r.size) for r in ranges] == [(1, 3, 3), (7, 7, 1), (9, 10, 2)]
    assert ranges[0].first.sequence_number == "101" and ranges[0].last.sequence_number == "103"
    assert lost_ranges("s", []) == []


GOOD = {"healthy": True, "evictions": 2, "flushes": 1, "started_at": "2026-11-27T16:00:00Z", "ttl_seconds": 60}


def view_of(ledger: dict[str, object]) -> LedgerView:
    return LedgerView.from_status(LEDGER.validate_json(json.dumps(ledger), strict=True))


def test_ledger_view_from_the_api_answer() -> None:
    assert view_of(GOOD) == LedgerView(True, 2, 1795795200.0, 60, flushes=1)
    assert view_of({**GOOD, "started_at": "2026-11-27T17:00:00+01:00"}).started_at == 1795795200.0
    assert view_of({**GOOD, "started_at": None}).started_at is None
    older_api = {name: value for name, value in GOOD.items() if name != "flushes"}
    assert view_of(older_api).flushes is None  # not said: judged as no evidence, not as zero
