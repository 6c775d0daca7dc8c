"""Record identity and the ledger key: pure, no I/O.

A Kinesis sequence number is unique only within its shard, and one KPL-aggregated record carries many user records
under the same sequence number. A record is therefore identified by (stream, shard id, sequence number,
sub-sequence number); the sub-sequence number is 0 for a record that was not aggregated.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Annotated, NamedTuple

from pydantic import Field
from pydantic_core import ErrorDetails

# As the Kinesis API reference defines them.
SEQUENCE_PATTERN = r"0|[1-9][0-9]{0,128}"
NAME_PATTERN = r"[a-zA-Z0-9_.\-]{1,128}"
MAX_SUB_SEQUENCE = 2**63 - 1

_SEQUENCE_RE = re.compile(SEQUENCE_PATTERN)
_NAME_RE = re.compile(NAME_PATTERN)

KEY_PREFIX = "w1"
KEY_DIGEST_BYTES = 12


class RecordId(NamedTuple):
    """One user record of one stream; hashable, cheap, ordered within a shard by (sequence, sub-sequence)."""

    stream: str
    shard_id: str
    sequence_number: str
    sub_sequence_number: int = 0

    def sort_key(self) -> tuple[str, str, int, str, int]:
        return (self.stream, self.shard_id, len(self.sequence_number), self.sequence_number, self.sub_sequence_number)


_SEQUENCE_MESSAGE = "must be 0 or a decimal number of up to 129 digits without leading zeros"
_NAME_MESSAGE = "must be 1 to 128 characters of a-z, A-Z, 0-9, '_', '.' or '-'"
# Validated by pydantic-core's own regex engine: 10,000 records validate in a few milliseconds.
_SEQUENCE_FIELD_PATTERN = f"^({SEQUENCE_PATTERN})$"
_NAME_FIELD_PATTERN = f"^{NAME_PATTERN}$"
_PATTERN_MESSAGES = {_SEQUENCE_FIELD_PATTERN: _SEQUENCE_MESSAGE, _NAME_FIELD_PATTERN: _NAME_MESSAGE}


def validate_sequence_number(value: str) -> str:
    if not _SEQUENCE_RE.fullmatch(value):
        raise ValueError(_SEQUENCE_MESSAGE)
    return value


def validate_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(_NAME_MESSAGE)
    return value


def error_message(error: ErrorDetails) -> str:
    """pydantic's message for a validation error, with the AWS rule spelled out for identity fields."""
    pattern = str((error.get("ctx") or {}).get("pattern"))
    return _PATTERN_MESSAGES.get(pattern, error["msg"]) if error["type"] == "string_pattern_mismatch" else error["msg"]


SequenceNumber = Annotated[
    str,
    Field(
        pattern=_SEQUENCE_FIELD_PATTERN,
        description="Kinesis sequence number: decimal digits, unique within its shard.",
        examples=["49590338271490256608559692538361571095921575989136588898"],
    ),
]
StreamName = Annotated[str, Field(pattern=_NAME_FIELD_PATTERN, description="Kinesis stream name.", examples=["orders"])]
ShardId = Annotated[str, Field(pattern=_NAME_FIELD_PATTERN, description="Shard id.", examples=["shardId-000000000000"])]
SubSequenceNumber = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_SUB_SEQUENCE,
        strict=True,
        description="Position of the user record inside a KPL-aggregated record; 0 when the record was not aggregated.",
        examples=[0],
    ),
]


def ledger_key(record: RecordId) -> str:
    """The memcached key of a record's ledger entry: ``w1`` + 16 characters of base64url.

    Stable across versions (a change would need a new prefix): the BLAKE2b-96 digest of the UTF-8 bytes of
    ``stream \\n shard_id \\n sequence_number \\n sub_sequence_number`` (decimal), base64url without padding.
    Newlines cannot occur in any valid field, so distinct identities have distinct inputs. The key is 18 bytes of
    [A-Za-z0-9_-] whatever the input (memcached allows 250 bytes without whitespace or control characters), and
    96 bits keep the chance of any collision below 1e-10 even for a billion live entries.
    """
    canonical = f"{record.stream}\n{record.shard_id}\n{record.sequence_number}\n{record.sub_sequence_number}"
    digest = hashlib.blake2b(canonical.encode(), digest_size=KEY_DIGEST_BYTES).digest()
    return KEY_PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")
