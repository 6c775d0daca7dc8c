from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamwreck.core.errors import RejectedInputError
from streamwreck.core.events import (
    MAX_BATCH_BYTES,
    MAX_BATCH_ENTRIES,
    MAX_EVENT_BYTES,
    batch_requests,
    chunk_events,
    parse_body,
)
from streamwreck.core.records import RecordId

EVENTS = Path(__file__).parents[1] / "events"
SEQ = "49590338271490256608559692538361571095921575989136588898"


def _records(n: int, digits: int = 56) -> list[tuple[str, int]]:
    return [(str(10 ** (digits - 1) + i), i % 3) for i in range(n)]


def test_sample_event_parses_raw_and_in_the_sns_envelope() -> None:
    raw = (EVENTS / "processed-v1.json").read_text()
    enveloped = (EVENTS / "processed-v1-sns-envelope.json").read_text()
    for body in (raw, enveloped):
        event = parse_body(body)
        assert event.event_id == "0b1e6f3f5c2a4d9e8f7a6b5c4d3e2f1a"
        assert event.record_ids()[2] == RecordId("orders", "shardId-000000000001", str(int(SEQ) + 2), 2)
        assert event.processed_at == datetime(2026, 11, 27, 16, 0, 0, 123000, tzinfo=UTC)


def test_chunks_respect_the_size_limit_and_keep_every_record_in_order() -> None:
    records = _records(5000)
    events = list(chunk_events("orders", "shardId-000000000000", records, "w", max_bytes=MAX_EVENT_BYTES))
    assert all(len(e.encode()) <= MAX_EVENT_BYTES for e in events)
    # nearly full: no more events than the sizes need
    total = sum(len(e.encode()) for e in events)
    assert len(events) == -(-total // MAX_EVENT_BYTES) or len(events) == -(-total // MAX_EVENT_BYTES) + 1
    parsed = [parse_body(e) for e in events]
    assert [pair for p in parsed for pair in p.records] == records
    assert len({p.event_id for p in parsed}) == len(parsed)


def test_chunk_at_exactly_the_limit() -> None:
    one = next(chunk_events("s", "sh", _records(1), "w", processed_at=datetime(2026, 1, 1, tzinfo=UTC)))
    size = len(one.encode())
    per_record = len(f'["{_records(1)[0][0]}",0],')
    # room for exactly three records
    limit = size + 2 * per_record
    events = list(chunk_events("s", "sh", [(r[0], 0) for r in _records(7)], "w", max_bytes=limit))
    assert [len(parse_body(e).records) for e in events] == [3, 3, 1]
    assert all(len(e.encode()) <= limit for e in events)


def test_limit_too_small_for_one_record_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot hold even one record"):
        list(chunk_events("s", "sh", _records(1), "w", max_bytes=100))


def test_requests_hold_ten_entries_and_fit_256_kib() -> None:
    events = list(chunk_events("orders", "shardId-000000000000", _records(20_000), "w"))
    requests = list(batch_requests(events))
    assert all(len(r) <= MAX_BATCH_ENTRIES for r in requests)
    assert all(sum(len(m.encode()) for m in r) <= MAX_BATCH_BYTES for r in requests)
    assert [m for r in requests for m in r] == events
    # 20,000 records of 56 digits: about 5 requests, i.e. well under 2 per 1,000 records
    assert len(requests) <= 6


def test_big_messages_split_requests_by_bytes() -> None:
    messages = ["x" * 100_000] * 5
    assert [len(r) for r in batch_requests(messages)] == [2, 2, 1]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[]", "not a streamwreck.processed.v1 event"),
        ('{"schema": "streamwreck.processed.v1"}', "event_id"),
        (json.dumps({"Type": "Notification", "Message": "{}"}), "schema"),
        (json.dumps({"Type": "Notification", "Message": "nope"}), "not JSON"),
    ],
)
def test_malformed_bodies_are_rejected(body: str, reason: str) -> None:
    with pytest.raises(RejectedInputError, match=reason):
        parse_body(body)


def test_invalid_sequence_in_an_event_is_rejected() -> None:
    event = json.loads((EVENTS / "processed-v1.json").read_text())
    event["records"][1] = ["012", 0]
    with pytest.raises(RejectedInputError, match=r"records\.1\.0"):
        parse_body(json.dumps(event))
