"""The ledger: an entry per processed record, in memcached.

An entry says how many distinct processed events named the record and when it was first processed. The same event
delivered twice (SNS and SQS deliver at least once) counts once: an entry remembers short tags of the events that
counted. memcached evicts and forgets on restart, so a missing entry is not proof of loss: :meth:`Ledger.health`
reports evictions and when each node started, for the checker to judge.

Stored value (ASCII): ``<first processed, Unix seconds, hex> <count> <tag><tag>...`` with 6-hex-digit event tags,
the last four events that counted. ``6a2f3c10 1 a3f9c1`` is 17 bytes; with the 18-byte key an entry costs 94 bytes
of memcached memory.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheError

from streamwreck.core.errors import LedgerUnavailableError
from streamwreck.core.records import RecordId, ledger_key
from streamwreck.core.settings import MEMCACHED_RELATIVE_EXPIRY_LIMIT, LedgerSettings

logger = logging.getLogger(__name__)

TAGS_KEPT = 4
TAG_LENGTH = 6
_CAS_ATTEMPTS = 16
# memcached starts its clock 2 s before it really starts, so `uptime` is 2 s ahead; without this the start would read
# 2 s early, and a record written in those 2 s would be judged by a ledger that had not yet forgotten it.
_UPTIME_SKEW = 2
# Connections per node: more than the API's worker threads (anyio's default is 40), so a slow memcached makes
# requests wait for their timeout and answer 503, not fail on an exhausted pool.
_POOL_SIZE = 64


@dataclass(frozen=True)
class Entry:
    count: int
    first_processed_at: int  # Unix seconds
    tags: str = ""

    def encode(self) -> bytes:
        return f"{self.first_processed_at:x} {self.count} {self.tags}".encode("ascii")

    @classmethod
    def decode(cls, raw: bytes) -> Entry:
        first, count, tags = raw.split(b" ", 2)
        return cls(count=int(count), first_processed_at=int(first, 16), tags=tags.decode("ascii"))

    def seen(self, tag: str) -> bool:
        return any(self.tags[i : i + TAG_LENGTH] == tag for i in range(0, len(self.tags), TAG_LENGTH))

    def again(self, tag: str, processed_at: int) -> Entry:
        """Counted once more, by the event tagged ``tag``; events may arrive out of order: keep the earliest time."""
        tags = (self.tags + tag)[-TAGS_KEPT * TAG_LENGTH :]
        return Entry(count=self.count + 1, first_processed_at=min(self.first_processed_at, processed_at), tags=tags)


def _score(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def event_tag(event_id: str) -> str:
    return hashlib.blake2b(event_id.encode(), digest_size=TAG_LENGTH // 2).hexdigest()


@dataclass
class RecordOutcome:
    """What one call of :meth:`Ledger.record` did, record by record summed up."""

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


@dataclass(frozen=True)
class LedgerHealth:
    ttl_seconds: int
    nodes: list[NodeHealth] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        """Every node answered."""
        return all(node.reachable for node in self.nodes)

    @property
    def evictions(self) -> int:
        return sum(node.evictions for node in self.nodes)

    @property
    def flushes(self) -> int:
        """flush_all commands since the nodes started: any entry written before one may be gone."""
        return sum(node.flushes for node in self.nodes)

    @property
    def started_at(self) -> datetime | None:
        """When the most recently (re)started node started: entries written before it may be gone."""
        starts = [node.started_at for node in self.nodes if node.started_at is not None]
        return max(starts) if starts else None


class Ledger(Protocol):
    def record(self, ids: Iterable[RecordId], event_id: str, processed_at: int) -> RecordOutcome:
        """Store that the event ``event_id`` processed ``ids``. Idempotent per event: replays change nothing."""
        ...

    def lookup(self, ids: Sequence[RecordId]) -> Mapping[RecordId, Entry]:
        """The entries of those of ``ids`` that the ledger holds; absent ids have no entry (or lost it)."""
        ...

    def health(self) -> LedgerHealth: ...

    def close(self) -> None: ...


def expiry(ttl_seconds: int, now: float) -> int:
    """memcached's exptime for a TTL: relative up to 30 days, an absolute Unix time beyond."""
    if ttl_seconds <= MEMCACHED_RELATIVE_EXPIRY_LIMIT:
        return ttl_seconds
    return int(now) + ttl_seconds


class MemcachedLedger:
    """The ledger on one or more memcached nodes, keys spread by rendezvous hashing over a fixed node list.

    A node that is down makes the calls touching it fail with LedgerUnavailableError; its keys are never moved to
    another node (pymemcache's HashClient would, and a later lookup on the returned node would then miss them).
    """

    def __init__(
        self,
        clients: Mapping[str, PooledClient],
        ttl_seconds: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not clients:
            raise ValueError("at least one memcached client is needed")
        self._clients = dict(clients)
        self._nodes = [(node, node.encode()) for node in self._clients]
        self._ttl = ttl_seconds
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: LedgerSettings) -> MemcachedLedger:
        timeout = settings.memcached_timeout_seconds
        clients = {
            f"{host}:{port}": PooledClient(
                (host, port),
                connect_timeout=timeout,
                timeout=timeout,
                no_delay=True,
                default_noreply=False,  # with noreply, add() reports success for a key that exists
                max_pool_size=_POOL_SIZE,
            )
            for host, port in settings.servers
        }
        return cls(clients, settings.ledger_ttl_seconds)

    def _by_node(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """Rendezvous hashing: a key lives on the node with the highest BLAKE2b-64(node + key), node as "host:port".

        Stable across processes and versions (the recorder writes where the API reads); adding a node moves only the
        keys it wins. (A linear hash such as crc32 would let one bit of the key pick the node: badly unbalanced.)
        """
        if len(self._nodes) == 1:
            return {self._nodes[0][0]: list(keys)}
        groups: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            raw = key.encode()
            groups[max(self._nodes, key=lambda node: _score(node[1] + raw))[0]].append(key)
        return groups

    @contextmanager
    def _guard(self, node: str, what: str) -> Iterator[None]:
        """Translate pymemcache's and the socket's errors into LedgerUnavailableError, once, here."""
        try:
            yield
        except (MemcacheError, OSError) as exc:
            raise LedgerUnavailableError(f"memcached {node} failed during {what}: {exc or type(exc).__name__}") from exc
        except RuntimeError as exc:  # pymemcache's pool: every connection busy (memcached too slow to answer)
            raise LedgerUnavailableError(f"memcached {node}: no free connection during {what}: {exc}") from exc

    def lookup(self, ids: Sequence[RecordId]) -> dict[RecordId, Entry]:
        by_key = {ledger_key(record): record for record in ids}
        found: dict[RecordId, Entry] = {}
        for node, keys in self._by_node(by_key).items():
            with self._guard(node, "get_many"):
                values = self._clients[node].get_many(keys)
            for key, raw in values.items():
                found[by_key[key]] = _decode(raw, key)
        return found

    def record(self, ids: Iterable[RecordId], event_id: str, processed_at: int) -> RecordOutcome:
        tag = event_tag(event_id)
        keys = {ledger_key(record) for record in ids}
        outcome = RecordOutcome()
        expire = expiry(self._ttl, self._clock())
        fresh = Entry(count=1, first_processed_at=processed_at, tags=tag).encode()
        for node, node_keys in self._by_node(keys).items():
            client = self._clients[node]
            with self._guard(node, "record"):
                existing = client.get_many(node_keys)
                for key in node_keys:
                    if key not in existing and client.add(key, fresh, expire):
                        outcome.new += 1
                    else:
                        outcome += self._update(node, client, key, tag, processed_at, expire)
        return outcome

    @staticmethod
    def _update(node: str, client: PooledClient, key: str, tag: str, processed_at: int, expire: int) -> RecordOutcome:
        """Count the event on an entry that exists, with check-and-set against concurrent recorders."""
        fresh = Entry(count=1, first_processed_at=processed_at, tags=tag).encode()
        for _ in range(_CAS_ATTEMPTS):
            raw, cas = client.gets(key)
            if raw is None:  # expired or evicted in between
                if client.add(key, fresh, expire):
                    return RecordOutcome(new=1)
                continue
            entry = _decode(raw, key)
            if entry.seen(tag):
                return RecordOutcome(redelivered=1)
            if client.cas(key, entry.again(tag, processed_at).encode(), cas, expire):
                return RecordOutcome(duplicate=1)
        raise LedgerUnavailableError(f"memcached {node}: key {key} kept changing under check-and-set")

    def health(self) -> LedgerHealth:
        nodes = []
        for node, client in self._clients.items():
            try:
                stats = client.stats()
            except (MemcacheError, OSError, RuntimeError) as exc:  # RuntimeError: no free pooled connection
                logger.warning("ledger_node_unreachable", extra={"server": node, "error": str(exc)})
                nodes.append(NodeHealth(server=node, reachable=False))
                continue
            nodes.append(
                NodeHealth(
                    server=node,
                    reachable=True,
                    # entries pushed out for memory, by the LRU or by slab rebalancing
                    evictions=int(stats.get(b"evictions", 0)) + int(stats.get(b"slab_reassign_evictions_nomem", 0)),
                    flushes=int(stats.get(b"cmd_flush", 0)),
                    started_at=datetime.fromtimestamp(int(stats[b"time"]) - int(stats[b"uptime"]) + _UPTIME_SKEW, UTC),
                    curr_items=int(stats.get(b"curr_items", 0)),
                    bytes=int(stats.get(b"bytes", 0)),
                )
            )
        return LedgerHealth(ttl_seconds=self._ttl, nodes=nodes)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


class InMemoryLedger:
    """The same contract in a dict, for unit tests. Like memcached it cannot list its keys."""

    def __init__(self, ttl_seconds: int = 7 * 24 * 3600, clock: Callable[[], float] = time.time) -> None:
        self._values: dict[str, bytes] = {}
        self._ttl = ttl_seconds
        self._clock = clock
        self.started_at = datetime.fromtimestamp(int(clock()), UTC)
        self.evictions = 0
        self.reachable = True

    def _check(self) -> None:
        if not self.reachable:
            raise LedgerUnavailableError("in-memory ledger set unreachable")

    def lookup(self, ids: Sequence[RecordId]) -> dict[RecordId, Entry]:
        self._check()
        found = {}
        for record in ids:
            raw = self._values.get(ledger_key(record))
            if raw is not None:
                found[record] = Entry.decode(raw)
        return found

    def record(self, ids: Iterable[RecordId], event_id: str, processed_at: int) -> RecordOutcome:
        self._check()
        tag = event_tag(event_id)
        outcome = RecordOutcome()
        for key in {ledger_key(record) for record in ids}:
            raw = self._values.get(key)
            if raw is None:
                self._values[key] = Entry(count=1, first_processed_at=processed_at, tags=tag).encode()
                outcome.new += 1
            elif Entry.decode(raw).seen(tag):
                outcome.redelivered += 1
            else:
                self._values[key] = Entry.decode(raw).again(tag, processed_at).encode()
                outcome.duplicate += 1
        return outcome

    def health(self) -> LedgerHealth:
        node = NodeHealth(
            server="memory",
            reachable=self.reachable,
            evictions=self.evictions,
            started_at=self.started_at,
            curr_items=len(self._values),
        )
        return LedgerHealth(ttl_seconds=self._ttl, nodes=[node])

    def close(self) -> None:
        pass


def _decode(raw: bytes, key: str | bytes) -> Entry:
    try:
        return Entry.decode(raw)
    except (ValueError, UnicodeDecodeError):
        # Not a value this code wrote: the key is there, so something recorded it; count it once.
        logger.warning("ledger_value_unreadable", extra={"key": str(key)})
        return Entry(count=1, first_processed_at=0)
