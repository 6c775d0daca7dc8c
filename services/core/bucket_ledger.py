"""The compact ledger (``STREAMWRECK_LEDGER_FORMAT=buckets``): many records per memcached item.

The format — buckets, fingerprints, segments, and the arithmetic behind them — is :mod:`streamwreck.core.buckets`.
Recording an event is one ``append`` per bucket it touches (``add`` when the bucket is new; ``append`` again if
another recorder created it in between): no read, no check-and-set, so any number of recorders write at once, and
a recorder that dies mid-event and gets the event again appends the same segments again, which count once.
A lookup reads each bucket of the request once (one multi-get per node) and decodes it once.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from streamwreck.core import buckets
from streamwreck.core.errors import LedgerUnavailableError
from streamwreck.core.ledger import Entry, LedgerHealth, NodeHealth, RecordOutcome, expiry
from streamwreck.core.memcached import MemcachedNodes
from streamwreck.core.records import RecordId

logger = logging.getLogger(__name__)

FORMAT = "buckets"


class ItemStore(Protocol):
    """Where the items live: memcached, or a dict for unit tests. Neither can list its keys."""

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]: ...

    def append_or_add(self, key: str, value: bytes, expire: int) -> None: ...

    def health(self, ttl_seconds: int) -> LedgerHealth: ...

    def close(self) -> None: ...


class MemcachedItems:
    """Items on memcached nodes (rendezvous over bucket keys)."""

    def __init__(self, nodes: MemcachedNodes) -> None:
        self._nodes = nodes

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for node, node_keys in self._nodes.by_node(keys).items():
            with self._nodes.guard(node, "get_many") as client:
                found.update(client.get_many(node_keys))
        return found

    def append_or_add(self, key: str, value: bytes, expire: int) -> None:
        ((node, _),) = self._nodes.by_node([key]).items()
        self._nodes.claim([node], FORMAT)
        with self._nodes.guard(node, "append") as client:
            # append keeps the item's expiry; add creates it. Between a failed append and a failed add another
            # recorder created the bucket: append then succeeds (three tries cover any interleaving but eviction).
            for _ in range(3):
                if client.append(key, value) or client.add(key, value, expire):
                    return
        raise LedgerUnavailableError(f"memcached {node}: the bucket {key} could be neither appended to nor added")

    def health(self, ttl_seconds: int) -> LedgerHealth:
        return self._nodes.health(ttl_seconds, FORMAT)

    def close(self) -> None:
        self._nodes.close()


class MemoryItems:
    """Items in a dict: the same contract for unit tests (expiry is not modelled)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        from datetime import UTC, datetime

        self.values: dict[str, bytes] = {}
        self.started_at = datetime.fromtimestamp(int(clock()), UTC)
        self.evictions = 0
        self.reachable = True

    def _check(self) -> None:
        if not self.reachable:
            raise LedgerUnavailableError("in-memory ledger set unreachable")

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        self._check()
        return {key: self.values[key] for key in keys if key in self.values}

    def append_or_add(self, key: str, value: bytes, expire: int) -> None:
        self._check()
        self.values[key] = self.values.get(key, b"") + value

    def health(self, ttl_seconds: int) -> LedgerHealth:
        node = NodeHealth(
            server="memory",
            reachable=self.reachable,
            evictions=self.evictions,
            started_at=self.started_at,
            curr_items=len(self.values),
            bytes=sum(len(value) for value in self.values.values()),
            ledger_format=FORMAT,
        )
        return LedgerHealth(ttl_seconds=ttl_seconds, nodes=[node], ledger_format=FORMAT)

    def close(self) -> None:
        pass


class BucketLedger:
    def __init__(self, items: ItemStore, ttl_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._items = items
        self._ttl = ttl_seconds
        self._clock = clock

    def record(self, ids: Iterable[RecordId], event_id: str, processed_at: int) -> RecordOutcome:
        """Append the event's segment to each bucket it touches. Every record counts as ``new`` in the outcome: this
        ledger never reads before it writes, so a redelivery or a duplicate is told apart when it is looked up."""
        by_bucket: dict[str, list[bytes]] = defaultdict(list)
        ends: dict[str, int | None] = {}
        for record in dict.fromkeys(ids):
            bucket = buckets.bucket_of(
                record.stream, record.shard_id, record.sequence_number, record.sub_sequence_number
            )
            by_bucket[bucket.key].append(buckets.fingerprint(record.sequence_number, record.sub_sequence_number))
            ends[bucket.key] = bucket.window_end
        tag = buckets.event_tag(event_id)
        appended = 0
        for key, fingerprints in by_bucket.items():
            end = ends[key]
            expire = end + self._ttl + buckets.EXPIRY_MARGIN_SECONDS if end is not None else self._expiry()
            self._items.append_or_add(key, b"".join(buckets.segments(tag, processed_at, fingerprints)), expire)
            appended += len(fingerprints)
        return RecordOutcome(new=appended)

    def _expiry(self) -> int:
        return expiry(self._ttl, self._clock())

    def lookup(self, ids: Sequence[RecordId]) -> dict[RecordId, Entry]:
        # Per record: its bucket as numbers (an int parse and shifts) and its fingerprint; per bucket: the item key
        # (hashed once) and one decode. Equal entries are shared (Entry is frozen): most records are found once.
        keys: dict[RecordId, str] = {}
        named: dict[tuple[str, str, tuple[int, int, int]], str] = {}
        locate, item_key = buckets.position, buckets.item_key
        for record in ids:
            place = (record.stream, record.shard_id, locate(record.sequence_number, record.sub_sequence_number))
            key = named.get(place)
            if key is None:
                key = named[place] = item_key(place[0], place[1], buckets.name_of(place[2]))
            keys[record] = key
        decoded = self._decode(self._items.get_many(list(dict.fromkeys(keys.values()))))
        found: dict[RecordId, Entry] = {}
        shared: dict[tuple[int, int], Entry] = {}
        fingerprint = buckets.fingerprint
        for record, key in keys.items():
            if key not in decoded:
                continue
            contents = decoded[key]
            if contents is None:
                found[record] = Entry.unreadable()
                continue
            fp = fingerprint(record.sequence_number, record.sub_sequence_number)
            tag = contents.first.get(fp)
            if tag is None:
                continue
            tags = contents.more.get(fp)
            if tags is None:
                said = (1, contents.processed_at[tag])
            else:
                said = (len(tags), min(contents.processed_at[t] for t in tags))
            entry = shared.get(said)
            if entry is None:
                entry = shared[said] = Entry(count=said[0], first_processed_at=said[1])
            found[record] = entry
        return found

    @staticmethod
    def _decode(items: dict[str, bytes]) -> dict[str, buckets.Contents | None]:
        """Each item decoded once; None for one that cannot be read."""
        decoded: dict[str, buckets.Contents | None] = {}
        for key, item in items.items():
            try:
                decoded[key] = buckets.decode(item)
            except buckets.Unreadable as exc:
                logger.warning("ledger_item_unreadable", extra={"key": key, "error": str(exc)})
                decoded[key] = None
        return decoded

    def health(self) -> LedgerHealth:
        return self._items.health(self._ttl)

    def close(self) -> None:
        self._items.close()


class InMemoryLedger(BucketLedger):
    """The compact ledger over a dict, for unit tests. Like memcached it cannot list its keys."""

    def __init__(self, ttl_seconds: int = 7 * 24 * 3600, clock: Callable[[], float] = time.time) -> None:
        self.items = MemoryItems(clock)
        super().__init__(self.items, ttl_seconds, clock)

    @property
    def reachable(self) -> bool:
        return self.items.reachable

    @reachable.setter
    def reachable(self, value: bool) -> None:
        self.items.reachable = value

    @property
    def evictions(self) -> int:
        return self.items.evictions

    @evictions.setter
    def evictions(self, value: int) -> None:
        self.items.evictions = value
