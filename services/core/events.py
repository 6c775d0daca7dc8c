"""The processed event: "these records of one shard were processed". Pure: building, sizing, parsing.

Schema ``streamwreck.processed.v1`` (JSON)::

    {"schema": "streamwreck.processed.v1", "event_id": "4f1c...", "stream": "orders",
     "shard_id": "shardId-000000000001", "worker_id": "host:1234", "processed_at": "2026-11-27T16:00:00.123Z",
     "records": [["49590338271490256608559692538361571095921575989136588898", 0], ...]}

``records`` holds ``[sequence number, sub-sequence number]`` pairs: compact, so that one SNS request carries
thousands of records. ``event_id`` is unique per event; a redelivered event carries the same id and counts once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from streamwreck.core.batching import batched
from streamwreck.core.clock import iso
from streamwreck.core.errors import RejectedInputError
from streamwreck.core.records import (
    MAX_SUB_SEQUENCE,
    RecordId,
    SequenceNumber,
    ShardId,
    StreamName,
    SubSequenceNumber,
    error_message,
    validate_name,
    validate_sequence_number,
)

SCHEMA = "streamwreck.processed.v1"
# SNS: a PublishBatch request carries at most 10 messages and 256 KiB in all (messages and attributes).
MAX_BATCH_ENTRIES = 10
MAX_BATCH_BYTES = 256 * 1024 - 4 * 1024  # leave room for attributes and the entry ids
MAX_EVENT_BYTES = MAX_BATCH_BYTES // MAX_BATCH_ENTRIES  # ten full events fit one request
MAX_WORKER_ID = 256

Pair = tuple[str, int]


class ProcessedEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_: Literal["streamwreck.processed.v1"] = Field(alias="schema")
    event_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
    stream: StreamName
    shard_id: ShardId
    worker_id: Annotated[str, Field(max_length=MAX_WORKER_ID)] = ""
    processed_at: AwareDatetime
    records: Annotated[list[tuple[SequenceNumber, SubSequenceNumber]], Field(min_length=1)]

    def record_ids(self) -> list[RecordId]:
        return [RecordId(self.stream, self.shard_id, seq, sub) for seq, sub in self.records]


def encode(
    event_id: str, stream: str, shard_id: str, worker_id: str, processed_at: datetime, records: Sequence[Pair]
) -> str:
    head = json.dumps(
        {
            "schema": SCHEMA,
            "event_id": event_id,
            "stream": stream,
            "shard_id": shard_id,
            "worker_id": worker_id,
            "processed_at": iso(processed_at),
        },
        separators=(",", ":"),
    )
    body = ",".join(f'["{seq}",{sub}]' for seq, sub in records)
    return f'{head[:-1]},"records":[{body}]}}'


def chunk_events(
    stream: str,
    shard_id: str,
    records: Iterable[Pair],
    worker_id: str,
    processed_at: datetime | None = None,
    max_bytes: int = MAX_EVENT_BYTES,
) -> Iterator[str]:
    """Encode ``records`` of one shard as as few events as fit ``max_bytes`` each (UTF-8 bytes).

    Invalid input raises ValueError here, before anything is sent: an event the recorder would reject would
    dead-letter every record in it after the caller had checkpointed them.
    """
    validate_name(stream)
    validate_name(shard_id)
    if len(worker_id) > MAX_WORKER_ID:
        raise ValueError(f"worker_id is longer than {MAX_WORKER_ID} characters")
    at = processed_at or datetime.now(UTC)
    overhead = len(encode(uuid.uuid4().hex, stream, shard_id, worker_id, at, []).encode())
    batch: list[Pair] = []
    size = overhead
    for seq, sub in records:
        if not (type(sub) is int and 0 <= sub <= MAX_SUB_SEQUENCE):
            raise ValueError(f"sub-sequence number {sub!r} of record {seq!r} is not an integer in 0..2^63-1")
        validate_sequence_number(seq)
        cost = len(seq) + len(str(sub)) + 5  # ["seq",sub]
        if batch and size + cost + 1 > max_bytes:  # +1: the comma before it
            yield encode(uuid.uuid4().hex, stream, shard_id, worker_id, at, batch)
            batch, size = [], overhead
        if overhead + cost > max_bytes:
            raise ValueError(f"max_bytes {max_bytes} cannot hold even one record")
        size += cost + (1 if batch else 0)
        batch.append((seq, sub))
    if batch:
        yield encode(uuid.uuid4().hex, stream, shard_id, worker_id, at, batch)


def batch_requests(
    messages: Iterable[str], max_entries: int = MAX_BATCH_ENTRIES, max_bytes: int = MAX_BATCH_BYTES
) -> Iterator[list[str]]:
    """Group messages into PublishBatch requests: at most ``max_entries`` and ``max_bytes`` in all."""
    return batched(messages, max_entries, max_bytes, lambda message: len(message.encode()))


def parse_body(body: str) -> ProcessedEvent:
    """An SQS message body: the raw event, or SNS's JSON envelope around it. RejectedInputError if neither."""
    try:
        document: Any = json.loads(body)
        if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
            document = json.loads(document["Message"])
        return ProcessedEvent.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise RejectedInputError(f"not a {SCHEMA} event: {where}: {error_message(first)}") from None
    except json.JSONDecodeError as exc:
        raise RejectedInputError(f"not JSON: {exc}") from None
    except (ValueError, TypeError, RecursionError) as exc:  # e.g. too deeply nested, or a 5,000-digit number
        raise RejectedInputError(f"not a {SCHEMA} event: {type(exc).__name__}: {str(exc)[:200]}") from None
