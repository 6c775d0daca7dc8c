"""What the reconcile endpoint takes and answers, and the pure work between: no I/O here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, NotRequired

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from streamwreck.core.ledger import Entry, LedgerHealth
from streamwreck.core.records import (
    RecordId,
    RecordRef,
    SequenceNumber,
    ShardId,
    StreamName,
    SubSequenceNumber,
    error_message,
    validate_name,
)

EXAMPLE_SEQUENCE = "49590338271490256608559692538361571095921575989136588898"


class RecordInput(TypedDict):
    """A record of the request's stream."""

    shard_id: ShardId
    sequence_number: SequenceNumber
    sub_sequence_number: NotRequired[SubSequenceNumber]


@with_config(
    ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "stream": "orders",
                    "records": [
                        {
                            "shard_id": "shardId-000000000000",
                            "sequence_number": EXAMPLE_SEQUENCE,
                            "sub_sequence_number": 0,
                        }
                    ],
                }
            ]
        },
    )
)
class ReconcileRequest(TypedDict):
    """Records of one stream to check against the ledger (validated as plain dicts: 10,000 in a few ms)."""

    stream: StreamName
    records: Annotated[
        list[RecordInput],
        Field(
            description="The records to check, at most the server's limit (default 10,000).",
            examples=[[{"shard_id": "shardId-000000000000", "sequence_number": EXAMPLE_SEQUENCE}]],
        ),
    ]


class DuplicateRecord(RecordRef):
    count: int = Field(description="How many distinct processed events named the record (2 or more).", examples=[2])


class LedgerStatus(BaseModel):
    """What the ledger can vouch for: a record missing from it is only proof of loss if nothing was forgotten."""

    healthy: bool = Field(description="Every memcached node answered.", examples=[True])
    evictions: int = Field(
        description="Entries memcached evicted for memory since it started (all nodes).", examples=[0]
    )
    flushes: int = Field(
        description="flush_all commands memcached took since it started (all nodes): entries may be gone.", examples=[0]
    )
    started_at: datetime | None = Field(
        description="When the most recently started memcached node started: entries written before it are gone.",
        examples=["2026-11-27T09:00:00Z"],
    )
    ttl_seconds: int = Field(description="How long an entry lives after its last write.", examples=[604800])


class ReconcileResponse(BaseModel):
    checked: int = Field(description="How many records the request named.", examples=[1000])
    unprocessed: list[RecordRef] = Field(
        description="The records with no ledger entry, in request order. Missing is not proof of loss when the "
        "ledger evicted or restarted, or the record is older than the ledger's TTL: see `ledger`.",
        examples=[
            [{"shard_id": "shardId-000000000001", "sequence_number": EXAMPLE_SEQUENCE, "sub_sequence_number": 0}]
        ],
    )
    duplicates: list[DuplicateRecord] = Field(
        description="Records that more than one processed event named.",
        examples=[[{"shard_id": "shardId-000000000000", "sequence_number": "7", "sub_sequence_number": 0, "count": 2}]],
    )
    ledger: LedgerStatus = Field(description="What the ledger can vouch for when it answers `unprocessed`.")


class Problem(BaseModel):
    """The body of every error answer."""

    error: str = Field(
        description="A stable code, e.g. `invalid_record`, `too_many_records`, `ledger_unavailable`.",
        examples=["invalid_record"],
    )
    message: str = Field(
        description="What is wrong, in one line.",
        examples=["record 3: records[3].sequence_number: must be 0 or a decimal number of up to 129 digits ..."],
    )
    detail: list[dict[str, Any]] | None = Field(
        None,
        description="Per-field problems, where there are several.",
        examples=[[{"loc": ["records", 3, "sequence_number"], "msg": "must be 0 or a decimal number ..."}]],
    )


class RequestProblem(Exception):
    def __init__(self, status: int, error: str, message: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = Problem(error=error, message=message, detail=detail)


_REQUEST = TypeAdapter(ReconcileRequest)
_LEGACY = TypeAdapter(list[SequenceNumber])
_SHARD = TypeAdapter(ShardId)


def parse_request(document: Any, stream: str | None, shard_id: str | None, limit: int) -> list[RecordId]:
    """Either shape of request as RecordIds; RequestProblem (413 or 422) naming what is wrong."""
    if isinstance(document, list):
        return _parse_legacy(document, stream, shard_id, limit)
    if not isinstance(document, dict):
        raise RequestProblem(422, "invalid_body", "the body must be a JSON object {stream, records} or an array")
    records = document.get("records")
    if isinstance(records, list):
        _check_limit(len(records), limit)
    try:
        request = _REQUEST.validate_python(document)
    except ValidationError as exc:
        raise _invalid(exc, ()) from None
    stream = request["stream"]
    return [
        RecordId(stream, r["shard_id"], r["sequence_number"], r.get("sub_sequence_number", 0))
        for r in request["records"]
    ]


def _parse_legacy(document: list[Any], stream: str | None, shard_id: str | None, limit: int) -> list[RecordId]:
    _check_limit(len(document), limit)
    missing = [name for name, value in (("stream", stream), ("shard_id", shard_id)) if not value]
    if missing:
        raise RequestProblem(
            422, "missing_query", f"an array body needs ?stream=...&shard_id=... in the query; missing {missing[0]}"
        )
    assert stream is not None and shard_id is not None
    for name, value in (("stream", stream), ("shard_id", shard_id)):
        try:
            validate_name(value)
        except ValueError as exc:
            raise RequestProblem(422, "invalid_query", f"query {name}: {exc}") from None
    try:
        sequences = _LEGACY.validate_python(document)
    except ValidationError as exc:
        raise _invalid(exc, ("records",)) from None
    return [RecordId(stream, shard_id, seq, 0) for seq in sequences]


def _check_limit(count: int, limit: int) -> None:
    if count > limit:
        raise RequestProblem(
            413, "too_many_records", f"{count} records in one request; the limit is {limit}: send them in batches"
        )


def _invalid(exc: ValidationError, prefix: tuple[str, ...]) -> RequestProblem:
    detail = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = prefix + tuple(error["loc"])
        detail.append({"loc": list(loc), "msg": error_message(error)})
    first = detail[0]
    index = next((part for part in first["loc"] if isinstance(part, int)), None)
    where = _dotted(first["loc"])
    lead = f"record {index}: " if index is not None else ""
    return RequestProblem(
        422, "invalid_record" if index is not None else "invalid_body", f"{lead}{where}: {first['msg']}", detail
    )


def _dotted(loc: Sequence[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def reconcile(records: Sequence[RecordId], entries: Mapping[RecordId, Entry], health: LedgerHealth) -> dict[str, Any]:
    """The response body (plain data: 10,000 records are built much faster without models)."""
    unprocessed = [_ref(record) for record in records if record not in entries]
    duplicates = [
        {**_ref(record), "count": entries[record].count}
        for record in dict.fromkeys(records)
        if record in entries and entries[record].count > 1
    ]
    started = health.started_at
    return {
        "checked": len(records),
        "unprocessed": unprocessed,
        "duplicates": duplicates,
        "ledger": {
            "healthy": health.healthy,
            "evictions": health.evictions,
            "flushes": health.flushes,
            "started_at": started.isoformat().replace("+00:00", "Z") if started else None,
            "ttl_seconds": health.ttl_seconds,
        },
    }


def _ref(record: RecordId) -> dict[str, Any]:
    return {
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "sub_sequence_number": record.sub_sequence_number,
    }
