"""What the processor does with the records of one shard. Pure: no I/O; ``record_processor.py`` does the talking.

- Every record goes through the processing function, one by one: a skipped or failing record never drops the rest
  of the batch (the original Lambda returned early on a skipped record and silently lost everything after it).
- What was processed is collected across batches and published in few, large SNS requests (:class:`ShardProgress`
  says when: a full request's worth, or half a thousand records once the shard is read to its tip, or after 2 s);
  the checkpoint then moves to the last record handled. Nothing is checkpointed before its batch's
  events are published, so a crash or an outage makes the KCL deliver the unpublished records again.

The processing function takes a :class:`Record` and returns ``False`` to skip it; any other return value (``None``
included) means processed. An exception marks that one record as failed (logged, not reported) and processing goes
on, except :class:`~streamwreck.core.errors.TransientError`: that stops the shard at the record, so that it is retried
from the last checkpoint.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamwreck.core.errors import ConfigError, TransientError
from streamwreck.core.events import Pair

# One PublishBatch request carries about 4,000 records of 56-digit sequence numbers (10 events of ~25 KB). Publish
# when a request's worth is pending; at the tip of the shard (nothing more to read right now) as soon as 500 are, which
# keeps it at most 2 requests per 1,000 records; and when the oldest pending record has waited FLUSH_SECONDS.
FLUSH_RECORDS = 4_000
TIP_FLUSH_RECORDS = 500
FLUSH_SECONDS = 2.0
MAX_FAILURES_LOGGED = 5


@dataclass(frozen=True, slots=True)
class Record:
    """One user record as the processing function sees it (already de-aggregated by the KCL)."""

    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    data: bytes
    approximate_arrival_ms: int | None = None

    @property
    def position(self) -> Pair:
        return (self.sequence_number, self.sub_sequence_number)


ProcessFunction = Callable[[Record], Any]


def skipped_by_demo_rule(sequence_number: str, skip_every: int) -> bool:
    """The demo rule: skip a record whose sequence number, as an integer, divides by ``skip_every`` (0: skip none).
    Every user record of one KPL-aggregated record shares its sequence number, so they are skipped together."""
    return skip_every > 0 and int(sequence_number) % skip_every == 0


def demo_rule(skip_every: int) -> ProcessFunction:
    """The shipped processing function: skip a record whose sequence number divides by ``skip_every`` (0: none)."""
    if skip_every < 0:
        raise ConfigError(f"skip_every must be 0 or more, got {skip_every}")

    def skip_divisible(record: Record) -> bool:
        return not skipped_by_demo_rule(record.sequence_number, skip_every)

    skip_divisible.__qualname__ = f"demo_rule(skip_every={skip_every})"
    return skip_divisible


def load_function(spec: str) -> ProcessFunction:
    """``package.module:function`` -> the function; ConfigError naming what is wrong."""
    module_name, sep, attribute = spec.strip().partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"process function must look like 'package.module:function', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {module_name!r} of process function {spec!r}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not callable(target):
        raise ConfigError(f"process function {spec!r} is not callable")
    function: ProcessFunction = target
    return function


def choose_function(process_function: str | None, skip_every: int) -> ProcessFunction:
    """The user's ``module:function`` if set, else the demo rule."""
    return load_function(process_function) if process_function else demo_rule(skip_every)


@dataclass
class BatchResult:
    """What became of each record of a batch, in order; ``halted`` is set when a transient failure stopped it."""

    processed: list[Pair] = field(default_factory=list)
    skipped: list[Pair] = field(default_factory=list)
    failed: list[tuple[Pair, str]] = field(default_factory=list)
    last: Pair | None = None  # the last record handled (processed, skipped or failed): the checkpoint may move here
    halted: tuple[Pair, TransientError] | None = None


def run_batch(records: Sequence[Record], function: ProcessFunction) -> BatchResult:
    """Pass every record through ``function``; only a TransientError stops the batch (at that record)."""
    result = BatchResult()
    for record in records:
        position = record.position
        try:
            outcome = function(record)
        except TransientError as exc:
            result.halted = (position, exc)
            return result
        except Exception as exc:
            result.failed.append((position, f"{type(exc).__name__}: {exc}"))
        else:
            (result.skipped if outcome is False else result.processed).append(position)
        result.last = position
    return result


@dataclass(frozen=True)
class Flush:
    """Publish ``records``; once that succeeded, checkpoint at ``checkpoint`` (None: nothing new to checkpoint)."""

    records: list[Pair]
    checkpoint: Pair | None
    skipped: int = 0
    failed: int = 0


class ShardProgress:
    """Processed-but-unpublished records of one shard and the furthest record handled; says when to flush.

    ``now`` is any monotonic clock in seconds, passed in so that the policy is testable.
    """

    def __init__(
        self,
        flush_records: int = FLUSH_RECORDS,
        flush_seconds: float = FLUSH_SECONDS,
        tip_flush_records: int = TIP_FLUSH_RECORDS,
    ) -> None:
        if flush_records < 1 or tip_flush_records < 1 or flush_seconds < 0:
            raise ValueError("flush_records and tip_flush_records must be at least 1, flush_seconds not negative")
        self.flush_records = flush_records
        self.flush_seconds = flush_seconds
        self.tip_flush_records = tip_flush_records
        self._pending: list[Pair] = []
        self._handled: Pair | None = None  # furthest record handled and not yet checkpointed
        self._since: float | None = None  # when the oldest unflushed work arrived
        self._skipped = 0
        self._failed = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def unflushed(self) -> bool:
        return self._handled is not None

    def add(self, result: BatchResult, now: float) -> None:
        if result.last is None:
            return
        self._pending.extend(result.processed)
        self._skipped += len(result.skipped)
        self._failed += len(result.failed)
        self._handled = result.last
        if self._since is None:
            self._since = now

    def due(self, now: float, at_tip: bool = False) -> bool:
        """Time to publish? ``at_tip``: the last read reached the end of the shard (millisBehindLatest 0)."""
        if self._handled is None:
            return False
        if len(self._pending) >= self.flush_records or (at_tip and len(self._pending) >= self.tip_flush_records):
            return True
        return self._since is not None and now - self._since >= self.flush_seconds

    def take(self) -> Flush:
        """Hand over everything unflushed; the caller publishes it, then checkpoints at ``Flush.checkpoint``."""
        flush = Flush(self._pending, self._handled, self._skipped, self._failed)
        self._pending, self._handled, self._since = [], None, None
        self._skipped = self._failed = 0
        return flush


def summarize_failures(failed: Sequence[tuple[Pair, str]], limit: int = MAX_FAILURES_LOGGED) -> list[dict[str, Any]]:
    """A bounded sample of failed records for one log line."""
    return [
        {"sequence_number": seq, "sub_sequence_number": sub, "error": error} for (seq, sub), error in failed[:limit]
    ]
