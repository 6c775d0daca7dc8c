"""The compact ledger's format, pure: which bucket a record is kept in, its fingerprint there, and the bytes of an
item. No I/O; :mod:`streamwreck.core.bucket_ledger` stores these items in memcached.

Buckets
-------
Kinesis sequence numbers (and kinesis-local's, which copies them) are one big integer whose hex digits are, from
the top: ``2`` | the shard's creation time (9) | a shard index (1) | **the record's index in the shard** (16) |
``00`` | **the second it arrived** (9) | the shard index again (8) | ``2``. The record index grows by at least one per
record of the shard; the arrival second is within a few seconds of ApproximateArrivalTimestamp (measured: equal on
kinesis-local, 0-2 s earlier on Kinesis). A record is kept in the bucket::

    (stream, shard, arrival second // WINDOW_SECONDS, record index >> INDEX_BITS, sub-sequence number >> SUB_BITS)

so a bucket holds records of one shard that arrived in the same minute, at most 2**INDEX_BITS Kinesis records, and at
most 2**SUB_BITS user records of each KPL aggregate: at most ``MAX_BUCKET_RECORDS`` = 65,536 fingerprints, 384 KiB,
under memcached's 1 MiB item limit whatever the write rate. At a shard's full 1,000 records/s a bucket fills in about
4 s (4,096 records, 24 KiB); a 10,000-record reconcile request of 4 shards touches 4-8 items. A sequence number of
another shape (moto counts 1, 2, 3, ...) is bucketed by ``number >> INDEX_BITS`` alone, with no arrival time.

Expiry. Every bucket of the standard shape is written with the absolute expiry ``end of its minute + TTL +
EXPIRY_MARGIN_SECONDS``, so each record's fingerprint lives at least the TTL after the record arrived, however late
the consumer processed it and whichever record created the bucket. (Buckets of other shapes expire TTL after they
were created: emulators only.)

Fingerprints, and why 6 bytes
-----------------------------
Inside its bucket a record is a 48-bit fingerprint: BLAKE2b-48 of "sequence number/sub-sequence number" (of the
sequence number alone for sub-sequence 0). A record the consumer lost is answered *processed* only if another record
of its bucket has the same fingerprint. With n records in a full bucket and fingerprints uniform over 2**48 values,
that chance is at most::

    (n - 1) / 2**48 = 65,535 / 281,474,976,710,656 = 2.3e-10   per lost record, for a full bucket (n = 65,536)

below the 1e-9 the ledger promises; a typical full bucket (4,096 records) gives 1.5e-11. Five bytes would give
6e-8 at full size (too much), and eight would cost 2 more bytes a record for nothing the checker needs.

Items
-----
An item is the concatenation of segments, one per recorded event, each appended whole by one memcached ``append``
(so concurrent recorders never race: no read-modify-write), each::

    magic 0xB2 | event tag (4 bytes) | processed at (4, Unix seconds) | n (2) | n fingerprints (6 each) | check (4)

``event tag`` is BLAKE2b-32 of the event id: the same event delivered again appends an identical segment, which
counts once; a record named by two events with different tags is a duplicate. ``check`` is BLAKE2b-32 of the rest
of the segment: an item with any segment that does not parse or check (truncated, corrupted, written by something
else) is unreadable, and its records are answered *unknown*, never processed. A segment costs 15 bytes beside its
fingerprints; an event names up to a few thousand records of one shard, so a record costs 6 bytes and a little.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from streamwreck.core.errors import RejectedInputError

KEY_PREFIX = "w2"  # the per-record ledger's keys start with w1
INDEX_BITS = 12
SUB_BITS = 4
WINDOW_SECONDS = 60
EXPIRY_MARGIN_SECONDS = 300
MAX_BUCKET_RECORDS = 2 ** (INDEX_BITS + SUB_BITS)
FINGERPRINT_BYTES = 6
MAGIC = 0xB2
MAX_SEGMENT_RECORDS = 0xFFFF
_HEADER = struct.Struct(">BIIH")  # magic, tag, processed at, n
_CHECK_BYTES = 4
_SEGMENT_OVERHEAD = _HEADER.size + _CHECK_BYTES

_SEQUENCE_BITS = 186  # '2' then 46 more hex digits
_LOW_36 = (1 << 36) - 1
_LOW_64 = (1 << 64) - 1
_blake2b = hashlib.blake2b


class Bucket(NamedTuple):
    """Where a record is kept: the item's key, and the Unix time it must live until (None: TTL from creation)."""

    key: str
    window_end: int | None


def bucket_of(stream: str, shard_id: str, sequence_number: str, sub_sequence_number: int) -> Bucket:
    """The bucket of a record: a deterministic function of what the recorder and the API both have."""
    name, window_end = locate(sequence_number, sub_sequence_number)
    return Bucket(item_key(stream, shard_id, name), window_end)


def locate(sequence_number: str, sub_sequence_number: int) -> tuple[str, int | None]:
    """The bucket's name within its shard, and the end of its arrival window (Unix seconds; None: no window)."""
    place = position(sequence_number, sub_sequence_number)
    return name_of(place), (place[0] + 1) * WINDOW_SECONDS if place[0] >= 0 else None


def name_of(place: tuple[int, int, int]) -> str:
    """``t<window>.<block>.<sub block>``, or ``n<block>.<sub block>`` for a number of another shape."""
    return f"t{place[0]}.{place[1]}.{place[2]}" if place[0] >= 0 else f"n{place[1]}.{place[2]}"


def position(sequence_number: str, sub_sequence_number: int) -> tuple[int, int, int]:
    """The bucket as numbers: (arrival window, or -1 for a number of another shape; index block; sub block)."""
    number = int(sequence_number)
    if number.bit_length() == _SEQUENCE_BITS and number >> 184 == 2 and number & 0xF == 2:
        return (
            ((number >> 36) & _LOW_36) // WINDOW_SECONDS,
            ((number >> 80) & _LOW_64) >> INDEX_BITS,
            (sub_sequence_number >> SUB_BITS),
        )
    return -1, number >> INDEX_BITS, sub_sequence_number >> SUB_BITS


def sequence_number(created: int, shard_index: int, record_index: int, arrived: int) -> str:
    """A sequence number of the standard shape (the inverse of :func:`locate`'s reading): for tests and benchmarks
    that need realistic numbers without writing to a stream."""
    number = (
        (2 << 184)
        | (created & _LOW_36) << 148
        | (shard_index & 0xF) << 144
        | (record_index & _LOW_64) << 80
        | (arrived & _LOW_36) << 36
        | (shard_index & 0xFFFFFFFF) << 4
        | 2
    )
    return str(number)


def item_key(stream: str, shard_id: str, name: str) -> str:
    """``w2`` + base64url(BLAKE2b-96(stream \\n shard \\n bucket)): 18 bytes whatever the names (memcached allows 250
    without whitespace); distinct buckets have distinct inputs, since no field can hold a newline."""
    digest = hashlib.blake2b(f"{stream}\n{shard_id}\n{name}".encode(), digest_size=12).digest()
    return KEY_PREFIX + base64.urlsafe_b64encode(digest).decode("ascii")


def fingerprint(sequence_number: str, sub_sequence_number: int) -> bytes:
    """BLAKE2b-48 of ``sequence/sub`` (of the sequence number alone for sub-sequence 0, the common case: no
    sequence number holds a "/", so the two kinds of input never meet)."""
    text = sequence_number if sub_sequence_number == 0 else f"{sequence_number}/{sub_sequence_number}"
    return _blake2b(text.encode(), digest_size=FINGERPRINT_BYTES).digest()


def event_tag(event_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=4).digest(), "big")


def segments(tag: int, processed_at: int, fingerprints: Sequence[bytes]) -> list[bytes]:
    """The segments recording ``fingerprints`` for one event (more than one only past 65,535 records)."""
    out = []
    for start in range(0, len(fingerprints), MAX_SEGMENT_RECORDS):
        chunk = fingerprints[start : start + MAX_SEGMENT_RECORDS]
        body = _HEADER.pack(MAGIC, tag, processed_at & 0xFFFFFFFF, len(chunk)) + b"".join(chunk)
        out.append(body + hashlib.blake2b(body, digest_size=_CHECK_BYTES).digest())
    return out


class Unreadable(RejectedInputError):
    """An item that is not a sequence of whole, checked segments."""


@dataclass
class Contents:
    """What an item says: for each fingerprint, the distinct events that recorded it and the earliest time."""

    first: dict[bytes, int] = field(default_factory=dict)  # fingerprint -> the tag of the first event naming it
    more: dict[bytes, set[int]] = field(default_factory=dict)  # fingerprints named by 2+ events -> every tag
    processed_at: dict[int, int] = field(default_factory=dict)  # tag -> its processed-at time

    def count(self, fp: bytes) -> int:
        """How many distinct events recorded ``fp`` (0: none)."""
        if fp not in self.first:
            return 0
        tags = self.more.get(fp)
        return len(tags) if tags else 1

    def first_processed_at(self, fp: bytes) -> int:
        tags = self.more.get(fp) or {self.first[fp]}
        return min(self.processed_at[tag] for tag in tags)


def decode(item: bytes) -> Contents:
    """Every segment of an item; :class:`Unreadable` if any part of it is not a whole, checked segment."""
    contents = Contents()
    first, more, times = contents.first, contents.more, contents.processed_at
    view = memoryview(item)
    offset, size = 0, len(item)
    while offset < size:
        if size - offset < _SEGMENT_OVERHEAD:
            raise Unreadable(f"a segment is cut short at byte {offset} of {size}")
        magic, tag, processed_at, count = _HEADER.unpack_from(view, offset)
        if magic != MAGIC:
            raise Unreadable(f"no segment starts at byte {offset}")
        end = offset + _HEADER.size + count * FINGERPRINT_BYTES
        if end + _CHECK_BYTES > size:
            raise Unreadable(f"a segment of {count} records is cut short at byte {size}")
        if hashlib.blake2b(view[offset:end], digest_size=_CHECK_BYTES).digest() != view[end : end + _CHECK_BYTES]:
            raise Unreadable(f"the segment at byte {offset} fails its check")
        previous = times.get(tag)
        times[tag] = processed_at if previous is None else min(previous, processed_at)
        for at in range(offset + _HEADER.size, end, FINGERPRINT_BYTES):
            fp = item[at : at + FINGERPRINT_BYTES]
            seen = first.setdefault(fp, tag)
            if seen != tag:
                more.setdefault(fp, {seen}).add(tag)
        offset = end + _CHECK_BYTES
    return contents
