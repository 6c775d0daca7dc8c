"""The recorder's dead-letter queue as evidence, and the way back out of it.

An event the recorder could not store (malformed, from another topic, or failing past the queue's ``maxReceiveCount``)
ends in the dead-letter queue: its records were processed, but the ledger does not know it. :func:`peek` looks
through the queue without consuming anything, so the check can call those records ``unknown`` (processed, not
recorded) instead of ``lost``; :func:`move` puts the dead-lettered messages back on the recorder's queue once the
cause is fixed (``streamwreck redrive-dlq``).

Peeking: each message is received with a short visibility timeout (so that the walk sees every message once) and
made visible again at once (ChangeMessageVisibility 0) when the walk ends, whatever happens. Nothing is deleted; each
peek adds one to the messages' receive count, which matters only if the dead-letter queue has a redrive policy of
its own. The walk is bounded (messages and seconds); a walk that was cut short, or that found messages in flight
elsewhere (another reader holds them invisible), is ``complete=False``, and the check then calls no record lost that
such a message might name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from streamwreck.core.aws import AWS_ERRORS, session, translate
from streamwreck.core.errors import RejectedInputError
from streamwreck.core.events import parse_body

RecordKey = tuple[str, str, int]  # shard id, sequence number, sub-sequence number (as streamwreck.checker.tally)

PEEK_VISIBILITY_SECONDS = 30  # how long a peeked message stays hidden if the checker dies before releasing it
MAX_PEEK_MESSAGES = 10_000
MAX_PEEK_SECONDS = 60.0
EMPTY_RECEIVES = 2  # in a row (each a 1 s long poll, which asks every SQS server): the walk has seen the queue
MAX_MOVE_MESSAGES = 100_000


@dataclass
class DeadLetters:
    """What a peek found: the wanted records that dead-lettered events name, and how far it can be trusted."""

    queue_url: str
    found: set[RecordKey] = field(default_factory=set)
    messages: int = 0  # distinct messages seen
    events: int = 0  # of them, processed events of the checked stream
    unreadable: int = 0  # messages that are not processed events
    complete: bool = True
    why_incomplete: str = ""

    def summary(self) -> dict[str, Any]:
        return {
            "queue_url": self.queue_url,
            "messages": self.messages,
            "events": self.events,
            "unreadable": self.unreadable,
            "records_found": len(self.found),
            "complete": self.complete,
            "why_incomplete": self.why_incomplete or None,
        }


def sqs_client() -> Any:
    try:
        return session().client("sqs")
    except AWS_ERRORS as exc:
        raise translate(exc, "creating the SQS client") from exc


def peek(
    sqs: Any,
    queue_url: str,
    stream: str,
    wanted: Collection[RecordKey],
    *,
    max_messages: int = MAX_PEEK_MESSAGES,
    max_seconds: float = MAX_PEEK_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> DeadLetters:
    """Look at every message of the dead-letter queue (within the bounds) without consuming any; which of
    ``wanted`` (records of ``stream``) their events name."""
    result = DeadLetters(queue_url)
    wanted_keys = set(wanted)
    in_flight = _attribute(sqs, queue_url, "ApproximateNumberOfMessagesNotVisible")
    if in_flight:
        result.complete = False
        result.why_incomplete = f"{in_flight} of its messages were in flight elsewhere (invisible)"
    handles: dict[str, str] = {}  # message id -> its latest receipt handle
    deadline = clock() + max_seconds
    try:
        empty = 0
        while empty < EMPTY_RECEIVES:
            if len(handles) >= max_messages or clock() > deadline:
                result.complete = False
                result.why_incomplete = f"only the first {len(handles):,} messages were read (the walk is bounded)"
                break
            messages = _receive(sqs, queue_url, PEEK_VISIBILITY_SECONDS, wait=1)
            fresh = [m for m in messages if m["MessageId"] not in handles]
            for message in messages:
                handles[message["MessageId"]] = message["ReceiptHandle"]
            empty = 0 if fresh else empty + 1
            for message in fresh:
                _note(result, message, stream, wanted_keys)
    finally:
        release(sqs, queue_url, list(handles.values()))
    result.messages = len(handles)
    return result


def _note(result: DeadLetters, message: dict[str, Any], stream: str, wanted: set[RecordKey]) -> None:
    try:
        event = parse_body(message["Body"])
    except RejectedInputError:
        result.unreadable += 1
        return
    if event.stream != stream:
        return
    result.events += 1
    for sequence, sub in event.records:
        key = (event.shard_id, sequence, sub)
        if key in wanted:
            result.found.add(key)


def _receive(sqs: Any, queue_url: str, visibility: int, wait: int) -> list[dict[str, Any]]:
    try:
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=visibility,
            WaitTimeSeconds=wait,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
    except AWS_ERRORS as exc:
        raise translate(exc, f"reading the dead-letter queue {queue_url}", not_found=f"queue {queue_url}") from exc
    messages: list[dict[str, Any]] = response.get("Messages", [])
    return messages


def _attribute(sqs: Any, queue_url: str, name: str) -> int:
    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[name])["Attributes"]
    except AWS_ERRORS as exc:
        raise translate(exc, f"reading the attributes of {queue_url}", not_found=f"queue {queue_url}") from exc
    return int(attributes.get(name, 0))


def release(sqs: Any, queue_url: str, handles: list[str]) -> None:
    """Make received messages visible again at once (best effort: what fails reappears after its timeout)."""
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(handles[start : start + 10])
        ]
        try:
            sqs.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
        except AWS_ERRORS:
            return  # they come back on their own after PEEK_VISIBILITY_SECONDS


@dataclass
class Moved:
    moved: int = 0
    failed: int = 0


def move(
    sqs: Any,
    source_url: str,
    target_url: str,
    *,
    max_messages: int = MAX_MOVE_MESSAGES,
    visibility: int = 60,
    on_batch: Callable[[Moved], None] | None = None,
) -> Moved:
    """Move every message of ``source_url`` (the dead-letter queue) to ``target_url`` (the recorder's queue):
    receive, send the same body and attributes, delete only what was sent. Bounded by ``max_messages``; stops when
    the source is empty. A message whose send failed is made visible again and counted in ``failed``."""
    done = Moved()
    empty = 0
    while empty < EMPTY_RECEIVES and done.moved + done.failed < max_messages:
        messages = _receive(sqs, source_url, visibility, wait=1)
        if not messages:
            empty += 1
            continue
        empty = 0
        sent, failed = _send(sqs, target_url, messages)
        _delete(sqs, source_url, [m["ReceiptHandle"] for m in sent])
        release(sqs, source_url, [m["ReceiptHandle"] for m in failed])
        done.moved += len(sent)
        done.failed += len(failed)
        if on_batch is not None:
            on_batch(done)
        if failed and not sent:
            break  # the target refuses everything: stop rather than spin
    return done


def _send(sqs: Any, target_url: str, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
    entries = []
    for index, message in enumerate(messages):
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
        if message.get("MessageAttributes"):
            entry["MessageAttributes"] = message["MessageAttributes"]
        group = message.get("Attributes", {}).get("MessageGroupId")
        if group:  # a FIFO queue: keep the group, and the id as the deduplication id
            entry["MessageGroupId"] = group
            entry["MessageDeduplicationId"] = message["MessageId"]
        entries.append(entry)
    try:
        response = sqs.send_message_batch(QueueUrl=target_url, Entries=entries)
    except AWS_ERRORS as exc:
        raise translate(exc, f"sending to {target_url}", not_found=f"queue {target_url}") from exc
    ok = {item["Id"] for item in response.get("Successful", [])}
    sent = [m for i, m in enumerate(messages) if str(i) in ok]
    failed = [m for i, m in enumerate(messages) if str(i) not in ok]
    return sent, failed


def _delete(sqs: Any, queue_url: str, handles: list[str]) -> None:
    if not handles:
        return
    entries = [{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(handles)]
    try:
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    except AWS_ERRORS as exc:
        # Sent but not deleted: the recorder counts a redelivered event once, so a second move is harmless.
        raise translate(exc, f"deleting moved messages from {queue_url}") from exc
