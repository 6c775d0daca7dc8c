"""``POST /reconcile`` on the wire, written once: the request, the answer and the error body.

The API validates requests with these types, serializes its answers through them (:data:`ANSWER`), and documents
both in its OpenAPI; the checker validates every answer with the same :data:`ANSWER` adapter before it trusts it.
They are TypedDicts, not models: pydantic validates and serializes 10,000 records of plain dicts in milliseconds,
without building an object per record.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

from streamwreck.core.records import SequenceNumber, ShardId, StreamName, SubSequenceNumber

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
    """Records of one stream to check against the ledger."""

    stream: StreamName
    records: Annotated[
        list[RecordInput],
        Field(
            description="The records to check, at most the server's limit (default 10,000).",
            examples=[[{"shard_id": "shardId-000000000000", "sequence_number": EXAMPLE_SEQUENCE}]],
        ),
    ]


class RecordRef(TypedDict):
    """A record of the request's stream, as the answer names it."""

    shard_id: ShardId
    sequence_number: SequenceNumber
    sub_sequence_number: SubSequenceNumber


class DuplicateRecord(RecordRef):
    """A record more than one processed event named."""

    count: Annotated[
        int, Field(ge=2, description="How many distinct processed events named the record (2 or more).", examples=[2])
    ]


class LedgerStatus(TypedDict):
    """What the ledger can vouch for: a record missing from it is only proof of loss if nothing was forgotten."""

    healthy: Annotated[bool, Field(description="Every memcached node answered.", examples=[True])]
    evictions: Annotated[
        int, Field(ge=0, description="Entries memcached evicted for memory since it started (all nodes).", examples=[0])
    ]
    # Not required: an API older than flush counting did not say, and the checker then cannot rule a flush out.
    flushes: NotRequired[
        Annotated[
            int,
            Field(
                ge=0,
                description="flush_all commands memcached took since it started (all nodes): entries may be gone.",
                examples=[0],
            ),
        ]
    ]
    started_at: Annotated[
        AwareDatetime | None,
        Field(
            description="When the most recently started memcached node started: entries written before it are gone.",
            examples=["2026-11-27T09:00:00Z"],
        ),
    ]
    ttl_seconds: Annotated[
        int, Field(ge=0, description="How long an entry lives after its last write.", examples=[604800])
    ]


class ReconcileResponse(TypedDict):
    """Which of the records the ledger has no entry for, which it has more than one event for, and how far it can
    be trusted."""

    checked: Annotated[int, Field(ge=0, description="How many records the request named.", examples=[1000])]
    unprocessed: Annotated[
        list[RecordRef],
        Field(
            description="The records with no ledger entry, in request order. Missing is not proof of loss when the "
            "ledger evicted or restarted, or the record is older than the ledger's TTL: see `ledger`.",
            examples=[
                [{"shard_id": "shardId-000000000001", "sequence_number": EXAMPLE_SEQUENCE, "sub_sequence_number": 0}]
            ],
        ),
    ]
    duplicates: Annotated[
        list[DuplicateRecord],
        Field(
            description="Records that more than one processed event named.",
            examples=[
                [{"shard_id": "shardId-000000000000", "sequence_number": "7", "sub_sequence_number": 0, "count": 2}]
            ],
        ),
    ]
    # Not required: an API older than the compact ledger did not say (its ledger could not tell).
    unreadable: NotRequired[
        Annotated[
            list[RecordRef],
            Field(
                description="Records whose ledger data could not be read (corrupt or cut short): the ledger cannot "
                "say whether they were processed, so they are neither processed nor missing.",
                examples=[[]],
            ),
        ]
    ]
    ledger: Annotated[LedgerStatus, Field(description="What the ledger can vouch for when it answers `unprocessed`.")]


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


REQUEST: TypeAdapter[ReconcileRequest] = TypeAdapter(ReconcileRequest)
ANSWER: TypeAdapter[ReconcileResponse] = TypeAdapter(ReconcileResponse)
LEDGER: TypeAdapter[LedgerStatus] = TypeAdapter(LedgerStatus)
