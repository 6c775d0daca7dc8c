"""The running totals of a check: counts per shard and status, a per-second timeline, and the records that were not
processed (the only ones kept; a lost record keeps its payload for --export and --redrive-to). Thread-safe, no I/O.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from streamwreck.checker.reading import UserRecord
from streamwreck.checker.verdict import Judgement, Place, Status

RecordKey = tuple[str, str, int]  # shard id, sequence number, sub-sequence number


def key_of(record: UserRecord) -> RecordKey:
    return (record.shard_id, record.sequence_number, record.sub_sequence_number)


@dataclass
class Finding:
    """A record that was not simply processed."""

    record: UserRecord  # data kept only while the record is lost
    status: Status
    reason: str
    count: int  # processed events the ledger holds for it

    @property
    def place(self) -> Place:
        r = self.record
        return Place(r.ordinal, r.sequence_number, r.sub_sequence_number, r.arrival)


class Tally:
    def __init__(self, shard_ids: Iterable[str]) -> None:
        self._lock = threading.Lock()
        self.counts: dict[str, Counter[str]] = {shard_id: Counter() for shard_id in shard_ids}
        self.written: dict[str, Counter[int]] = defaultdict(Counter)  # shard -> Unix second -> records
        self.processed: dict[str, Counter[int]] = defaultdict(Counter)  # processed or duplicate
        self.findings: dict[RecordKey, Finding] = {}
        self.ledger: dict[str, Any] | None = None  # the latest answer's ledger object

    def add_processed(self, records: Sequence[UserRecord], ledger: dict[str, Any]) -> None:
        """A batch the ledger holds entirely, once each: the common case, kept cheap."""
        per_shard: Counter[str] = Counter()
        with self._lock:
            for record in records:
                second = int(record.arrival)
                shard_id = record.shard_id
                per_shard[shard_id] += 1
                self.written[shard_id][second] += 1
                self.processed[shard_id][second] += 1
            for shard_id, count in per_shard.items():
                self.counts[shard_id][Status.PROCESSED] += count
            self.ledger = ledger

    def add(
        self,
        records: Sequence[UserRecord],
        judgements: Sequence[Judgement],
        counts: Sequence[int],
        ledger: dict[str, Any],
    ) -> None:
        with self._lock:
            for record, (status, reason), count in zip(records, judgements, counts, strict=True):
                second = int(record.arrival)
                self.written[record.shard_id][second] += 1
                self.counts[record.shard_id][status] += 1
                if status in (Status.PROCESSED, Status.DUPLICATE):
                    self.processed[record.shard_id][second] += 1
                if status is not Status.PROCESSED:
                    kept = record if status is Status.LOST else record._replace(data=b"")
                    self.findings[key_of(record)] = Finding(kept, status, reason, count)
            self.ledger = ledger

    def revise(self, key: RecordKey, judgement: Judgement, count: int, ledger: dict[str, Any]) -> None:
        """A second look at a finding (the final re-check of lost records) replaces the first."""
        with self._lock:
            finding = self.findings[key]
            record = finding.record
            shard_counts = self.counts[record.shard_id]
            shard_counts[finding.status] -= 1
            shard_counts[judgement.status] += 1
            was_processed = finding.status in (Status.PROCESSED, Status.DUPLICATE)
            is_processed = judgement.status in (Status.PROCESSED, Status.DUPLICATE)
            if is_processed and not was_processed:
                self.processed[record.shard_id][int(record.arrival)] += 1
            if judgement.status is Status.PROCESSED:
                del self.findings[key]
            else:
                kept = record if judgement.status is Status.LOST else record._replace(data=b"")
                self.findings[key] = Finding(kept, judgement.status, judgement.reason, count)
            self.ledger = ledger

    def lost(self) -> list[Finding]:
        with self._lock:
            return [finding for finding in self.findings.values() if finding.status is Status.LOST]

    def totals(self) -> Counter[str]:
        with self._lock:
            total: Counter[str] = Counter()
            for shard_counts in self.counts.values():
                total.update(shard_counts)
            return total
