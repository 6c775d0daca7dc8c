"""What a record's evidence says about it, and what the whole check concludes. Pure: no I/O, no clocks.

A record is ``processed`` when the ledger holds it once and ``duplicate`` when more than one processed event named
it. A record the ledger does not hold is, in this order:

- ``unknown`` when a processed event in the recorder's dead-letter queue names it (``--dead-letter-queue``): it was
  processed, but not recorded; redriving the queue (``streamwreck redrive-dlq``) records it;
- ``in_flight`` when the consumer has not got to it yet: it lies beyond the checkpoint of the consumer's lease on
  its shard (``--kcl-app``), or its shard has no lease yet while a parent's or sibling's lease shows the consumer
  working towards it, or it arrived less than the grace period ago;
- ``unknown`` when the evidence cannot tell: the consumer's lease is still at LATEST (records written before the
  consumer started are never processed, later ones are not checkpointed yet: the two look alike), or its shard has
  no lease and no relative's lease vouches for the consumer; or the ledger cannot vouch for its absence: the ledger
  evicted entries or was flushed, or a memcached node started after the record arrived (its entry may have been
  written before the restart), or the record is older than the ledger's TTL (its entry may have expired), or a node
  did not answer, or the ledger's data for the record could not be read; or the dead-letter queue could not be read
  in full (its event may be there);
- ``lost`` otherwise: the ledger was intact for the whole life of the record and has no entry for it. When the
  record came in a KPL aggregate that also holds a user record hashing outside the shard, the reason says that the
  KCL drops such an aggregate whole.

Never ``lost`` for want of evidence: every doubt resolves to ``in_flight`` or ``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from streamwreck.core.answers import LedgerStatus

# memcached reports its start in whole seconds: a record that arrived within a second after the reported start may
# still predate the real one.
START_ROUNDING_SECONDS = 1.0


class Status(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    IN_FLIGHT = "in_flight"
    UNKNOWN = "unknown"
    LOST = "lost"


STATUSES = tuple(Status)


class Verdict(StrEnum):
    CLEAN = "clean"
    GAPS = "gaps"
    UNRELIABLE = "unreliable"


class ExitCode:
    CLEAN = 0
    FAILED = 1  # lost records (and duplicates with --fail-on-duplicates)
    ERROR = 2  # usage or infrastructure: one line on stderr
    UNRELIABLE = 3


@dataclass(frozen=True)
class LedgerView:
    """What the reconcile API said about the ledger when it answered (its ``ledger`` object)."""

    healthy: bool
    evictions: int
    started_at: float | None  # Unix seconds; None when no node reported a start
    ttl_seconds: int
    flushes: int | None = 0  # flush_all commands since the start; None when the API did not say (an older API)

    @classmethod
    def from_status(cls, ledger: LedgerStatus) -> LedgerView:
        """The API's ``ledger`` object (validated with :data:`streamwreck.core.answers.ANSWER`)."""
        started = ledger["started_at"]
        return cls(
            healthy=ledger["healthy"],
            evictions=ledger["evictions"],
            started_at=started.timestamp() if started is not None else None,
            ttl_seconds=ledger["ttl_seconds"],
            flushes=ledger.get("flushes"),
        )


class LeasePosition(StrEnum):
    """Where a consumer's lease on a shard stands."""

    SEQUENCE = "sequence"  # checkpointed at a record
    SHARD_END = "shard_end"  # the shard is finished
    TRIM_HORIZON = "trim_horizon"  # leased, nothing checkpointed yet: it starts at the oldest record
    AT_TIMESTAMP = "at_timestamp"  # leased, nothing checkpointed yet: it starts at a time we cannot see
    LATEST = "latest"  # leased at the tip, nothing checkpointed yet: which records came before it cannot be told
    AWAITING_LEASE = "awaiting_lease"  # no lease yet, but a parent's or sibling's lease shows the consumer coming
    NOT_LEASED = "not_leased"  # no lease, and no relative's lease: nothing says the consumer will ever come here
    DONE = "done"  # no lease, but a descendant has one: finished and cleaned up


@dataclass(frozen=True)
class Checkpoint:
    position: LeasePosition
    sequence_number: str | None = None
    sub_sequence_number: int = 0

    def pending(self, sequence_number: str, sub_sequence_number: int) -> bool:
        """True when the consumer will still come to this record: it lies beyond the checkpoint."""
        if self.position is LeasePosition.SEQUENCE:
            assert self.sequence_number is not None
            return (int(sequence_number), sub_sequence_number) > (int(self.sequence_number), self.sub_sequence_number)
        return self.position in (LeasePosition.TRIM_HORIZON, LeasePosition.AT_TIMESTAMP, LeasePosition.AWAITING_LEASE)

    def describe(self) -> str:
        if self.position is LeasePosition.SEQUENCE:
            return f"{self.sequence_number}/{self.sub_sequence_number}"
        return self.position.value


DEAD_LETTERED = "processed, but its event is in the dead-letter queue (not recorded)"
STRAY_AGGREGATE = (
    "not in the ledger: its KPL aggregate holds a user record whose hash key lies outside the shard, and the KCL "
    "drops every user record of such an aggregate"
)


class Judgement(NamedTuple):
    status: Status
    reason: str


def judge(
    *,
    arrival: float,
    sequence_number: str,
    sub_sequence_number: int,
    count: int,
    checkpoint: Checkpoint | None,
    ledger: LedgerView,
    now: float,
    grace: float,
    readable: bool = True,
    dead_lettered: bool = False,
    dead_letters_unread: str = "",
    stray_aggregate: bool = False,
) -> Judgement:
    """The status of one record. ``count`` is how many processed events the ledger holds for it (0: none);
    ``readable`` is False when the ledger's data for it could not be read (then the count says nothing);
    ``dead_lettered`` when a processed event in the recorder's dead-letter queue names it; ``dead_letters_unread``
    says why the dead-letter queue was not read in full (empty: it was, or it was not asked); ``stray_aggregate``
    when its KPL aggregate holds a user record that hashes outside the shard it was read from."""
    if count > 1:
        return Judgement(Status.DUPLICATE, f"processed {count} times")
    if count == 1:
        return Judgement(Status.PROCESSED, "")
    if dead_lettered:
        return Judgement(Status.UNKNOWN, DEAD_LETTERED)
    if checkpoint is not None and checkpoint.pending(sequence_number, sub_sequence_number):
        if checkpoint.position is LeasePosition.SEQUENCE:
            return Judgement(Status.IN_FLIGHT, "beyond the consumer's checkpoint")
        if checkpoint.position is LeasePosition.AWAITING_LEASE:
            return Judgement(
                Status.IN_FLIGHT,
                "no lease on its shard yet, but a parent's or sibling's lease shows the consumer coming",
            )
        return Judgement(Status.IN_FLIGHT, f"consumer's lease is at {checkpoint.position.value}")
    age = now - arrival
    if age < grace:
        return Judgement(Status.IN_FLIGHT, f"arrived {max(age, 0):.0f}s ago, within the grace period")
    if checkpoint is not None and checkpoint.position is LeasePosition.LATEST:
        return Judgement(
            Status.UNKNOWN,
            "consumer's lease is still at LATEST: written before the consumer started (never processed) or not "
            "checkpointed yet, which cannot be told apart",
        )
    if checkpoint is not None and checkpoint.position is LeasePosition.NOT_LEASED:
        return Judgement(Status.UNKNOWN, "its shard has no lease, nor has any parent or sibling of it")
    if not readable:
        return Judgement(Status.UNKNOWN, "its ledger data could not be read (corrupt or cut short)")
    if not ledger.healthy:
        return Judgement(Status.UNKNOWN, "a ledger node did not answer")
    if ledger.evictions > 0:
        return Judgement(Status.UNKNOWN, f"the ledger evicted {ledger.evictions} entries")
    if ledger.flushes is None:
        return Judgement(Status.UNKNOWN, "the ledger did not say whether it was flushed")
    if ledger.flushes > 0:
        return Judgement(Status.UNKNOWN, f"the ledger was flushed ({ledger.flushes} flush_all since it started)")
    if ledger.started_at is None:
        return Judgement(Status.UNKNOWN, "the ledger did not say when it started")
    if arrival < ledger.started_at + START_ROUNDING_SECONDS:
        return Judgement(Status.UNKNOWN, "the ledger restarted after the record arrived")
    if age > ledger.ttl_seconds:
        return Judgement(Status.UNKNOWN, "older than the ledger's TTL")
    if dead_letters_unread:
        return Judgement(Status.UNKNOWN, f"the dead-letter queue was not read in full ({dead_letters_unread})")
    if stray_aggregate:
        return Judgement(Status.LOST, STRAY_AGGREGATE)
    return Judgement(Status.LOST, "not in the ledger")


def verdict(counts: Mapping[str, int]) -> Verdict:
    if counts.get(Status.LOST, 0):
        return Verdict.GAPS
    if counts.get(Status.UNKNOWN, 0):
        return Verdict.UNRELIABLE
    return Verdict.CLEAN


def exit_code(result: Verdict, counts: Mapping[str, int], fail_on_duplicates: bool) -> int:
    if result is Verdict.GAPS:
        return ExitCode.FAILED
    if fail_on_duplicates and counts.get(Status.DUPLICATE, 0):
        return ExitCode.FAILED
    if result is Verdict.UNRELIABLE:
        return ExitCode.UNRELIABLE
    return ExitCode.CLEAN


class Place(NamedTuple):
    """A record's place in its shard: the order it was read in, and its identity."""

    ordinal: int
    sequence_number: str
    sub_sequence_number: int
    arrival: float


class LostRange(NamedTuple):
    shard_id: str
    first: Place
    last: Place
    size: int


def lost_ranges(shard_id: str, lost: Iterable[Place]) -> list[LostRange]:
    """Consecutive lost records of one shard (no other record read between them) collapsed into ranges."""
    ranges: list[LostRange] = []
    for position in sorted(lost):
        if ranges and ranges[-1].last.ordinal + 1 == position.ordinal:
            previous = ranges[-1]
            ranges[-1] = LostRange(shard_id, previous.first, position, previous.size + 1)
        else:
            ranges.append(LostRange(shard_id, position, position, 1))
    return ranges
