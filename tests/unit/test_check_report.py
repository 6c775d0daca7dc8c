"""The report document and its renderers, from a tally built by hand."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from streamwreck.checker.aggregation import hash_key
from streamwreck.checker.reading import ReadStats, Shard, UserRecord
from streamwreck.checker.render_text import CSV_COLUMNS
from streamwreck.checker.report import build, headline, render
from streamwreck.checker.tally import Tally
from streamwreck.checker.verdict import Checkpoint, Judgement, LeasePosition, Status

T0 = 1_800_000_000.0
LEDGER = {"healthy": True, "evictions": 0, "started_at": "2026-01-01T00:00:00Z", "ttl_seconds": 604800}
HALF = 2**127
PARENT = Shard("shardId-000000000000", (), True, 0, 2**128 - 1)
LOW = Shard("shardId-000000000001", ("shardId-000000000000",), False, 0, HALF - 1)
HIGH = Shard("shardId-000000000002", ("shardId-000000000000",), False, HALF, 2**128 - 1)


def key_in(shard: Shard) -> str:
    return next(f"k{n}" for n in range(1000) if shard.owns(hash_key(f"k{n}")))


def rec(shard: Shard, n: int, sub: int = 0, at: float = 0.0, key: str | None = None) -> UserRecord:
    return UserRecord(shard.shard_id, str(5000 + n), sub, key or key_in(shard), None, T0 + at, b"payload", n)


def tally_of(outcomes: list[tuple[UserRecord, Status]]) -> Tally:
    tally = Tally([PARENT.shard_id, LOW.shard_id, HIGH.shard_id])
    reasons = {Status.LOST: "not in the ledger", Status.DUPLICATE: "processed 2 times", Status.IN_FLIGHT: "grace"}
    counts = {Status.PROCESSED: 1, Status.DUPLICATE: 2}
    tally.add(
        [r for r, _ in outcomes],
        [Judgement(s, reasons.get(s, "")) for _, s in outcomes],
        [counts.get(s, 0) for _, s in outcomes],
        LEDGER,
    )
    return tally


def document(fail_on_duplicates: bool = False) -> dict[str, Any]:
    outcomes = [(rec(PARENT, n, at=n), Status.PROCESSED) for n in range(10)]
    outcomes[3] = (rec(PARENT, 3, at=3), Status.LOST)
    outcomes[4] = (rec(PARENT, 4, at=4), Status.LOST)
    outcomes[7] = (rec(PARENT, 7, at=7), Status.LOST)
    outcomes += [(rec(LOW, 20, sub=s, at=20), Status.PROCESSED) for s in range(3)]
    outcomes += [(rec(LOW, 21, at=21), Status.DUPLICATE), (rec(HIGH, 30, at=30), Status.IN_FLIGHT)]
    # a sub-record whose key belongs to the other child: the KCL drops it
    outcomes += [(rec(HIGH, 31, sub=1, at=31, key=key_in(LOW)), Status.LOST)]
    stats = {
        s.shard_id: ReadStats(records=1, ended="caught_up", started_at=T0, finished_at=T0 + 1) for s in (LOW, HIGH)
    }
    stats[PARENT.shard_id] = ReadStats(records=10, ended="shard_end", reads=3)
    return build(
        stream="orders",
        shards=[PARENT, LOW, HIGH],
        stats=stats,
        tally=tally_of(outcomes),
        checkpoints={
            PARENT.shard_id: Checkpoint(LeasePosition.SHARD_END),
            LOW.shard_id: Checkpoint(LeasePosition.SEQUENCE, "5021", 0),
            HIGH.shard_id: Checkpoint(LeasePosition.TRIM_HORIZON),
        },
        options={"grace_seconds": 60},
        started=T0 + 100,
        finished=T0 + 102.5,
        fail_on_duplicates=fail_on_duplicates,
    )


def test_the_document_has_the_issue_shape() -> None:
    doc = document()
    assert doc["stream"] == "orders" and doc["verdict"] == "gaps" and doc["exit_code"] == 1
    assert doc["counts"] == {
        "checked": 16,
        "processed": 10,
        "lost": 4,
        "in_flight": 1,
        "duplicate": 1,
        "unknown": 0,
    }
    first = doc["shards"][0]
    assert first["shard_id"] == PARENT.shard_id and first["parent_shard_ids"] == []
    assert (first["checked"], first["lost"], first["state"], first["checkpoint"]) == (10, 3, "closed", "shard_end")
    assert doc["shards"][1]["parent_shard_ids"] == [PARENT.shard_id]
    assert doc["shards"][1]["checkpoint"] == "5021/0"
    assert doc["ledger"] == LEDGER
    statuses = [
        (r["shard_id"][-1], r["sequence_number"], r["sub_sequence_number"], r["status"]) for r in doc["records"]
    ]
    assert statuses == [
        ("0", "5003", 0, "lost"),
        ("0", "5004", 0, "lost"),
        ("0", "5007", 0, "lost"),
        ("1", "5021", 0, "duplicate"),
        ("2", "5030", 0, "in_flight"),
        ("2", "5031", 1, "lost"),
    ]
    for record in doc["records"]:
        assert set(record) >= {
            "shard_id",
            "sequence_number",
            "sub_sequence_number",
            "status",
            "partition_key",
            "approximate_arrival_timestamp",
        }
    assert doc["records"][0]["approximate_arrival_timestamp"] == "2027-01-15T08:00:03.000Z"
    assert "outside the shard's range" in doc["records"][-1]["reason"]
    assert "outside" not in doc["records"][0]["reason"]
    json.dumps(doc)  # serialisable as is


def test_lost_records_read_one_after_another_form_one_range() -> None:
    ranges = [
        (r["shard_id"][-1], r["first"]["sequence_number"], r["last"]["sequence_number"], r["count"])
        for r in document()["lost_ranges"]
    ]
    assert ranges == [("0", "5003", "5004", 2), ("0", "5007", "5007", 1), ("2", "5031", "5031", 1)]


def test_timeline_counts_add_up() -> None:
    doc = document()
    for shard in doc["shards"]:
        points = shard["timeline"]
        assert sum(p[1] for p in points) == shard["checked"]
        assert sum(p[2] for p in points) == shard["processed"] + shard["duplicate"]
        assert sum(p[3] for p in points) == shard["lost"]
    assert len(doc["shards"][0]["timeline"]) == len(doc["shards"][2]["timeline"])  # one time axis


def test_csv_lists_every_record_not_processed() -> None:
    rows = list(csv.DictReader(io.StringIO(render(document(), "csv"))))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [(r["sequence_number"], r["status"]) for r in rows] == [
        ("5003", "lost"),
        ("5004", "lost"),
        ("5007", "lost"),
        ("5021", "duplicate"),
        ("5030", "in_flight"),
        ("5031", "lost"),
    ]


def test_table_shows_verdict_shards_and_ranges() -> None:
    text = render(document(), "table")
    assert "GAPS (exit 1)" in text
    assert "16 records checked: 10 processed, 1 duplicate, 1 in_flight, 0 unknown, 4 lost" in text
    assert "Lost records (4, in 3 ranges)" in text
    assert "5003/0" in text and "5004/0" in text
    assert "processed more than once" in text and "processed 2 times" not in text  # reasons grouped
    assert "\x1b[" not in text  # no colour codes unless asked


def test_html_is_self_contained_with_a_chart_per_shard() -> None:
    page = render(document(), "html")
    assert page.startswith("<!DOCTYPE html>")
    assert len(re.findall(r'<svg class="chart" data-shard="', page)) == 3
    assert len(re.findall(r'<polyline class="lost"', page)) == 3
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing to fetch
    assert "<script" not in page


def test_verdicts_in_the_headline() -> None:
    assert headline(document()).startswith("orders: GAPS (exit 1): 16 records checked")
