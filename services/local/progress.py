"""How far the local stack's consumer has got: which records of the stream are in the ledger, which the demo rule
skipped, and whether every shard's KCL checkpoint has passed its last record (``streamwreck local wait``); and how
far its watcher has got: whether its own checkpoints (it checkpoints only what it has judged) have passed them too.

The rules are pure functions; the I/O is the checker engine's: its stream reader, its reconcile API client and its
lease-table reading.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from streamwreck.checker.leases import checkpoints, read_leases
from streamwreck.checker.reading import Shard, ShardReader, UserRecord, in_read_order, list_shards, read_all
from streamwreck.checker.reconciling import ReconcileApi
from streamwreck.checker.tally import RecordKey, key_of
from streamwreck.checker.verdict import Checkpoint, LeasePosition
from streamwreck.core.clock import wait_until
from streamwreck.core.errors import AwsError, StreamwreckError, WaitTimeout
from streamwreck.core.records import RecordId
from streamwreck.local.state import WATCH, Say, StackState
from streamwreck.processor.processor import skipped_by_demo_rule

READERS = 4  # shards read at once
SHOW_EVERY = 10.0  # seconds: an unchanged progress line is shown again after this long


@dataclass(frozen=True)
class Progress:
    total: int  # user records in the stream (sub-records of aggregated ones counted one by one)
    skipped: int  # by the demo rule: never recorded
    recorded: int  # of the others, how many the ledger has
    shards: int  # shards that hold records
    checkpointed: int  # of them, how many the consumer has checkpointed past their last record

    @property
    def expected(self) -> int:
        return self.total - self.skipped

    @property
    def done(self) -> bool:
        return self.recorded >= self.expected and self.checkpointed >= self.shards

    def line(self) -> str:
        skipped = f" ({self.skipped} skipped by the demo rule)" if self.skipped else ""
        return (
            f"consumer: {self.recorded}/{self.expected} records in the ledger{skipped},"
            f" {self.checkpointed}/{self.shards} shards checkpointed"
        )


def measure(
    records: Sequence[UserRecord],
    unrecorded: Iterable[RecordKey],
    checkpointed: Callable[[UserRecord], bool],
    skip_every: int,
) -> Progress:
    """Progress of ``records`` (the stream's) given which of them the ledger lacks; ``checkpointed(r)`` says whether
    the consumer's checkpoint on ``r``'s shard is at or past ``r`` (it is asked about each shard's last record)."""
    skipped = {key_of(r) for r in records if skipped_by_demo_rule(r.sequence_number, skip_every)}
    missing = set(unrecorded) - skipped
    last: dict[str, UserRecord] = {}
    for record in records:
        known = last.get(record.shard_id)
        if known is None or _position(record) > _position(known):
            last[record.shard_id] = record
    return Progress(
        total=len(records),
        skipped=len(skipped),
        recorded=len(records) - len(skipped) - len(missing),
        shards=len(last),
        checkpointed=sum(1 for record in last.values() if checkpointed(record)),
    )


def _position(record: UserRecord) -> tuple[int, int]:
    return int(record.sequence_number), record.sub_sequence_number


def checkpointed(positions: Mapping[str, Checkpoint], last: UserRecord) -> bool:
    """The consumer's checkpoint on ``last``'s shard is at or past it, or the shard is finished."""
    position = positions[last.shard_id]
    if position.position in (LeasePosition.SHARD_END, LeasePosition.DONE):
        return True
    return position.position is LeasePosition.SEQUENCE and not position.pending(
        last.sequence_number, last.sub_sequence_number
    )


@dataclass
class StreamContents:
    stream: str
    records: list[UserRecord]  # every user record, shard by shard (parents first) in read order
    parents: dict[str, list[str]]  # shard id -> its parent shards' ids (after a split or merge)

    def record_ids(self) -> list[RecordId]:
        return [RecordId(self.stream, *key_of(record)) for record in self.records]


def read_stream(kinesis: Any, stream: str) -> StreamContents:
    """Every user record now in the stream, every shard (closed ones to their end, open ones to the tip)."""
    shards = list_shards(kinesis, stream)
    read: dict[str, list[UserRecord]] = {}
    stop = threading.Event()

    def read_one(shard: Shard) -> None:
        reader = ShardReader(kinesis, stream, shard, stop=stop)
        read[shard.shard_id] = [record for page in reader.pages() for record in page]

    read_all(shards, read_one, max(1, min(READERS, len(shards))), stop)
    return StreamContents(
        stream,
        [record for shard in in_read_order(shards) for record in read[shard.shard_id]],
        {shard.shard_id: list(shard.parent_ids) for shard in shards},
    )


def unrecorded(api: ReconcileApi, stream: str, records: Sequence[UserRecord]) -> list[UserRecord]:
    """The records of ``records`` that have no ledger entry, as the reconcile API answers."""
    if not records:
        return []
    missing = api.reconcile(stream, records).unprocessed
    return [record for record in records if key_of(record) in missing]


def catch_up(state: StackState, timeout: float, show: Say | None = None, since: float | None = None) -> str | None:
    """Wait until the consumer has caught up with every record now in the stream: each one the demo rule does not
    skip is in the ledger, and every shard's checkpoint has passed its last record; in a stack with a watcher, its
    own checkpoints too (it checkpoints only what it has judged and reported). None once it has; else why not (the
    processor or the watcher stopped, or ``timeout`` seconds passed). ``show`` is told the progress as it changes.
    ``since`` (Unix seconds): only records that arrived then or later must be in the ledger (memcached restarted
    then, and forgot the others)."""
    kinesis, dynamodb = state.client("kinesis"), state.client("dynamodb")
    try:
        contents = read_stream(kinesis, state.stream)
    except AwsError as exc:
        raise AwsError(f"{exc} (is the stack running? 'streamwreck local status')") from exc
    records = contents.records
    pending = [
        r
        for r in records
        if not skipped_by_demo_rule(r.sequence_number, state.skip_every) and (since is None or r.arrival >= since)
    ]
    # Every worker of the consumer (`local restart`/`add_worker` may have started more): one alive is enough.
    workers = [part for part in state.parts if part.name == "processor" or part.name.startswith("processor-")]
    watcher = state.part(WATCH)
    api = ReconcileApi(state.api_url, timeout=10.0)
    line, shown_at = "", 0.0

    def look() -> Progress | str | None:
        nonlocal pending, line, shown_at
        previous = line
        watched = True
        try:
            pending = unrecorded(api, state.stream, pending)
            positions = checkpoints(read_leases(dynamodb, state.kcl_application), state.stream, contents.parents)
            now = measure(records, map(key_of, pending), functools.partial(checkpointed, positions), state.skip_every)
            line = now.line()
            if watcher is not None and now.done:  # it judges a record once the consumer's checkpoint has passed it
                own = checkpoints(read_leases(dynamodb, state.watch_application), state.stream, contents.parents)
                judged = measure(records, (), functools.partial(checkpointed, own), 0)
                watched = judged.checkpointed >= judged.shards
                line += f"; watcher: {judged.checkpointed}/{judged.shards} shards judged, {reported(state)} lost"
        except StreamwreckError as exc:  # retried until the deadline: parts may be busy
            now, line = None, f"waiting: {type(exc).__name__}: {exc}"
        if show is not None and (line != previous or time.monotonic() - shown_at > SHOW_EVERY):
            show(line)
            shown_at = time.monotonic()
        if now is not None and now.done and watched:
            return now
        if workers and not any(worker.alive() for worker in workers):
            return f"the processor is not running: see {', '.join(worker.log for worker in workers)}"
        if watcher is not None and not watcher.alive():
            return f"the watcher is not running: see {watcher.log}"
        return None

    try:
        outcome = wait_until(look, timeout, "the consumer to catch up", interval=0.5)
    except WaitTimeout:
        return f"gave up after {timeout:.0f}s: {line}; logs in {state.logs}"
    finally:
        api.close()
    return outcome if isinstance(outcome, str) else None


def reported(state: StackState) -> int:
    """How many lost records the watcher has reported (lines of its export; one reported again counts again)."""
    try:
        with open(state.lost_file, "rb") as lines:
            return sum(1 for _ in lines)
    except FileNotFoundError:
        return 0
