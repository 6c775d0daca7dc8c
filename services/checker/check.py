"""One run of the checker, from listing the shards to the report document.

The steps, each a method: the evidence (the consumer's lease table, then the shards), the read (every shard, its
pages reconciled with the API while reading), the judgement of each answered batch (:func:`verdict.judge`), a second
look at the lost once the recorder had ``settle`` seconds to catch up, and the document :mod:`report` builds.
What a person sees while it runs is the caller's :class:`Progress`; nothing here prints.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from streamwreck.checker import (
    DEFAULT_BATCH,
    DEFAULT_CONCURRENCY,
    DEFAULT_GRACE,
    DEFAULT_SETTLE,
    PIPELINE_DEPTH,
    leases,
    report,
)
from streamwreck.checker.dead_letters import DeadLetters, peek, sqs_client
from streamwreck.checker.reading import ReadStats, Shard, ShardReader, UserRecord, in_read_order, list_shards, read_all
from streamwreck.checker.reading import select as select_shards
from streamwreck.checker.reconciling import Answer, Pipeline, ReconcileApi
from streamwreck.checker.tally import Tally, key_of
from streamwreck.checker.verdict import Checkpoint, judge
from streamwreck.core.clock import iso
from streamwreck.core.errors import InternalError


class Progress(Protocol):
    """What the check tells whoever watches it (a terminal display, or nobody)."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def shard_started(self, shard_id: str) -> None: ...

    def shard_read(self, shard_id: str, records: int) -> None: ...

    def shard_finished(self, shard_id: str, ended: str) -> None: ...

    def reconciled(self, records: int) -> None: ...


class Silent:
    """Nobody watching."""

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def shard_started(self, shard_id: str) -> None:
        pass

    def shard_read(self, shard_id: str, records: int) -> None:
        pass

    def shard_finished(self, shard_id: str, ended: str) -> None:
        pass

    def reconciled(self, records: int) -> None:
        pass


# Given the shard ids about to be read and the stream, the progress display for this run.
ProgressFactory = Callable[[Sequence[str], str], Progress]


def silent(shard_ids: Sequence[str], stream: str) -> Progress:
    return Silent()


def settle_until(
    moment: float, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Wait until the clock reads ``moment`` (Unix seconds); at once if it has passed."""
    while (remaining := moment - clock()) > 0:
        sleep(min(remaining, 1.0))


@dataclass
class Evidence:
    """What the check knows before reading: the shards to read, and the consumer's checkpoints (``--kcl-app``)."""

    shards: list[Shard]
    checkpoints: dict[str, Checkpoint] | None
    taken_at: float  # the second look at the lost settles after this


@dataclass
class Check:
    """One run of the checker. ``run()`` returns the report document; ``lost_records()`` the lost, afterwards."""

    stream: str
    endpoint: str
    api_key: str | None = None
    shards: Sequence[str] = ()
    since: float | None = None
    until: float | None = None
    grace: float = DEFAULT_GRACE
    settle: float = DEFAULT_SETTLE
    kcl_app: str | None = None
    batch_size: int = DEFAULT_BATCH
    concurrency: int = DEFAULT_CONCURRENCY
    fail_on_duplicates: bool = False
    kinesis: Any = None
    progress: ProgressFactory = silent
    dead_letter_queue: str | None = None  # the recorder's: peeked (never consumed) before the second look
    sqs: Any = None
    tally: Tally | None = field(default=None, init=False)
    dead_letters: DeadLetters | None = field(default=None, init=False)
    _checkpoints: dict[str, Checkpoint] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kinesis is None:
            from streamwreck.core.aws import kinesis_client

            self.kinesis = kinesis_client(max_connections=self.concurrency + 4)

    def run(self) -> dict[str, Any]:
        started = time.time()
        until = self.until if self.until is not None else started
        evidence = self.evidence(started)
        self._checkpoints = evidence.checkpoints
        self.tally = Tally(shard.shard_id for shard in evidence.shards)
        stats: dict[str, ReadStats] = {}
        api = ReconcileApi(self.endpoint, self.api_key, max_connections=PIPELINE_DEPTH + 1)
        try:
            # Ask once before reading: an unreachable API or a down ledger fails now, not after reading everything.
            self.tally.ledger = api.reconcile(self.stream, []).ledger
            self._read(api, evidence.shards, until, stats)
            self._second_look(api, evidence.taken_at)
        finally:
            api.close()
        return report.build(
            stream=self.stream,
            shards=evidence.shards,
            stats=stats,
            tally=self.tally,
            checkpoints=evidence.checkpoints,
            options={
                "endpoint": self.endpoint,
                "shards": list(self.shards) or None,
                "since": iso(self.since) if self.since is not None else None,
                "until": iso(until),
                "grace_seconds": self.grace,
                "settle_seconds": self.settle,
                "kcl_app": self.kcl_app,
                "batch_size": self.batch_size,
                "concurrency": self.concurrency,
                "fail_on_duplicates": self.fail_on_duplicates,
                "dead_letter_queue": self.dead_letters.summary() if self.dead_letters is not None else None,
            },
            started=started,
            finished=time.time(),
            fail_on_duplicates=self.fail_on_duplicates,
        )

    def lost_records(self) -> list[UserRecord]:
        return [finding.record for finding in self.tally.lost()] if self.tally is not None else []

    def evidence(self, started: float) -> Evidence:
        """The shards to read in read order, and (``kcl_app``) the consumer's verified checkpoints."""
        items = None
        taken_at = started
        if self.kcl_app:
            from streamwreck.core.aws import dynamodb_client

            # The leases before the shards: every shard a lease names existed before the listing, so the listing
            # has it (a split between the two would otherwise look like a lease on a shard the stream lacks).
            items = leases.read_leases(dynamodb_client(), self.kcl_app)
            taken_at = time.time()
        every = in_read_order(list_shards(self.kinesis, self.stream))
        shards = select_shards(every, list(self.shards), self.stream)
        checkpoints = None
        if items is not None and self.kcl_app:
            multi = leases.multi_stream(items, self.stream)
            created = leases.creation_epoch(self.kinesis, self.stream) if multi else None
            checkpoints = leases.verified_checkpoints(items, self.stream, every, self.kcl_app, created)
        return Evidence(shards, checkpoints, taken_at)

    def _read(self, api: ReconcileApi, shards: list[Shard], until: float, stats: dict[str, ReadStats]) -> None:
        """Every shard read (parents before children, ``concurrency`` at once), its pages reconciled while reading."""
        stop = threading.Event()
        tally = self._tally()
        with self.progress([s.shard_id for s in shards], self.stream) as display:

            def on_answer(batch: Sequence[UserRecord], answer: Answer) -> None:
                self._judge(tally, batch, answer)
                display.reconciled(len(batch))

            pipeline = Pipeline(api, self.stream, self.batch_size, PIPELINE_DEPTH, on_answer, stop)

            def read_one(shard: Shard) -> None:
                reader = ShardReader(self.kinesis, self.stream, shard, since=self.since, until=until, stop=stop)
                stats[shard.shard_id] = reader.stats
                display.shard_started(shard.shard_id)
                for page in reader.pages():
                    pipeline.add(page)
                    display.shard_read(shard.shard_id, len(page))
                pipeline.flush()
                display.shard_finished(shard.shard_id, reader.stats.ended)

            try:
                read_all(shards, read_one, self.concurrency, stop)
                pipeline.finish()
            except BaseException:
                pipeline.abort()
                if pipeline.error is not None:
                    raise pipeline.error from None
                raise

    def _second_look(self, api: ReconcileApi, evidence_at: float) -> None:
        """Ask again about the lost once the recorder has had ``settle`` seconds since the evidence was taken to
        catch up with what the consumer had checkpointed (it checkpoints after publishing)."""
        lost = self.lost_records()
        if lost:
            settle_until(evidence_at + self.settle)
            if self.dead_letter_queue:
                self.dead_letters = self._peek_dead_letters(lost)
        for start in range(0, len(lost), self.batch_size):
            chunk = lost[start : start + self.batch_size]
            self._judge(self._tally(), chunk, api.reconcile(self.stream, chunk), revise=True)

    def _peek_dead_letters(self, lost: Sequence[UserRecord]) -> DeadLetters:
        """Which of the lost records a processed event in the recorder's dead-letter queue names."""
        assert self.dead_letter_queue is not None
        if self.sqs is None:
            self.sqs = sqs_client()
        return peek(self.sqs, self.dead_letter_queue, self.stream, {key_of(record) for record in lost})

    def _tally(self) -> Tally:
        if self.tally is None:
            raise InternalError("the check has no tally before run()")
        return self.tally

    def _judge(self, tally: Tally, batch: Sequence[UserRecord], answer: Answer, revise: bool = False) -> None:
        if not revise and not answer.unprocessed and not answer.duplicates and not answer.unreadable:
            tally.add_processed(batch, answer.ledger)
            return
        checkpoints = self._checkpoints
        dead = self.dead_letters
        found = dead.found if dead is not None else set()
        unread = dead.why_incomplete if dead is not None and not dead.complete else ""
        counts = [answer.count(key_of(record)) for record in batch]
        judgements = [
            judge(
                arrival=record.arrival,
                sequence_number=record.sequence_number,
                sub_sequence_number=record.sub_sequence_number,
                count=count,
                checkpoint=checkpoints.get(record.shard_id) if checkpoints is not None else None,
                ledger=answer.view,
                now=answer.received_at,
                grace=self.grace,
                readable=key_of(record) not in answer.unreadable,
                dead_lettered=key_of(record) in found,
                dead_letters_unread=unread,
                stray_aggregate=record.stray_aggregate,
            )
            for record, count in zip(batch, counts, strict=True)
        ]
        if revise:
            for record, judgement, count in zip(batch, judgements, counts, strict=True):
                tally.revise(key_of(record), judgement, count, answer.ledger)
        else:
            tally.add(batch, judgements, counts, answer.ledger)
