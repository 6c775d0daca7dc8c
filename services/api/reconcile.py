"""What the reconcile endpoint takes and answers, and the pure work between: no I/O here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from streamwreck.core.answers import REQUEST, DuplicateRecord, Problem, ReconcileResponse, RecordRef
from streamwreck.core.errors import RejectedInputError
from streamwreck.core.ledger import Entry, LedgerHealth
from streamwreck.core.records import RecordId, SequenceNumber, error_message, validate_name


class RequestProblem(RejectedInputError):
    """A request the API refuses: answered with ``status`` and a :class:`Problem` body, never retried as it is."""

    def __init__(self, status: int, error: str, message: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.problem = Problem(error=error, message=message, detail=detail)


_LEGACY = TypeAdapter(list[SequenceNumber])


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
        request = REQUEST.validate_python(document)
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


def reconcile(
    records: Sequence[RecordId], entries: Mapping[RecordId, Entry], health: LedgerHealth
) -> ReconcileResponse:
    """The answer (:class:`ReconcileResponse`, serialized by :data:`ANSWER`)."""
    unprocessed: list[RecordRef] = []
    duplicates: list[DuplicateRecord] = []
    unreadable: list[RecordRef] = []
    seen: set[RecordId] = set()
    for record in records:
        entry = entries.get(record)
        if entry is None:
            unprocessed.append(_ref(record))
        elif (entry.count > 1 or not entry.readable) and record not in seen:
            seen.add(record)
            if entry.readable:
                duplicates.append(DuplicateRecord(**_ref(record), count=entry.count))
            else:
                unreadable.append(_ref(record))
    return {
        "checked": len(records),
        "unprocessed": unprocessed,
        "duplicates": duplicates,
        "unreadable": unreadable,
        "ledger": {
            "healthy": health.healthy,
            "evictions": health.evictions,
            "flushes": health.flushes,
            "started_at": health.started_at,
            "ttl_seconds": health.ttl_seconds,
        },
    }


def _ref(record: RecordId) -> RecordRef:
    return {
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "sub_sequence_number": record.sub_sequence_number,
    }
