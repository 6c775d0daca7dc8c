"""The reader's logic without a network: the paginated shard listing, shard order, --shard, pacing, throttling,
expired iterators, until/since.

The Kinesis client here is a scripted stand-in raising botocore's own ClientError; the same paths run against
kinesis-local in tests/integration/test_check_stream.py (reading, resharding, since/until) and
tests/integration/test_check_iterator.py (an iterator that really expires).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from streamwreck.checker.aggregation import aggregate
from streamwreck.checker.reading import Pace, Shard, ShardReader, in_read_order, list_shards, read_all, select
from streamwreck.core.errors import AwsError

T0 = 1_800_000_000.0


def shard(shard_id: str, *parents: str, closed: bool = False) -> Shard:
    return Shard(shard_id, parents, closed, 0, 2**128 - 1)


def listed(shard_id: str, *parents: str, closed: bool = False) -> dict[str, Any]:
    """A shard as ListShards describes it."""
    item: dict[str, Any] = {
        "ShardId": shard_id,
        "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)},
        "SequenceNumberRange": {"StartingSequenceNumber": "1", **({"EndingSequenceNumber": "9"} if closed else {})},
    }
    if parents:
        item["ParentShardId"] = parents[0]
    if len(parents) > 1:
        item["AdjacentParentShardId"] = parents[1]
    return item


class PagedListing:
    """ListShards in pages joined by NextToken, as Kinesis pages a stream with more shards than MaxResults."""

    def __init__(self, pages: list[list[dict[str, Any]]], throttle_first: bool = False) -> None:
        self.pages = pages
        self.calls: list[dict[str, Any]] = []
        self.throttle_first = throttle_first

    def list_shards(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.throttle_first:
            self.throttle_first = False
            raise error("LimitExceededException")
        index = 0 if "StreamName" in kwargs else int(kwargs["NextToken"].removeprefix("token-"))
        response: dict[str, Any] = {"Shards": self.pages[index]}
        if index + 1 < len(self.pages):
            response["NextToken"] = f"token-{index + 1}"
        return response


def test_list_shards_follows_next_token_to_the_last_page() -> None:
    kinesis = PagedListing(
        [
            [listed("shardId-0", closed=True), listed("shardId-1")],
            [listed("shardId-2", "shardId-0"), listed("shardId-3", "shardId-0")],
            [listed("shardId-4", "shardId-3", "shardId-1")],
        ],
        throttle_first=True,
    )
    slept: list[float] = []
    shards = list_shards(kinesis, "st", sleep=slept.append)  # type: ignore[arg-type]
    assert [s.shard_id for s in shards] == [f"shardId-{n}" for n in range(5)]
    assert shards[0].closed and not shards[1].closed
    assert shards[4].parent_ids == ("shardId-3", "shardId-1")
    assert len(slept) == 1  # throttled once, then retried
    # the stream name goes only with the first request: Kinesis refuses it beside a NextToken
    assert kinesis.calls == [
        {"StreamName": "st", "MaxResults": 1000},
        {"StreamName": "st", "MaxResults": 1000},
        {"NextToken": "token-1", "MaxResults": 1000},
        {"NextToken": "token-2", "MaxResults": 1000},
    ]


def test_parents_come_before_children_whatever_the_listing_order() -> None:
    listing = [shard("c", "a", "b"), shard("b"), shard("d", "c"), shard("a"), shard("e", "gone")]
    order = [s.shard_id for s in in_read_order(listing)]
    assert order.index("a") < order.index("c") and order.index("b") < order.index("c") < order.index("d")
    assert set(order) == {"a", "b", "c", "d", "e"}


def test_select_keeps_read_order_and_rejects_unknown_shards() -> None:
    shards = in_read_order([shard("a"), shard("b", "a")])
    assert [s.shard_id for s in select(shards, ["b", "a"], "st")] == ["a", "b"]
    assert select(shards, [], "st") == shards
    with pytest.raises(AwsError, match="stream 'st' has no shard 'x'"):
        select(shards, ["x"], "st")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pace_allows_five_calls_in_any_second_and_two_megabytes_per_second() -> None:
    clock = FakeClock()
    pace = Pace(clock=clock.time, sleep=clock.sleep)
    calls = [pace.wait() for _ in range(6)]
    assert calls[:5] == [100.0] * 5 and calls[5] == pytest.approx(101.0)
    at = pace.wait()
    pace.spent(at, 4 * 1024 * 1024)  # 4 MB read: the next call waits 2 s
    assert pace.wait() == pytest.approx(at + 2.0)


def error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetRecords")


def record(seq: int, arrival: float, data: bytes = b"x", key: str = "pk") -> dict[str, Any]:
    return {
        "SequenceNumber": str(seq),
        "ApproximateArrivalTimestamp": datetime.fromtimestamp(arrival, UTC),
        "Data": data,
        "PartitionKey": key,
    }


class ScriptedKinesis:
    """GetRecords answers from a script; each step is a response dict or an exception code to raise."""

    def __init__(self, steps: list[dict[str, Any] | str]) -> None:
        self.steps = steps
        self.iterator_requests: list[dict[str, Any]] = []

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        self.iterator_requests.append(kwargs)
        return {"ShardIterator": f"it-{len(self.iterator_requests)}"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:
        step = self.steps.pop(0)
        if isinstance(step, str):
            raise error(step)
        return step


def reader(kinesis: Any, the_shard: Shard, **kwargs: Any) -> tuple[ShardReader, FakeClock]:
    clock = FakeClock()
    pace = Pace(clock=clock.time, sleep=clock.sleep)
    return ShardReader(kinesis, "st", the_shard, pace=pace, sleep=clock.sleep, clock=clock.time, **kwargs), clock


def page(records: list[dict[str, Any]], more: bool = True, behind: int = 0) -> dict[str, Any]:
    response: dict[str, Any] = {"Records": records, "MillisBehindLatest": behind}
    if more:
        response["NextShardIterator"] = "next"
    return response


def seqs(pages: list[list[Any]]) -> list[tuple[str, int]]:
    return [(r.sequence_number, r.sub_sequence_number) for p in pages for r in p]


def test_an_open_shard_is_read_until_an_empty_read_at_the_tip() -> None:
    kinesis = ScriptedKinesis(
        [page([], behind=5000), page([record(1, T0), record(2, T0)], behind=10), page([record(3, T0)]), page([])]
    )
    the_reader, _ = reader(kinesis, shard("a"))
    pages = list(the_reader.pages())
    assert seqs(pages) == [("1", 0), ("2", 0), ("3", 0)]
    assert [r.ordinal for p in pages for r in p] == [0, 1, 2]
    assert the_reader.stats.ended == "caught_up" and the_reader.stats.reads == 4
    assert kinesis.iterator_requests == [{"StreamName": "st", "ShardId": "a", "ShardIteratorType": "TRIM_HORIZON"}]


def test_a_closed_shard_is_read_until_the_iterator_runs_out_not_at_an_empty_read() -> None:
    kinesis = ScriptedKinesis([page([record(1, T0)]), page([]), page([]), page([record(2, T0)], more=False)])
    the_reader, _ = reader(kinesis, shard("a", closed=True))
    assert seqs(list(the_reader.pages())) == [("1", 0), ("2", 0)]
    assert the_reader.stats.ended == "shard_end"


def test_throttling_backs_off_and_an_expired_iterator_resumes_after_the_last_record() -> None:
    kinesis = ScriptedKinesis(
        [
            page([record(1, T0), record(2, T0)]),
            "ProvisionedThroughputExceededException",
            "ProvisionedThroughputExceededException",
            "ExpiredIteratorException",
            page([record(3, T0)], more=False),
        ]
    )
    the_reader, clock = reader(kinesis, shard("a"))
    assert seqs(list(the_reader.pages())) == [("1", 0), ("2", 0), ("3", 0)]
    assert the_reader.stats.throttled == 2 and the_reader.stats.renewals == 1
    assert kinesis.iterator_requests[1]["ShardIteratorType"] == "AFTER_SEQUENCE_NUMBER"
    assert kinesis.iterator_requests[1]["StartingSequenceNumber"] == "2"
    assert sum(clock.slept) > 0


def test_an_iterator_that_expires_before_any_record_restarts_where_the_read_started() -> None:
    kinesis = ScriptedKinesis(["ExpiredIteratorException", page([record(1, T0 + 5)], more=False)])
    the_reader, _ = reader(kinesis, shard("a"), since=T0)
    assert seqs(list(the_reader.pages())) == [("1", 0)]
    assert [r["ShardIteratorType"] for r in kinesis.iterator_requests] == ["AT_TIMESTAMP", "AT_TIMESTAMP"]
    assert kinesis.iterator_requests[0]["Timestamp"] == datetime.fromtimestamp(T0, UTC)


def test_throttled_for_too_long_fails_with_one_line() -> None:
    kinesis = ScriptedKinesis(["ProvisionedThroughputExceededException"] * 30)
    the_reader, _ = reader(kinesis, shard("a"))
    with pytest.raises(AwsError, match="stayed throttled"):
        list(the_reader.pages())


def test_other_errors_become_one_line() -> None:
    kinesis = ScriptedKinesis(["ResourceNotFoundException"])
    the_reader, _ = reader(kinesis, shard("a"))
    with pytest.raises(AwsError, match="stream 'st' not found"):
        list(the_reader.pages())


def test_since_drops_earlier_records_and_until_stops_at_the_first_later_one() -> None:
    kinesis = ScriptedKinesis([page([record(1, T0 - 0.5), record(2, T0 + 1), record(3, T0 + 2), record(4, T0 + 9)])])
    the_reader, _ = reader(kinesis, shard("a"), since=T0, until=T0 + 5)
    assert seqs(list(the_reader.pages())) == [("2", 0), ("3", 0)]
    assert the_reader.stats.ended == "until"


def test_aggregated_records_become_their_user_records() -> None:
    packed = list(aggregate([(f"k{i}", f"v{i}".encode()) for i in range(3)], max_user_records=10))
    assert len(packed) == 1
    kinesis = ScriptedKinesis([page([record(1, T0), record(2, T0, packed[0].data, "k0"), record(3, T0)], more=False)])
    the_reader, _ = reader(kinesis, shard("a"))
    pages = list(the_reader.pages())
    assert seqs(pages) == [("1", 0), ("2", 0), ("2", 1), ("2", 2), ("3", 0)]
    users = pages[0]
    assert [(r.partition_key, r.data) for r in users[1:4]] == [("k0", b"v0"), ("k1", b"v1"), ("k2", b"v2")]
    assert the_reader.stats.kinesis_records == 3 and the_reader.stats.records == 5


def test_a_stop_request_ends_the_read_between_calls() -> None:
    stop = threading.Event()
    kinesis = ScriptedKinesis([page([record(1, T0)]), page([record(2, T0)])])
    the_reader, _ = reader(kinesis, shard("a"), stop=stop)
    pages = the_reader.pages()
    assert seqs([next(pages)]) == [("1", 0)]
    stop.set()
    assert list(pages) == []
    assert the_reader.stats.ended == "stopped"


def test_read_all_waits_for_parents_and_stops_everything_on_a_failure() -> None:
    shards = [shard("c", "a", "b"), shard("a"), shard("b"), shard("d", "c")]
    log: list[tuple[str, str]] = []
    lock = threading.Lock()

    def read_one(s: Shard) -> None:
        with lock:
            log.append(("start", s.shard_id))
        with lock:
            log.append(("end", s.shard_id))

    read_all(shards, read_one, concurrency=3, stop=threading.Event())
    position = {entry: i for i, entry in enumerate(log)}
    assert position[("end", "a")] < position[("start", "c")]
    assert position[("end", "b")] < position[("start", "c")]
    assert position[("end", "c")] < position[("start", "d")]

    stop = threading.Event()

    def failing(s: Shard) -> None:
        if s.shard_id == "b":
            raise AwsError("boom")

    with pytest.raises(AwsError, match="boom"):
        read_all(shards, failing, concurrency=2, stop=stop)
    assert stop.is_set()


def test_timestamps_parse_to_the_same_instant_as_botocores_parser() -> None:
    from botocore.utils import parse_timestamp as botocore_parse

    from streamwreck.core.aws import parse_timestamp

    for value in (1_795_795_200.123, 1_795_795_200, "2026-11-27T16:00:00.123Z"):
        ours = parse_timestamp(value)
        assert ours == botocore_parse(value) and ours.tzinfo is not None
    assert parse_timestamp(1_795_795_200.5) == datetime(2026, 11, 27, 16, 0, 0, 500000, tzinfo=UTC)


def test_an_aggregate_with_a_user_record_outside_the_shard_marks_all_its_records() -> None:
    """The KCL drops every user record of such an aggregate: the reader says so of each, and of no other record."""
    from streamwreck.checker.aggregation import hash_key

    keys = [f"k{i}" for i in range(40)]
    low = [k for k in keys if hash_key(k) < 2**127][:2]
    high = [k for k in keys if hash_key(k) >= 2**127][:1]
    lower_half = Shard("a", (), False, 0, 2**127 - 1)
    mixed = next(aggregate([(k, b"x") for k in low + high], max_user_records=10))
    kept = next(aggregate([(k, b"y") for k in low], max_user_records=10))
    kinesis = ScriptedKinesis(
        [page([record(1, T0, mixed.data, low[0]), record(2, T0, kept.data, low[0]), record(3, T0)], more=False)]
    )
    the_reader, _ = reader(kinesis, lower_half)
    users = [r for p in the_reader.pages() for r in p]
    assert [(r.sequence_number, r.stray_aggregate) for r in users] == [
        ("1", True),
        ("1", True),
        ("1", True),
        ("2", False),
        ("2", False),
        ("3", False),
    ]
