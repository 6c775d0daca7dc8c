"""The dead-letter queue as evidence (peek, never consume), moving its messages back, and the verdict's rules for
dead-lettered records and stray KPL aggregates. A scripted SQS stand-in; moto in tests/integration."""

from __future__ import annotations

import itertools
from typing import Any

from streamwreck.checker.dead_letters import move, peek
from streamwreck.checker.verdict import DEAD_LETTERED, STRAY_AGGREGATE, Checkpoint, LeasePosition, LedgerView, Status
from streamwreck.checker.verdict import judge as judge_record
from streamwreck.core.events import chunk_events

NOW = 1_800_000_000.0
INTACT = LedgerView(healthy=True, evictions=0, started_at=NOW - 36_000, ttl_seconds=7 * 86_400, flushes=0)


def judge(**evidence: Any) -> Any:
    base: dict[str, Any] = {
        "arrival": NOW - 3600,
        "sequence_number": "5",
        "sub_sequence_number": 0,
        "count": 0,
        "checkpoint": None,
        "ledger": INTACT,
        "now": NOW,
        "grace": 60,
    }
    return judge_record(**{**base, **evidence})


def test_a_dead_lettered_record_is_unknown_with_that_reason_not_lost() -> None:
    assert judge() == (Status.LOST, "not in the ledger")
    assert judge(dead_lettered=True) == (Status.UNKNOWN, DEAD_LETTERED)
    assert judge(dead_lettered=True, checkpoint=Checkpoint(LeasePosition.SEQUENCE, "1")) == (
        Status.UNKNOWN,
        DEAD_LETTERED,
    )
    assert judge(dead_lettered=True, count=1).status is Status.PROCESSED  # recorded after all (redriven)
    assert judge(dead_lettered=True, count=2).status is Status.DUPLICATE


def test_a_dead_letter_queue_not_read_in_full_leaves_no_record_lost() -> None:
    judgement = judge(dead_letters_unread="3 messages in flight elsewhere")
    assert judgement.status is Status.UNKNOWN and "not read in full (3 messages" in judgement.reason
    assert judge(dead_letters_unread="x", arrival=NOW - 5).status is Status.IN_FLIGHT


def test_a_record_of_a_stray_aggregate_says_why_it_was_lost() -> None:
    assert judge(stray_aggregate=True) == (Status.LOST, STRAY_AGGREGATE)
    assert "KCL drops every user record" in STRAY_AGGREGATE
    assert judge(stray_aggregate=True, count=1).status is Status.PROCESSED
    assert judge(stray_aggregate=True, ledger=INTACT.__class__(False, 0, NOW - 36_000, 86_400)).status is Status.UNKNOWN


class FakeSqs:
    """Visibility as SQS keeps it (by a step counter, not a clock); receipt handles change on every receive."""

    def __init__(self, bodies: dict[str, list[str]]) -> None:
        self.queues: dict[str, dict[str, dict[str, Any]]] = {
            url: {f"{url}-{i}": {"Body": body, "hidden": False} for i, body in enumerate(items)}
            for url, items in bodies.items()
        }
        self.handles: dict[str, tuple[str, str]] = {}
        self.counter = itertools.count()
        self.refuse_sends = False

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        hidden = sum(m["hidden"] for m in self.queues[QueueUrl].values())
        return {"Attributes": {"ApproximateNumberOfMessagesNotVisible": str(hidden)}}

    def receive_message(self, QueueUrl: str, MaxNumberOfMessages: int, VisibilityTimeout: int, **_: Any) -> Any:
        out = []
        for message_id, message in self.queues[QueueUrl].items():
            if len(out) == MaxNumberOfMessages:
                break
            if message["hidden"]:
                continue
            message["hidden"] = VisibilityTimeout > 0
            handle = f"h{next(self.counter)}"
            self.handles[handle] = (QueueUrl, message_id)
            out.append({"MessageId": message_id, "ReceiptHandle": handle, "Body": message["Body"]})
        return {"Messages": out}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        for entry in Entries:
            url, message_id = self.handles[entry["ReceiptHandle"]]
            if message_id in self.queues[url]:
                self.queues[url][message_id]["hidden"] = entry["VisibilityTimeout"] > 0
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        if self.refuse_sends:
            return {"Successful": [], "Failed": [{"Id": e["Id"]} for e in Entries]}
        for entry in Entries:
            self.queues[QueueUrl][f"moved-{next(self.counter)}"] = {"Body": entry["MessageBody"], "hidden": False}
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        for entry in Entries:
            url, message_id = self.handles[entry["ReceiptHandle"]]
            self.queues[url].pop(message_id, None)
        return {"Successful": [{"Id": e["Id"]} for e in Entries]}


def events(stream: str, shard: str, sequences: list[str]) -> list[str]:
    return list(chunk_events(stream, shard, [(s, 0) for s in sequences], "w", max_bytes=400))


def test_peek_finds_the_wanted_records_and_leaves_every_message_visible() -> None:
    bodies = [
        *events("s", "shardId-0", [str(n) for n in range(1, 60)]),
        "{garbage",
        *events("other", "shardId-0", ["7"]),
    ]
    sqs = FakeSqs({"dlq": bodies})
    wanted = {("shardId-0", "7", 0), ("shardId-0", "59", 0), ("shardId-0", "99", 0), ("shardId-1", "8", 0)}
    found = peek(sqs, "dlq", "s", wanted)
    assert found.found == {("shardId-0", "7", 0), ("shardId-0", "59", 0)}
    assert found.complete and found.messages == len(bodies) and found.unreadable == 1
    assert found.events == len(bodies) - 2
    assert not any(m["hidden"] for m in sqs.queues["dlq"].values())  # nothing consumed, nothing left hidden
    assert len(sqs.queues["dlq"]) == len(bodies)


def test_peek_is_incomplete_when_bounded_or_when_messages_are_in_flight_elsewhere() -> None:
    sqs = FakeSqs({"dlq": events("s", "shardId-0", [str(n) for n in range(1, 200)])})
    cut = peek(sqs, "dlq", "s", {("shardId-0", "199", 0)}, max_messages=5)
    assert not cut.complete and "first 10 messages" in cut.why_incomplete
    assert not any(m["hidden"] for m in sqs.queues["dlq"].values())
    next(iter(sqs.queues["dlq"].values()))["hidden"] = True  # another reader holds one
    held = peek(sqs, "dlq", "s", set())
    assert not held.complete and "in flight elsewhere" in held.why_incomplete


def test_move_sends_every_message_to_the_queue_and_deletes_only_what_was_sent() -> None:
    sqs = FakeSqs({"dlq": [f"m{i}" for i in range(23)], "queue": []})
    done = move(sqs, "dlq", "queue")
    assert (done.moved, done.failed) == (23, 0)
    assert sqs.queues["dlq"] == {} and sorted(m["Body"] for m in sqs.queues["queue"].values()) == sorted(
        f"m{i}" for i in range(23)
    )
    sqs = FakeSqs({"dlq": ["a", "b"], "queue": []})
    sqs.refuse_sends = True
    refused = move(sqs, "dlq", "queue")
    assert (refused.moved, refused.failed) == (0, 2)
    assert len(sqs.queues["dlq"]) == 2 and not any(m["hidden"] for m in sqs.queues["dlq"].values())
