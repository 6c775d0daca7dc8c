"""The per-record ledger (``STREAMWRECK_LEDGER_FORMAT=records``): one memcached item per processed record.

The format of the first releases, kept so that a deployment can move to the compact ``buckets`` format when it
chooses. Key: ``w1`` + base64url(BLAKE2b-96(stream \\n shard \\n sequence \\n sub-sequence)) (18 bytes). Value
(ASCII): ``<first processed, Unix seconds, hex> <count> <tag><tag>...`` with 6-hex-digit event tags, the last four
events that counted. ``6a2f3c10 1 a3f9c1`` is 17 bytes; with the key an item costs 94 bytes of memcached memory.
Concurrent recorders update an existing item with check-and-set.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pymemcache.client.base import PooledClient

from streamwreck.core.errors import LedgerUnavailableError
from streamwreck.core.ledger import Entry, LedgerHealth, RecordOutcome, expiry
from streamwreck.core.memcached import MemcachedNodes
from streamwreck.core.records import RecordId, ledger_key

logger = logging.getLogger(__name__)

FORMAT = "records"
TAGS_KEPT = 4
TAG_LENGTH = 6
_CAS_ATTEMPTS = 16


@dataclass(frozen=True)
class Stored:
    """The value of a record's item."""

    count: int
    first_processed_at: int  # Unix seconds
    tags: str = ""

    def encode(self) -> bytes:
        return f"{self.first_processed_at:x} {self.count} {self.tags}".encode("ascii")

    @classmethod
    def decode(cls, raw: bytes) -> Stored:
        first, count, tags = raw.split(b" ", 2)
        return cls(count=int(count), first_processed_at=int(first, 16), tags=tags.decode("ascii"))

    def seen(self, tag: str) -> bool:
        return any(self.tags[i : i + TAG_LENGTH] == tag for i in range(0, len(self.tags), TAG_LENGTH))

    def again(self, tag: str, processed_at: int) -> Stored:
        """Counted once more, by the event tagged ``tag``; events may arrive out of order: keep the earliest time."""
        tags = (self.tags + tag)[-TAGS_KEPT * TAG_LENGTH :]
        return Stored(count=self.count + 1, first_processed_at=min(self.first_processed_at, processed_at), tags=tags)


def event_tag(event_id: str) -> str:
    return hashlib.blake2b(event_id.encode(), digest_size=TAG_LENGTH // 2).hexdigest()


class RecordLedger:
    """The per-record ledger on memcached nodes."""

    def __init__(self, nodes: MemcachedNodes, ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._nodes = nodes
        self._ttl = ttl_seconds
        self._clock = clock

    def lookup(self, ids: Sequence[RecordId]) -> dict[RecordId, Entry]:
        by_key = {ledger_key(record): record for record in ids}
        found: dict[RecordId, Entry] = {}
        for node, keys in self._nodes.by_node(by_key).items():
            with self._nodes.guard(node, "get_many") as client:
                values = client.get_many(keys)
            for key, raw in values.items():
                found[by_key[key]] = _entry(raw, key)
        return found

    def record(self, ids: Iterable[RecordId], event_id: str, processed_at: int) -> RecordOutcome:
        tag = event_tag(event_id)
        keys = {ledger_key(record) for record in ids}
        outcome = RecordOutcome()
        expire = expiry(self._ttl, self._clock())
        fresh = Stored(count=1, first_processed_at=processed_at, tags=tag).encode()
        groups = self._nodes.by_node(keys)
        self._nodes.claim(groups, FORMAT)
        for node, node_keys in groups.items():
            with self._nodes.guard(node, "record") as client:
                existing = client.get_many(node_keys)
                for key in node_keys:
                    if key not in existing and client.add(key, fresh, expire):
                        outcome.new += 1
                    else:
                        outcome += _update(node, client, key, tag, processed_at, expire)
        return outcome

    def health(self) -> LedgerHealth:
        return self._nodes.health(self._ttl, FORMAT)

    def close(self) -> None:
        self._nodes.close()


def _update(node: str, client: PooledClient, key: str, tag: str, processed_at: int, expire: int) -> RecordOutcome:
    """Count the event on an entry that exists, with check-and-set against concurrent recorders."""
    fresh = Stored(count=1, first_processed_at=processed_at, tags=tag).encode()
    for _ in range(_CAS_ATTEMPTS):
        raw, cas = client.gets(key)
        if raw is None:  # expired or evicted in between
            if client.add(key, fresh, expire):
                return RecordOutcome(new=1)
            continue
        try:
            stored = Stored.decode(raw)
        except (ValueError, UnicodeDecodeError):
            raise LedgerUnavailableError(f"memcached {node}: the item {key} is not a ledger entry") from None
        if stored.seen(tag):
            return RecordOutcome(redelivered=1)
        if client.cas(key, stored.again(tag, processed_at).encode(), cas, expire):
            return RecordOutcome(duplicate=1)
    raise LedgerUnavailableError(f"memcached {node}: key {key} kept changing under check-and-set")


def _entry(raw: bytes, key: str) -> Entry:
    try:
        stored = Stored.decode(raw)
    except (ValueError, UnicodeDecodeError):
        # Not a value this code wrote: the ledger cannot vouch either way.
        logger.warning("ledger_value_unreadable", extra={"key": key})
        return Entry.unreadable()
    return Entry(count=stored.count, first_processed_at=stored.first_processed_at)
