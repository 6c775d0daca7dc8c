"""One shard under watch: the records read and not yet judged, in shard order, and when each can be judged. Pure: no
I/O; the clock is passed in (Unix seconds) and the record processor does the talking.

A record is *due* (asked about, then judged with :func:`streamwreck.checker.verdict.judge`, the rules of ``check``)
once the audited consumer's checkpoint, as read at least ``settle`` seconds ago, has passed it — the consumer
checkpoints after publishing, and its events take a moment to reach the ledger, as for ``check``'s second look — or
once it is older than ``grace``. Only checkpoints that say where the consumer is (a sequence number, the shard's
end, or a finished shard) count as passing; a lease at LATEST, or a shard nothing leases, makes the record wait for
the grace period (and then ``unknown`` unless the ledger holds it). A due record whose answer is ``in_flight`` (the
checkpoint still says the consumer is coming) stays held, with everything after it, and is asked about again after
``retry`` seconds: the watcher never judges past a record it could not settle, so its own checkpoint (the last
record judged) never passes one either.

Records are held in order; :attr:`ShardWatch.full` says when the record processor should stop taking more (it waits
in ``process_records`` until the consumer moves): memory is bounded, nothing is dropped.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from streamwreck.checker.reading import UserRecord
from streamwreck.checker.reconciling import Answer
from streamwreck.checker.tally import key_of
from streamwreck.checker.verdict import Checkpoint, LeasePosition, Status, judge
from streamwreck.core.errors import InternalError
from streamwreck.core.events import Pair

# Checkpoints that say how far the consumer got: a record they do not leave pending was handed to the consumer.
EVIDENT = frozenset({LeasePosition.SEQUENCE, LeasePosition.SHARD_END, LeasePosition.DONE})
FINAL = (Status.PROCESSED, Status.DUPLICATE, Status.LOST, Status.UNKNOWN)


@dataclass(frozen=True)
class Due:
    """Records to ask the API about, and the consumer's checkpoint they are judged against."""

    records: list[UserRecord]
    checkpoint: Checkpoint


@dataclass(frozen=True)
class Outcome:
    record: UserRecord
    status: Status
    reason: str
    count: int  # processed events the ledger holds for it


class ShardWatch:
    def __init__(
        self,
        shard_id: str,
        *,
        grace: float,
        settle: float,
        batch_size: int = 2500,
        max_held: int = 50_000,
        retry: float = 3.0,
    ) -> None:
        if batch_size < 1 or max_held < 1 or grace < 0 or settle < 0 or retry < 0:
            raise ValueError("batch_size and max_held must be at least 1; grace, settle and retry not negative")
        self.shard_id = shard_id
        self.grace = grace
        self.settle = settle
        self.batch_size = batch_size
        self.max_held = max_held
        self.retry = retry
        self.held: deque[UserRecord] = deque()
        self.counts: Counter[str] = Counter()  # final statuses, and "read"
        self.last_judged: Pair | None = None  # the furthest record judged: the watcher's checkpoint may move here
        self._readings: deque[tuple[float, Checkpoint]] = deque()  # the consumer's checkpoint as read, oldest first
        self._retry_at = 0.0

    # -- records in ------------------------------------------------------------------------------------------------

    def add(self, records: Iterable[UserRecord]) -> None:
        before = len(self.held)
        self.held.extend(records)
        self.counts["read"] += len(self.held) - before

    @property
    def full(self) -> bool:
        return len(self.held) >= self.max_held

    # -- the consumer's checkpoint ---------------------------------------------------------------------------------

    def observe(self, checkpoint: Checkpoint, at: float) -> None:
        """The consumer's checkpoint on this shard, read at ``at``. Only a change is kept: an unchanged checkpoint
        read earlier is the more settled evidence."""
        if not self._readings or self._readings[-1][1] != checkpoint:
            self._readings.append((at, checkpoint))

    def settled(self, now: float) -> Checkpoint | None:
        """The newest checkpoint read at least ``settle`` seconds ago (None: no such reading yet)."""
        while len(self._readings) > 1 and self._readings[1][0] <= now - self.settle:
            self._readings.popleft()
        if self._readings and self._readings[0][0] <= now - self.settle:
            return self._readings[0][1]
        return None

    # -- judging ---------------------------------------------------------------------------------------------------

    def judgeable(self, record: UserRecord, checkpoint: Checkpoint, now: float) -> bool:
        passed = checkpoint.position in EVIDENT and not checkpoint.pending(
            record.sequence_number, record.sub_sequence_number
        )
        return passed or now - record.arrival >= self.grace

    def due(self, now: float) -> Due | None:
        """The held records that can be judged now, oldest first (at most a batch); None if none can."""
        if now < self._retry_at:
            return None
        checkpoint = self.settled(now)
        if checkpoint is None:
            return None
        records: list[UserRecord] = []
        for record in self.held:
            if len(records) >= self.batch_size or not self.judgeable(record, checkpoint, now):
                break
            records.append(record)
        return Due(records, checkpoint) if records else None

    def judge(self, due: Due, answer: Answer) -> list[Outcome]:
        """The statuses of ``due``'s records up to (not including) the first the rules call ``in_flight``; that one
        and the rest stay held and are asked about again after ``retry`` seconds. Nothing is removed here: the
        caller reports the outcomes, then :meth:`commit`\\ s them."""
        outcomes = []
        for record in due.records:
            key = key_of(record)
            count = answer.count(key)
            status, reason = judge(
                arrival=record.arrival,
                sequence_number=record.sequence_number,
                sub_sequence_number=record.sub_sequence_number,
                count=count,
                checkpoint=due.checkpoint,
                ledger=answer.view,
                now=answer.received_at,
                grace=0.0,  # due: its checkpoint passed it, or it is older than the grace period already
                readable=key not in answer.unreadable,
            )
            if status is Status.IN_FLIGHT:
                self._retry_at = answer.received_at + self.retry
                break
            outcomes.append(Outcome(record, status, reason, count))
        return outcomes

    def commit(self, outcomes: Sequence[Outcome]) -> None:
        """The outcomes were reported: the records leave the hold, and the watcher may checkpoint past them."""
        for outcome in outcomes:
            if not self.held or key_of(self.held[0]) != key_of(outcome.record):
                raise InternalError(f"{self.shard_id}: committed an outcome that is not the oldest held record")
            self.held.popleft()
            self.counts[outcome.status.value] += 1
            self.last_judged = (outcome.record.sequence_number, outcome.record.sub_sequence_number)

    # -- figures ---------------------------------------------------------------------------------------------------

    def lag(self, now: float, millis_behind: int | None = None) -> float:
        """How far the verdict trails the stream, in seconds: the age of the oldest record not judged yet, or how far
        the watcher's reads are behind the shard's tip, whichever is more."""
        held_for = now - self.held[0].arrival if self.held else 0.0
        return max(0.0, held_for, (millis_behind or 0) / 1000)
