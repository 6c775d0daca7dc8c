"""The watcher's pure parts: when a held record is due, how it is judged (the checker's rules), the bounded hold,
and the watcher's checkpoint only behind judged records; its reports, metrics, EMF lines and health."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streamwreck.checker.reading import UserRecord
from streamwreck.checker.reconciling import Answer
from streamwreck.checker.verdict import Checkpoint, LeasePosition, LedgerView, Status
from streamwreck.core.errors import InternalError
from streamwreck.watcher.metrics import Emf, Row, Snapshot, health
from streamwreck.watcher.reports import LostReporter, export_line
from streamwreck.watcher.shard import Outcome, ShardWatch

SHARD = "shardId-000000000000"
T0 = 1_800_000_000.0
LEDGER = LedgerView(healthy=True, evictions=0, started_at=T0 - 3600, ttl_seconds=86_400, flushes=0)


def record(n: int, arrival: float = T0, sub: int = 0) -> UserRecord:
    return UserRecord(SHARD, str(1000 + n), sub, f"pk-{n}", None, arrival, f"data-{n}".encode(), n)


def answer(unprocessed: list[UserRecord], at: float, duplicates: dict[int, int] | None = None) -> Answer:
    keys = frozenset((r.shard_id, r.sequence_number, r.sub_sequence_number) for r in unprocessed)
    dup = {(SHARD, str(1000 + n), 0): count for n, count in (duplicates or {}).items()}
    return Answer(keys, dup, {}, at, LEDGER)


def at_sequence(n: int) -> Checkpoint:
    return Checkpoint(LeasePosition.SEQUENCE, str(1000 + n), 0)


def watch(**options: Any) -> ShardWatch:
    return ShardWatch(SHARD, **{"grace": 60.0, "settle": 5.0, "batch_size": 100, "max_held": 10, **options})


def test_nothing_is_due_before_a_checkpoint_has_settled() -> None:
    w = watch()
    w.add([record(1), record(2)])
    assert w.due(T0 + 1) is None  # no lease read yet
    w.observe(at_sequence(5), T0 + 1)
    assert w.due(T0 + 3) is None  # read 2 s ago: the consumer's events may not have reached the ledger yet
    due = w.due(T0 + 6)
    assert due is not None and [r.ordinal for r in due.records] == [1, 2]


def test_records_the_checkpoint_has_passed_are_due_in_order_and_the_rest_wait_for_the_grace_period() -> None:
    w = watch()
    w.add([record(n) for n in range(1, 6)])
    w.observe(at_sequence(2), T0)
    due = w.due(T0 + 10)
    assert due is not None and [r.ordinal for r in due.records] == [1, 2]
    due = w.due(T0 + 61)  # older than the grace period: due whatever the checkpoint
    assert due is not None and len(due.records) == 5


def test_a_checkpoint_moving_counts_from_when_it_was_read() -> None:
    w = watch()
    w.add([record(1), record(2)])
    w.observe(at_sequence(1), T0)
    w.observe(at_sequence(1), T0 + 4)  # unchanged: the earlier reading stands
    w.observe(at_sequence(2), T0 + 8)
    due = w.due(T0 + 10)
    assert due is not None and [r.ordinal for r in due.records] == [1]
    assert due.checkpoint == at_sequence(1)
    due = w.due(T0 + 13)
    assert due is not None and due.checkpoint == at_sequence(2) and len(due.records) == 2


@pytest.mark.parametrize("position", [LeasePosition.LATEST, LeasePosition.NOT_LEASED, LeasePosition.TRIM_HORIZON])
def test_a_checkpoint_that_says_nothing_about_the_record_leaves_it_to_the_grace_period(position: LeasePosition) -> None:
    w = watch()
    w.add([record(1)])
    w.observe(Checkpoint(position), T0)
    assert w.due(T0 + 30) is None
    assert w.due(T0 + 61) is not None


def test_judging_applies_the_checkers_rules_and_lost_records_leave_only_once_committed() -> None:
    w = watch()
    records = [record(n) for n in range(1, 5)]
    w.add(records)
    w.observe(at_sequence(4), T0)
    due = w.due(T0 + 6)
    assert due is not None
    outcomes = w.judge(due, answer([records[1]], T0 + 6, duplicates={3: 2}))
    assert [(o.record.ordinal, o.status) for o in outcomes] == [
        (1, Status.PROCESSED),
        (2, Status.LOST),
        (3, Status.DUPLICATE),
        (4, Status.PROCESSED),
    ]
    assert outcomes[1].reason == "not in the ledger"
    assert len(w.held) == 4 and w.last_judged is None  # not reported yet: still held
    w.commit(outcomes)
    assert not w.held and w.last_judged == ("1004", 0)
    assert (w.counts["processed"], w.counts["lost"], w.counts["duplicate"], w.counts["read"]) == (2, 1, 1, 4)


def test_an_in_flight_record_stops_the_judging_there_and_is_asked_again_later() -> None:
    w = watch(retry=3.0)
    records = [record(1), record(2, arrival=T0 + 50), record(3, arrival=T0 + 50)]
    w.add(records)
    w.observe(at_sequence(1), T0)
    # At T0 + 61 record 1 is passed; 2 and 3 are not (the checkpoint) and younger than grace: only 1 is due.
    due = w.due(T0 + 61)
    assert due is not None and len(due.records) == 1
    w.commit(w.judge(due, answer([], T0 + 61)))
    # Later all are older than the grace period, but the consumer's checkpoint still says it is coming to them.
    due = w.due(T0 + 120)
    assert due is not None and len(due.records) == 2
    assert w.judge(due, answer(list(due.records), T0 + 120)) == []  # in flight: nothing judged past it
    assert w.due(T0 + 121) is None  # asked again after the retry interval
    assert w.due(T0 + 124) is not None
    assert w.last_judged == ("1001", 0) and len(w.held) == 2


def test_unknown_when_the_ledger_cannot_vouch() -> None:
    w = watch()
    w.add([record(1)])
    w.observe(at_sequence(1), T0)
    due = w.due(T0 + 6)
    assert due is not None
    flushed = LedgerView(healthy=True, evictions=0, started_at=T0 - 3600, ttl_seconds=86_400, flushes=1)
    reply = Answer(frozenset({(SHARD, "1001", 0)}), {}, {}, T0 + 6, flushed)
    [outcome] = w.judge(due, reply)
    assert outcome.status is Status.UNKNOWN and "flushed" in outcome.reason


def test_the_hold_is_bounded_and_commit_refuses_anything_but_the_oldest() -> None:
    w = watch(max_held=3)
    w.add([record(1), record(2)])
    assert not w.full
    w.add([record(3)])
    assert w.full
    with pytest.raises(InternalError):
        w.commit([Outcome(record(2), Status.PROCESSED, "", 1)])


def test_lag_is_the_oldest_held_record_or_the_reads_lag() -> None:
    w = watch()
    assert w.lag(T0, None) == 0
    w.add([record(1, arrival=T0 - 30)])
    assert w.lag(T0, 5_000) == 30
    assert w.lag(T0, 90_000) == 90


def test_a_lost_record_is_exported_with_the_pinned_fields_and_when_it_can_be_replayed(tmp_path: Path) -> None:
    outcome = Outcome(record(7, arrival=T0, sub=2), Status.LOST, "not in the ledger", 0)
    line = json.loads(export_line("orders", outcome, 24 * 3600))
    pinned = {
        "shard_id",
        "sequence_number",
        "sub_sequence_number",
        "approximate_arrival_timestamp",
        "reason",
        "replayable_until",
    }
    assert pinned <= line.keys()
    assert (line["shard_id"], line["sequence_number"], line["sub_sequence_number"]) == (SHARD, "1007", 2)
    assert line["approximate_arrival_timestamp"] == datetime.fromtimestamp(T0, UTC).isoformat(
        timespec="milliseconds"
    ).replace("+00:00", "Z")
    assert line["replayable_until"].startswith(datetime.fromtimestamp(T0 + 86_400, UTC).strftime("%Y-%m-%dT%H:%M"))
    export = tmp_path / "lost.jsonl"
    reporter = LostReporter("orders", 3600, export)
    reporter.report([outcome])
    reporter.report([outcome])  # appended, as several record processors do
    assert len(export.read_text().splitlines()) == 2


class FakeSns:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, str]:
        self.messages.append(kwargs)
        return {"MessageId": "1"}


def test_lost_records_go_to_the_topic_in_bounded_messages() -> None:
    sns = FakeSns()
    lost = [Outcome(record(n), Status.LOST, "not in the ledger", 0) for n in range(250)]
    LostReporter("orders", 3600, None, sns, "arn:aws:sns:us-east-1:1:lost", "w1").report(lost)  # type: ignore[arg-type]
    assert [len(json.loads(m["Message"])["records"]) for m in sns.messages] == [100, 100, 50]
    body = json.loads(sns.messages[0]["Message"])
    assert body["type"] == "streamwreck.lost.v1" and body["stream"] == "orders"
    assert "data" not in body["records"][0] and len(sns.messages[0]["Subject"]) <= 100


def test_emf_lines_carry_the_counts_since_the_last_line() -> None:
    lines: list[str] = []
    emf = Emf("Streamwreck/Watch", "orders", 60, lines.append)
    w = watch()
    w.counts.update({"processed": 10, "lost": 2})
    emf.maybe_emit(w, T0, None)
    emf.maybe_emit(w, T0 + 30, None)
    assert lines == []  # the first call starts the interval
    emf.maybe_emit(w, T0 + 60, None)
    w.counts.update({"processed": 5})
    emf.maybe_emit(w, T0 + 120, None)
    first, second = (json.loads(line) for line in lines)
    directive = first["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "Streamwreck/Watch" and ["Stream"] in directive["Dimensions"]
    assert {m["Name"] for m in directive["Metrics"]} >= {"RecordsLost", "RecordsJudged", "RecordsHeld", "LagSeconds"}
    assert (first["RecordsLost"], first["RecordsProcessed"], first["RecordsJudged"]) == (2, 10, 12)
    assert (second["RecordsLost"], second["RecordsProcessed"]) == (0, 5)
    assert first["_aws"]["Timestamp"] == int((T0 + 60) * 1000) and first["ShardId"] == SHARD


def test_health_is_stale_only_after_no_progress_for_the_stale_period() -> None:
    row = Row()
    ok, body = health(Snapshot({}, None), T0 + 10, T0, 120)
    assert ok and body["status"] == "starting"
    assert health(Snapshot({}, None), T0 + 121, T0, 120)[0] is False
    assert health(Snapshot({SHARD: row}, T0 + 100), T0 + 150, T0, 120)[1]["status"] == "ok"
    ok, body = health(Snapshot({SHARD: row}, T0 + 100), T0 + 221, T0, 120)
    assert not ok and body["status"] == "stale"


def test_a_snapshot_totals_its_shards() -> None:
    a, b = Row(), Row()
    a.counts["lost"], b.counts["processed"], a.held, b.lag = 2, 5, 3, 7.5
    total = Snapshot({"a": a, "b": b}, None).total()
    assert (total.judged, total.counts["lost"], total.held, total.lag) == (7, 2, 3, 7.5)
