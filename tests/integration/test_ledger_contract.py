"""One contract, every ledger: the compact one in memory and on memcached (a real server), and the per-record one on
memcached, behave the same."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from streamwreck.core.bucket_ledger import InMemoryLedger
from streamwreck.core.ledger import Ledger, open_ledger
from streamwreck.core.records import RecordId
from streamwreck.core.settings import MEMCACHED_RELATIVE_EXPIRY_LIMIT, LedgerSettings, load_settings
from streamwreck.local import processes
from streamwreck.local.processes import Service


def _memcached_ledger(*services: Service, ttl: int = 3600, ledger_format: str = "buckets") -> Ledger:
    servers = ",".join(f"127.0.0.1:{s.port}" for s in services)
    settings = load_settings(
        LedgerSettings, memcached_servers=servers, ledger_ttl_seconds=ttl, ledger_format=ledger_format
    )
    return open_ledger(settings)


@pytest.fixture(params=["memory", "buckets", "records"])
def ledger(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    if request.param == "memory":
        yield InMemoryLedger(ttl_seconds=3600)
        return
    # Each format on a memcached of its own: one memcached holds one format (its marker says which).
    node = request.getfixturevalue("memcached") if request.param == "buckets" else _records_node(tmp_path_factory)
    ledger = _memcached_ledger(node, ledger_format=request.param)
    yield ledger
    ledger.close()


_RECORDS_NODE: list[Service] = []


def _records_node(tmp_path_factory: pytest.TempPathFactory) -> Service:
    if not _RECORDS_NODE:
        _RECORDS_NODE.append(processes.start_memcached(tmp_path_factory.mktemp("records-memcached")))
    return _RECORDS_NODE[0]


@pytest.fixture(scope="module", autouse=True)
def _stop_records_node() -> Iterator[None]:
    yield
    while _RECORDS_NODE:
        _RECORDS_NODE.pop().stop()


def _ids(stream: str, n: int, shard: str = "shardId-000000000000", sub: int = 0) -> list[RecordId]:
    return [RecordId(stream, shard, str(10**55 + i), sub) for i in range(n)]


def test_recorded_records_are_found_and_others_are_not(ledger: Ledger, unique: str) -> None:
    ids = _ids(unique, 50)
    outcome = ledger.record(ids[:30], "event-1", 1_800_000_000)
    assert (outcome.new, outcome.duplicate, outcome.redelivered) == (30, 0, 0)
    found = ledger.lookup(ids)
    assert set(found) == set(ids[:30])
    assert all(entry.count == 1 and entry.first_processed_at == 1_800_000_000 for entry in found.values())


def test_the_same_event_twice_counts_once(ledger: Ledger, unique: str) -> None:
    ids = _ids(unique, 10)
    ledger.record(ids, "event-1", 1_800_000_000)
    ledger.record(ids, "event-1", 1_800_000_000)
    assert {entry.count for entry in ledger.lookup(ids).values()} == {1}


def test_a_new_event_for_the_same_records_is_a_duplicate(ledger: Ledger, unique: str) -> None:
    ids = _ids(unique, 10)
    ledger.record(ids, "event-1", 1_800_000_000)
    ledger.record(ids[:4], "event-2", 1_800_000_500)
    ledger.record(ids[:4], "event-1", 1_800_000_000)  # an old event redelivered after a newer one
    ledger.record(ids[:1], "event-3", 1_800_000_900)
    counts = {record: entry.count for record, entry in ledger.lookup(ids).items()}
    assert [counts[record] for record in ids[:5]] == [3, 2, 2, 2, 1]
    assert ledger.lookup(ids[:1])[ids[0]].first_processed_at == 1_800_000_000


def test_identity_includes_shard_and_sub_sequence(ledger: Ledger, unique: str) -> None:
    ledger.record([RecordId(unique, "shardId-000000000000", "7", 0)], "e", 1_800_000_000)
    probes = [
        RecordId(unique, "shardId-000000000000", "7", 0),
        RecordId(unique, "shardId-000000000001", "7", 0),
        RecordId(unique, "shardId-000000000000", "7", 1),
        RecordId(unique + "x", "shardId-000000000000", "7", 0),
    ]
    assert list(ledger.lookup(probes)) == probes[:1]


def test_health_reports_ttl_and_start(ledger: Ledger) -> None:
    health = ledger.health()
    assert health.healthy
    assert health.ttl_seconds == 3600
    assert health.started_at is not None
    assert health.started_at.timestamp() <= time.time() + 1
    assert health.evictions == 0


@pytest.mark.integration
def test_ttl_beyond_thirty_days_keeps_entries(memcached: Service, unique: str) -> None:
    # As a relative expiry, 40 days would be read by memcached as a Unix time in 1970: expired at once.
    with closing(_memcached_ledger(memcached, ttl=MEMCACHED_RELATIVE_EXPIRY_LIMIT + 10 * 24 * 3600)) as ledger:
        ids = _ids(unique, 3)
        ledger.record(ids, "e", int(time.time()))
        assert set(ledger.lookup(ids)) == set(ids)


@pytest.mark.integration
def test_several_nodes_share_the_keys_and_a_dead_node_is_an_error(tmp_path: Path, unique: str) -> None:
    from streamwreck.core.errors import LedgerUnavailableError

    nodes = [processes.start_memcached(tmp_path / str(i)) for i in range(2)]
    try:
        with closing(_memcached_ledger(*nodes)) as ledger:
            ids = [r for shard in range(8) for r in _ids(unique, 50, shard=f"shardId-{shard:012d}")]
            ledger.record(ids, "e", 1_800_000_000)
            assert set(ledger.lookup(ids)) == set(ids)
            items = [node.curr_items for node in ledger.health().nodes]
            assert min(items) > 1  # spread over both (each also holds its format marker)
            nodes[1].stop()
            health = ledger.health()
            assert not health.healthy and [n.reachable for n in health.nodes] == [True, False]
            with pytest.raises(LedgerUnavailableError, match=f"127.0.0.1:{nodes[1].port}"):
                ledger.lookup(ids)
    finally:
        for node in nodes:
            node.stop()


def test_first_processed_is_the_earliest_even_out_of_order(ledger: Ledger, unique: str) -> None:
    ids = _ids(unique, 2)
    ledger.record(ids, "late-event", 1_800_000_900)
    ledger.record(ids, "early-event", 1_800_000_100)
    assert {entry.first_processed_at for entry in ledger.lookup(ids).values()} == {1_800_000_100}


def test_concurrent_recorders_count_each_event_once(ledger: Ledger, unique: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ids = _ids(unique, 300)
    deliveries = [f"event-{n % 4}" for n in range(12)]  # four events, each delivered three times, all at once
    with ThreadPoolExecutor(max_workers=12) as pool:
        list(pool.map(lambda event: ledger.record(ids, event, 1_800_000_000), deliveries))
    assert {entry.count for entry in ledger.lookup(ids).values()} == {4}


def _expiry_of(node: Service, key: str) -> int:
    """The item's remaining TTL in seconds, as memcached's meta get says (``mg <key> t``)."""
    import socket

    with socket.create_connection(("127.0.0.1", node.port), timeout=2) as sock:
        sock.sendall(f"mg {key} t\r\n".encode())
        answer = sock.recv(100).decode()
    assert answer.startswith("HD t"), answer
    return int(answer.split()[1][1:])


@pytest.mark.integration
def test_per_record_entries_carry_the_ttl(tmp_path: Path, unique: str) -> None:
    from streamwreck.core.records import ledger_key

    node = processes.start_memcached(tmp_path)
    try:
        record = _ids(unique, 1)[0]
        with closing(_memcached_ledger(node, ttl=3600, ledger_format="records")) as ledger:
            ledger.record([record], "e", int(time.time()))
        assert 3590 <= _expiry_of(node, ledger_key(record)) <= 3600
    finally:
        node.stop()


@pytest.mark.integration
def test_a_bucket_lives_the_ttl_after_its_last_possible_arrival(memcached: Service, unique: str) -> None:
    from streamwreck.core import buckets

    now = int(time.time())
    sequence = buckets.sequence_number(now - 86_400, 0, 5_000, now)  # arrived now, in a stream a day old
    record = RecordId(unique, "shardId-000000000000", sequence, 0)
    bucket = buckets.bucket_of(record.stream, record.shard_id, record.sequence_number, 0)
    assert bucket.window_end is not None and now < bucket.window_end <= now + buckets.WINDOW_SECONDS
    with closing(_memcached_ledger(memcached, ttl=3600)) as ledger:
        ledger.record([record], "e", now)
    expected = bucket.window_end + 3600 + buckets.EXPIRY_MARGIN_SECONDS - now
    assert expected - 10 <= _expiry_of(memcached, bucket.key) <= expected + 5  # memcached's clock ticks in seconds


@pytest.mark.parametrize("nodes", [3, 4])
def test_keys_spread_evenly_over_several_nodes(nodes: int) -> None:
    from pymemcache.client.base import PooledClient

    from streamwreck.core.memcached import MemcachedNodes
    from streamwreck.core.records import ledger_key

    clients = {f"127.0.0.1:{40000 + i}": PooledClient(("127.0.0.1", 40000 + i)) for i in range(nodes)}  # unused
    keys = [ledger_key(record) for record in _ids("spread", 20_000)]
    sizes = [len(group) for group in MemcachedNodes(clients).by_node(keys).values()]
    assert len(sizes) == nodes
    assert max(sizes) / min(sizes) < 1.15, sizes


@pytest.mark.integration
def test_health_reports_a_flush(tmp_path: Path) -> None:
    from pymemcache.client.base import Client

    node = processes.start_memcached(tmp_path)
    try:
        with closing(_memcached_ledger(node)) as ledger, closing(Client(("127.0.0.1", node.port))) as client:
            assert ledger.health().flushes == 0
            # noreply=False waits for memcached's OK: with noreply, the stats read on the ledger's own connection
            # (another memcached worker thread) could come before the flush is done.
            assert client.flush_all(noreply=False)
            assert ledger.health().flushes == 1
    finally:
        node.stop()


@pytest.mark.integration
def test_a_ledger_of_another_format_is_never_mixed_in_silently(tmp_path: Path, unique: str) -> None:
    from streamwreck.core.errors import LedgerUnavailableError

    node = processes.start_memcached(tmp_path)
    try:
        ids = _ids(unique, 3)
        with closing(_memcached_ledger(node, ledger_format="records")) as old:
            old.record(ids, "e", 1_800_000_000)
        with closing(_memcached_ledger(node, ledger_format="buckets")) as new:
            health = new.health()
            assert not health.healthy and health.conflict and "'records'" in health.conflict
            with pytest.raises(LedgerUnavailableError, match="STREAMWRECK_LEDGER_FORMAT"):
                new.record(ids, "e", 1_800_000_000)
    finally:
        node.stop()


@pytest.mark.integration
def test_the_ledger_begins_when_its_format_marker_is_first_written(tmp_path: Path, unique: str) -> None:
    node = processes.start_memcached(tmp_path)
    try:
        with closing(_memcached_ledger(node)) as ledger:
            first = ledger.health()  # the first to ask writes the marker
            (state,) = first.nodes
            assert state.ledger_format == "buckets" and state.format_since is not None
            assert first.started_at == max(state.started_at, state.format_since)  # type: ignore[type-var]
            assert ledger.health().nodes[0].format_since == state.format_since  # added once, then kept
    finally:
        node.stop()
