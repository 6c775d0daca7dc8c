"""The ledger: which records were processed, by how many distinct events, kept in memcached.

Two formats, one contract (:class:`Ledger`); the API and the recorder of a deployment must use the same one
(``STREAMWRECK_LEDGER_FORMAT``), and the ledger itself records which it holds, so that a mix is reported, never
silent (:mod:`streamwreck.core.memcached`):

- ``buckets`` (the default, :mod:`streamwreck.core.bucket_ledger`): records of one shard that are close in the shard
  share one memcached item; a record costs about 7 bytes of memcached memory.
- ``records`` (:mod:`streamwreck.core.record_ledger`): an item per record, 94 bytes each: the format of the first
  releases, kept for deployments that have not moved yet.

The same event delivered twice (SNS and SQS deliver at least once) counts once; a record in a second, distinct event
is a duplicate. memcached evicts and forgets on restart, so a missing record is not proof of loss:
:meth:`Ledger.health` reports evictions, flushes and when each node's ledger began, for the checker to judge. A
record whose stored data cannot be read is answered as unreadable (``unknown``), never as processed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from streamwreck.core.records import RecordId
from streamwreck.core.settings import MEMCACHED_RELATIVE_EXPIRY_LIMIT, LedgerSettings


@dataclass(frozen=True)
class Entry:
    """What the ledger holds for one record."""

    count: int  # distinct events that named it; 0 with readable=False
    first_processed_at: int  # Unix seconds
    readable: bool = True  # False: its stored data could not be read, so the ledger cannot say

    @classmethod
    def unreadable(cls) -> Entry:
        return cls(count=0, first_processed_at=0, readable=False)


@dataclass
class RecordOutcome:
    """What one call of :meth:`Ledger.record` did, record by record summed up (the per-record format; the compact
    one writes without reading and reports every record as ``new``)."""

    new: int = 0  # first time processed
    duplicate: int = 0  # processed again, in another event
    redelivered: int = 0  # this event was recorded before: nothing changed

    def __iadd__(self, other: RecordOutcome) -> RecordOutcome:
        self.new += other.new
        self.duplicate += other.duplicate
        self.redelivered += other.redelivered
        return self


@dataclass(frozen=True)
class NodeHealth:
    server: str
    reachable: bool
    evictions: int = 0
    flushes: int = 0
    started_at: datetime | None = None
    curr_items: int = 0
    bytes: int = 0
    ledger_format: str | None = None  # as the node's format marker says
    format_since: datetime | None = None  # when the node's ledger of that format began


@dataclass(frozen=True)
class LedgerHealth:
    ttl_seconds: int
    nodes: list[NodeHealth] = field(default_factory=list)
    ledger_format: str = "buckets"  # what this side reads and writes

    @property
    def conflict(self) -> str | None:
        """A node whose ledger is of another format than this side's, said in one line; None when all agree."""
        for node in self.nodes:
            if node.ledger_format is not None and node.ledger_format != self.ledger_format:
                return (
                    f"memcached {node.server} holds a ledger of format {node.ledger_format!r} and this side uses "
                    f"{self.ledger_format!r}: set the same STREAMWRECK_LEDGER_FORMAT on the API and the recorder"
                )
        return None

    @property
    def healthy(self) -> bool:
        """Every node answered, and they all hold this side's format."""
        return all(node.reachable for node in self.nodes) and self.conflict is None

    @property
    def evictions(self) -> int:
        return sum(node.evictions for node in self.nodes)

    @property
    def flushes(self) -> int:
        """flush_all commands since the nodes started: any entry written before one may be gone."""
        return sum(node.flushes for node in self.nodes)

    @property
    def started_at(self) -> datetime | None:
        """When the ledger's memory begins: the latest (re)start of a node or start of its format's ledger. Records
        that arrived before it may have been processed without a trace here."""
        starts = [moment for node in self.nodes for moment in (node.started_at, node.format_since) if moment]
        return max(starts) if starts else None


class Ledger(Protocol):
    def record(self, ids: Iterable[RecordId], event_id: str, processed_at: int) -> RecordOutcome:
        """Store that the event ``event_id`` processed ``ids``. Idempotent per event: replays change nothing."""
        ...

    def lookup(self, ids: Sequence[RecordId]) -> Mapping[RecordId, Entry]:
        """What the ledger holds for those of ``ids`` it has anything for (an unreadable record: an Entry with
        ``readable=False``); absent ids have no entry (or lost it)."""
        ...

    def health(self) -> LedgerHealth: ...

    def close(self) -> None: ...


def expiry(ttl_seconds: int, now: float) -> int:
    """memcached's exptime for a TTL: relative up to 30 days, an absolute Unix time beyond."""
    if ttl_seconds <= MEMCACHED_RELATIVE_EXPIRY_LIMIT:
        return ttl_seconds
    return int(now) + ttl_seconds


def open_ledger(settings: LedgerSettings) -> Ledger:
    """The ledger of the format the settings name, on their memcached nodes (connections are made on first use)."""
    from streamwreck.core.memcached import MemcachedNodes

    nodes = MemcachedNodes.from_settings(settings)
    if settings.ledger_format == "records":
        from streamwreck.core.record_ledger import RecordLedger

        return RecordLedger(nodes, settings.ledger_ttl_seconds)
    from streamwreck.core.bucket_ledger import BucketLedger, MemcachedItems

    return BucketLedger(MemcachedItems(nodes), settings.ledger_ttl_seconds)
