"""memcached nodes as one ledger store: clients, rendezvous hashing of keys to nodes, errors translated once, and
what the nodes can vouch for (``stats``), shared by both ledger formats.

Each deployment's ledger format is written down in the ledger itself: a key ``streamwreck-ledger-format`` on every
node, ``<format> <since, Unix seconds>``, added (never replaced) by the first writer. A writer of another format
refuses to write (:class:`~streamwreck.core.errors.LedgerUnavailableError`, so that the recorder holds its messages
instead of dead-lettering them), and the API reports the conflict as an unhealthy ledger: a mix is never silent.
``since`` is when this format's ledger began on that node: records that arrived before it are judged like records
that arrived before a restart (``unknown``, never ``lost``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

from pymemcache.client.base import PooledClient
from pymemcache.exceptions import MemcacheError

from streamwreck.core.errors import LedgerUnavailableError
from streamwreck.core.ledger import LedgerHealth, NodeHealth
from streamwreck.core.settings import LedgerSettings

logger = logging.getLogger(__name__)

FORMAT_KEY = "streamwreck-ledger-format"
# memcached starts its clock 2 s before it really starts, so `uptime` is 2 s ahead; without this the start would read
# 2 s early, and a record written in those 2 s would be judged by a ledger that had not yet forgotten it.
_UPTIME_SKEW = 2
# Connections per node: more than the API's worker threads (anyio's default is 40), so a slow memcached makes
# requests wait for their timeout and answer 503, not fail on an exhausted pool.
_POOL_SIZE = 64
_CLAIM_EVERY_SECONDS = 30.0  # a writer re-adds the format marker this often (a restarted node has lost it)


def _score(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class MemcachedNodes:
    """A fixed list of memcached nodes; a key lives on the node with the highest BLAKE2b-64(node + key).

    Stable across processes and versions (the recorder writes where the API reads); adding a node moves only the keys
    it wins. A node that is down makes the calls touching it fail with LedgerUnavailableError; its keys are never
    moved to another node (pymemcache's HashClient would, and a later lookup on the returned node would miss them).
    """

    def __init__(self, clients: Mapping[str, PooledClient], clock: Callable[[], float] = time.time) -> None:
        if not clients:
            raise ValueError("at least one memcached client is needed")
        self.clients = dict(clients)
        self._nodes = [(node, node.encode()) for node in self.clients]
        self._clock = clock
        self._claimed: dict[str, float] = {}

    @classmethod
    def from_settings(cls, settings: LedgerSettings) -> MemcachedNodes:
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
        return cls(clients)

    def by_node(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """The keys grouped by the node each lives on. (A linear hash such as crc32 would let one bit of the key
        pick the node: badly unbalanced.)"""
        if len(self._nodes) == 1:
            return {self._nodes[0][0]: list(keys)}
        groups: dict[str, list[str]] = defaultdict(list)
        for key in keys:
            raw = key.encode()
            groups[max(self._nodes, key=lambda node: _score(node[1] + raw))[0]].append(key)
        return groups

    @contextmanager
    def guard(self, node: str, what: str) -> Iterator[PooledClient]:
        """The node's client; pymemcache's and the socket's errors become LedgerUnavailableError, once, here."""
        try:
            yield self.clients[node]
        except (MemcacheError, OSError) as exc:
            raise LedgerUnavailableError(f"memcached {node} failed during {what}: {exc or type(exc).__name__}") from exc
        except RuntimeError as exc:  # pymemcache's pool: every connection busy (memcached too slow to answer)
            raise LedgerUnavailableError(f"memcached {node}: no free connection during {what}: {exc}") from exc

    def claim(self, nodes: Iterable[str], ledger_format: str) -> None:
        """Before writing: the format marker on each node is ours (added if missing, at most every 30 s a node)."""
        now = self._clock()
        for node in nodes:
            if now - self._claimed.get(node, float("-inf")) < _CLAIM_EVERY_SECONDS:
                continue
            with self.guard(node, "claiming the ledger format") as client:
                if not client.add(FORMAT_KEY, f"{ledger_format} {int(now)}".encode(), 0):
                    found = _marker(client.get(FORMAT_KEY))
                    if found is not None and found[0] != ledger_format:
                        raise LedgerUnavailableError(
                            f"memcached {node} holds a ledger of format {found[0]!r}, this one writes "
                            f"{ledger_format!r}: set the same STREAMWRECK_LEDGER_FORMAT on the API and the recorder"
                        )
            self._claimed[node] = now

    def health(self, ttl_seconds: int, ledger_format: str) -> LedgerHealth:
        """What each node can vouch for. A node without a format marker gets this ledger's (the API starts the
        ledger's history as early as the recorder does: whichever asks first)."""
        nodes = []
        for node, client in self.clients.items():
            try:
                stats = client.stats()
                marker = _marker(client.get(FORMAT_KEY))
                if marker is None:
                    now = int(self._clock())
                    if client.add(FORMAT_KEY, f"{ledger_format} {now}".encode(), 0):
                        marker = (ledger_format, now)
                    else:
                        marker = _marker(client.get(FORMAT_KEY))
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
                    ledger_format=marker[0] if marker else None,
                    format_since=datetime.fromtimestamp(marker[1], UTC) if marker else None,
                )
            )
        return LedgerHealth(ttl_seconds=ttl_seconds, nodes=nodes, ledger_format=ledger_format)

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _marker(raw: bytes | None) -> tuple[str, int] | None:
    """``(format, since)`` of a format marker; None for none (or one that is not ours to read)."""
    if raw is None:
        return None
    try:
        name, since = raw.decode("ascii").split(" ")
        return name, int(since)
    except (UnicodeDecodeError, ValueError):
        return None
