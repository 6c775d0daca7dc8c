"""What to do about lost records: export them with their payloads, or put them back onto a stream.

``--export FILE``: JSON lines, one lost record each, ``data`` base64-encoded; enough to inspect or replay them.
``--redrive-to STREAM``: PutRecords in batches (500 records, 5 MiB), each record with its own partition key (and
explicit hash key, if it had one), retrying the entries Kinesis refused (throttling) with backoff.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamwreck.checker.reading import UserRecord, backoff
from streamwreck.core.aws import AWS_ERRORS, translate
from streamwreck.core.batching import batched
from streamwreck.core.clock import iso
from streamwreck.core.errors import AwsError, StreamwreckError

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

MAX_ENTRIES = 500
MAX_REQUEST_BYTES = 5 * 1024 * 1024
MAX_ATTEMPTS = 10


def export_line(stream: str, record: UserRecord) -> str:
    return json.dumps(
        {
            "stream": stream,
            "shard_id": record.shard_id,
            "sequence_number": record.sequence_number,
            "sub_sequence_number": record.sub_sequence_number,
            "partition_key": record.partition_key,
            "explicit_hash_key": record.explicit_hash_key,
            "approximate_arrival_timestamp": iso(record.arrival),
            "data": base64.b64encode(record.data).decode("ascii"),
        }
    )


def export(path: Path, stream: str, records: Sequence[UserRecord]) -> int:
    try:
        with path.open("w", encoding="utf-8") as out:
            for record in records:
                out.write(export_line(stream, record) + "\n")
    except OSError as exc:
        raise StreamwreckError(f"cannot write --export file {path}: {exc.strerror or exc}") from None
    return len(records)


def entries(records: Sequence[UserRecord]) -> list[dict[str, Any]]:
    result = []
    for record in records:
        entry: dict[str, Any] = {"Data": record.data, "PartitionKey": record.partition_key}
        if record.explicit_hash_key:
            entry["ExplicitHashKey"] = record.explicit_hash_key
        result.append(entry)
    return result


def batches(items: Sequence[dict[str, Any]], max_entries: int = MAX_ENTRIES) -> Iterator[list[dict[str, Any]]]:
    """PutRecords requests: at most 500 (or ``max_entries``) entries and 5 MiB (data plus partition keys) each."""
    return batched(
        items,
        min(max_entries, MAX_ENTRIES),
        MAX_REQUEST_BYTES,
        lambda item: len(item["Data"]) + len(item["PartitionKey"].encode()),
    )


def put_all(
    kinesis: KinesisClient, stream: str, items: Sequence[dict[str, Any]], sleep: Callable[[float], None] = time.sleep
) -> list[dict[str, Any]]:
    """Put every entry, retrying refused ones; returns the PutRecords result entries in input order."""
    results: list[dict[str, Any]] = []
    for batch in batches(items):
        pending = list(range(len(batch)))
        done: dict[int, dict[str, Any]] = {}
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = kinesis.put_records(StreamName=stream, Records=[batch[i] for i in pending])  # type: ignore[misc]
            except AWS_ERRORS as exc:
                raise translate(exc, f"putting records onto {stream!r}", not_found=f"stream {stream!r}") from exc
            refused = []
            for index, result in zip(pending, response["Records"], strict=True):
                if "SequenceNumber" in result:
                    done[index] = dict(result)
                else:
                    refused.append(index)
            pending = refused
            if not pending:
                break
            sleep(backoff(attempt))
        if pending:
            raise AwsError(f"{len(pending)} records could not be put onto {stream!r} after {MAX_ATTEMPTS} attempts")
        results.extend(done[i] for i in range(len(batch)))
    return results


def redrive(kinesis: KinesisClient, stream: str, records: Sequence[UserRecord]) -> int:
    put_all(kinesis, stream, entries(records))
    return len(records)
