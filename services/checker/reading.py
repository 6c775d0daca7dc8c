"""Reading a whole stream: every shard listed, parents before children, each shard to its end, within Kinesis' limits.

- Shards: ListShards without a filter, paginated (it lists the closed shards still within retention; with the
  ``AT_TRIM_HORIZON`` filter kinesis-local returns children too, and the plain listing is what we need anyway).
- A closed shard is read until GetRecords returns no next iterator. Its EndingSequenceNumber is never compared with
  anything (kinesis-local reports 2^63-1 there, smaller than its records' numbers).
- An open shard is read until it is caught up (an empty read with MillisBehindLatest 0), or to the first record
  that arrived after ``until``.
- Limits per shard: at most 5 GetRecords calls in any second and 2 MB/s (a call that returned B bytes delays the
  next by B / 2 MB/s, as Kinesis does); ProvisionedThroughputExceeded backs off exponentially with jitter. An expired
  iterator (older than 5 minutes, e.g. while the reconciler held the reader back) is renewed after the last
  sequence number read (AFTER_SEQUENCE_NUMBER), so nothing is read twice or skipped.
- KPL aggregates become their user records, each with its sub-sequence number.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from streamwreck.checker.aggregation import MAGIC, deaggregate, hash_key
from streamwreck.core.aws import AWS_ERRORS, error_code, translate
from streamwreck.core.errors import AwsError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

MAX_RECORDS_PER_CALL = 10_000
CALLS_PER_SECOND = 5
BYTES_PER_SECOND = 2 * 1024 * 1024
THROTTLE_CODES = {"ProvisionedThroughputExceededException", "LimitExceededException", "KMSThrottlingException"}
MAX_THROTTLES = 20  # in a row, each waiting up to MAX_BACKOFF: about a minute and a half
MAX_BACKOFF = 5.0
MAX_RENEWALS = 10  # expired iterators in a row without a record read in between


@dataclass(frozen=True)
class Shard:
    shard_id: str
    parent_ids: tuple[str, ...]  # as listed; a parent past retention is no longer listed
    closed: bool
    starting_hash_key: int
    ending_hash_key: int

    @classmethod
    def from_listing(cls, item: Any) -> Shard:
        parents = tuple(p for p in (item.get("ParentShardId"), item.get("AdjacentParentShardId")) if p)
        hash_range = item["HashKeyRange"]
        return cls(
            shard_id=item["ShardId"],
            parent_ids=parents,
            closed="EndingSequenceNumber" in item.get("SequenceNumberRange", {}),
            starting_hash_key=int(hash_range["StartingHashKey"]),
            ending_hash_key=int(hash_range["EndingHashKey"]),
        )

    def owns(self, hash_key: int) -> bool:
        return self.starting_hash_key <= hash_key <= self.ending_hash_key


class UserRecord(NamedTuple):
    """One user record as read: a Kinesis record, or one user record of a KPL aggregate."""

    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    explicit_hash_key: str | None
    arrival: float  # ApproximateArrivalTimestamp, Unix seconds
    data: bytes
    ordinal: int  # its place among the user records read from its shard, from 0
    # In a KPL aggregate with a user record that hashes outside this shard: the KCL drops every user record of it.
    stray_aggregate: bool = False


@dataclass
class ReadStats:
    records: int = 0  # user records
    kinesis_records: int = 0
    bytes: int = 0
    reads: int = 0  # GetRecords calls that answered
    throttled: int = 0
    renewals: int = 0  # expired iterators replaced
    ended: str = ""  # shard_end | caught_up | until | stopped
    started_at: float | None = None
    finished_at: float | None = None
    first_sequence_number: str | None = None
    last_sequence_number: str | None = None


def list_shards(kinesis: KinesisClient, stream: str, sleep: Callable[[float], None] = time.sleep) -> list[Shard]:
    """Every shard of the stream, open and closed (within retention), in the order Kinesis lists them."""
    shards: list[Shard] = []
    kwargs: dict[str, Any] = {"StreamName": stream, "MaxResults": 1000}
    throttles = 0
    while True:
        try:
            page = kinesis.list_shards(**kwargs)
        except AWS_ERRORS as exc:
            if error_code(exc) in THROTTLE_CODES and throttles < MAX_THROTTLES:
                throttles += 1
                sleep(backoff(throttles))
                continue
            raise translate(exc, f"listing the shards of {stream!r}", not_found=f"stream {stream!r}") from exc
        shards.extend(Shard.from_listing(item) for item in page.get("Shards", []))
        token = page.get("NextToken")
        if not token:
            return shards
        kwargs = {"NextToken": token, "MaxResults": 1000}


def in_read_order(shards: Sequence[Shard]) -> list[Shard]:
    """Parents before children (parents that are not listed are ignored); otherwise the listing's order."""
    by_id = {shard.shard_id: shard for shard in shards}
    ordered: list[Shard] = []
    placed: set[str] = set()

    def place(shard: Shard, path: tuple[str, ...]) -> None:
        if shard.shard_id in placed or shard.shard_id in path:
            return
        for parent in shard.parent_ids:
            if parent in by_id:
                place(by_id[parent], (*path, shard.shard_id))
        placed.add(shard.shard_id)
        ordered.append(shard)

    for shard in shards:
        place(shard, ())
    return ordered


def select(shards: Sequence[Shard], wanted: Sequence[str], stream: str) -> list[Shard]:
    """Only the shards named with --shard (in read order); a name the stream does not have is a usage error."""
    if not wanted:
        return list(shards)
    known = {shard.shard_id for shard in shards}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        listing = ", ".join(sorted(known)) or "none"
        raise AwsError(f"stream {stream!r} has no shard {unknown[0]!r} (its shards: {listing})")
    return [shard for shard in shards if shard.shard_id in set(wanted)]


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: up to 0.25 s, 0.5 s, 1 s, ... capped at MAX_BACKOFF."""
    return random.uniform(0.5, 1.0) * min(MAX_BACKOFF, 0.25 * 2 ** (attempt - 1))


class Pace:
    """Keeps one reader within a shard's read limits: 5 calls in any second, and 2 MB/s."""

    def __init__(
        self,
        calls_per_second: int = CALLS_PER_SECOND,
        bytes_per_second: int = BYTES_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._calls: deque[float] = deque(maxlen=calls_per_second)
        self._bytes_per_second = bytes_per_second
        self._not_before = 0.0
        self._clock = clock
        self._sleep = sleep

    def wait(self) -> float:
        """Sleep until the next call is allowed; returns the time of the call."""
        now = self._clock()
        earliest = self._not_before
        if len(self._calls) == self._calls.maxlen:
            earliest = max(earliest, self._calls[0] + 1.0)
        if earliest > now:
            self._sleep(earliest - now)
            now = self._clock()
        self._calls.append(now)
        return now

    def spent(self, called_at: float, nbytes: int) -> None:
        """A call made at ``called_at`` returned ``nbytes``: the next waits until that much bandwidth is back."""
        self._not_before = max(self._not_before, called_at + nbytes / self._bytes_per_second)


class ShardReader:
    """Reads one shard from TRIM_HORIZON (or ``since``) to its end, page by page, as user records."""

    def __init__(
        self,
        kinesis: KinesisClient,
        stream: str,
        shard: Shard,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = MAX_RECORDS_PER_CALL,
        pace: Pace | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.shard = shard
        self.since = since
        self.until = until
        self.limit = limit
        self.pace = pace or Pace(sleep=sleep)
        self.stop = stop or threading.Event()
        self.sleep = sleep
        self.clock = clock
        self.stats = ReadStats()
        self._last_sequence: str | None = None

    def _iterator(self) -> str:
        """A fresh iterator: after the last record read, else at the start."""
        kwargs: dict[str, Any] = {"StreamName": self.stream, "ShardId": self.shard.shard_id}
        if self._last_sequence is not None:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=self._last_sequence)
        elif self.since is not None:
            kwargs.update(ShardIteratorType="AT_TIMESTAMP", Timestamp=datetime.fromtimestamp(self.since, UTC))
        else:
            kwargs.update(ShardIteratorType="TRIM_HORIZON")
        throttles = 0
        while True:
            try:
                return self.kinesis.get_shard_iterator(**kwargs)["ShardIterator"]
            except AWS_ERRORS as exc:
                if error_code(exc) in THROTTLE_CODES and throttles < MAX_THROTTLES:
                    throttles += 1
                    self.stats.throttled += 1
                    self.sleep(backoff(throttles))
                    continue
                raise translate(
                    exc, f"getting an iterator for {self.shard.shard_id}", not_found=f"stream {self.stream!r}"
                ) from exc

    def _get_records(self, iterator: str) -> dict[str, Any] | None:
        """One GetRecords call within the limits; None when the iterator expired (and was renewed)."""
        called_at = self.pace.wait()
        try:
            response: dict[str, Any] = self.kinesis.get_records(ShardIterator=iterator, Limit=self.limit)  # type: ignore[assignment]
        except AWS_ERRORS as exc:
            code = error_code(exc)
            if code == "ExpiredIteratorException":
                return None
            if code in THROTTLE_CODES:
                raise _Throttled from exc
            raise translate(exc, f"reading {self.shard.shard_id}", not_found=f"stream {self.stream!r}") from exc
        nbytes = sum(len(record["Data"]) for record in response["Records"])
        self.pace.spent(called_at, nbytes)
        self.stats.reads += 1
        self.stats.bytes += nbytes
        return response

    def pages(self) -> Iterator[list[UserRecord]]:
        """The shard's user records, one list per GetRecords call that returned any; ``stats`` says how it ended."""
        stats = self.stats
        stats.started_at = self.clock()
        try:
            iterator: str | None = self._iterator()
            throttles = renewals = 0
            while iterator is not None:
                if self.stop.is_set():
                    stats.ended = "stopped"
                    return
                try:
                    response = self._get_records(iterator)
                except _Throttled:
                    throttles += 1
                    stats.throttled += 1
                    if throttles > MAX_THROTTLES:
                        raise AwsError(
                            f"{self.shard.shard_id} stayed throttled (ProvisionedThroughputExceeded) after "
                            f"{MAX_THROTTLES} retries: other consumers use its read capacity; retry later"
                        ) from None
                    self.sleep(backoff(throttles))
                    continue
                throttles = 0
                if response is None:
                    renewals += 1
                    stats.renewals += 1
                    if renewals > MAX_RENEWALS:
                        raise AwsError(f"the iterators of {self.shard.shard_id} keep expiring") from None
                    iterator = self._iterator()
                    continue
                page, past_until = self._user_records(response["Records"])
                if page:
                    renewals = 0
                    yield page
                if past_until:
                    stats.ended = "until"
                    return
                iterator = response.get("NextShardIterator")
                if iterator is None:
                    stats.ended = "shard_end"
                elif not self.shard.closed and not response["Records"] and not response.get("MillisBehindLatest"):
                    stats.ended = "caught_up"
                    return
        finally:
            stats.finished_at = self.clock()

    def _user_records(self, records: list[Any]) -> tuple[list[UserRecord], bool]:
        """A page's records as user records (within since/until); True when a record arrived after ``until``."""
        stats = self.stats
        shard_id = self.shard.shard_id
        since, until = self.since, self.until
        page: list[UserRecord] = []
        for record in records:
            sequence = record["SequenceNumber"]
            arrived_at = record["ApproximateArrivalTimestamp"]
            arrival = arrived_at.timestamp()
            if until is not None and arrival > until:
                return page, True
            self._last_sequence = sequence
            if since is not None and arrival < since:
                continue  # timestamp iterators can resolve to the second: drop what came before
            stats.kinesis_records += 1
            if stats.first_sequence_number is None:
                stats.first_sequence_number = sequence
            stats.last_sequence_number = sequence
            data = record["Data"]
            partition_key = record["PartitionKey"]
            if data[:4] == MAGIC:
                subs = deaggregate(sequence, partition_key, data, arrived_at)
                aggregated = len(subs) > 1 or subs[0].data is not data  # not an aggregate passed on whole
                stray = aggregated and any(
                    not self.shard.owns(hash_key(sub.partition_key, sub.explicit_hash_key)) for sub in subs
                )
                for sub in subs:
                    page.append(
                        UserRecord(
                            shard_id,
                            sequence,
                            sub.sub_sequence_number,
                            sub.partition_key,
                            sub.explicit_hash_key,
                            arrival,
                            sub.data,
                            stats.records,
                            stray,
                        )
                    )
                    stats.records += 1
            else:
                page.append(UserRecord(shard_id, sequence, 0, partition_key, None, arrival, data, stats.records))
                stats.records += 1
        return page, False


class _Throttled(TransientError):
    pass


def read_all(
    shards: Sequence[Shard],
    read_one: Callable[[Shard], None],
    concurrency: int,
    stop: threading.Event,
) -> None:
    """``read_one`` every shard, at most ``concurrency`` at once, each only after its listed parents are done.

    The first failure stops the others (``stop`` is set; readers check it between calls) and is raised here.
    """
    present = {shard.shard_id for shard in shards}
    waiting = {shard.shard_id: shard for shard in in_read_order(shards)}
    blockers = {shard.shard_id: {p for p in shard.parent_ids if p in present} for shard in shards}
    done: set[str] = set()
    running: dict[Future[None], str] = {}
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="reader") as pool:
        try:
            while waiting or running:
                for shard_id in [s for s in waiting if blockers[s] <= done]:
                    if len(running) >= concurrency:
                        break
                    running[pool.submit(read_one, waiting.pop(shard_id))] = shard_id
                if not running:
                    raise RuntimeError(f"shards wait on each other: {sorted(waiting)}")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    shard_id = running.pop(future)
                    future.result()
                    done.add(shard_id)
        except BaseException:
            stop.set()
            for future in running:
                future.cancel()
            raise
