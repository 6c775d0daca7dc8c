"""The check's report: one document (the JSON shape) built from the tally, rendered (:func:`render`) as a table, JSON
or CSV (:mod:`render_text`) or HTML (:mod:`render_html`).

The document (``--format json``)::

    {"stream", "verdict": "clean"|"gaps"|"unreliable", "exit_code",
     "counts": {"checked", "processed", "lost", "in_flight", "duplicate", "unknown"},
     "shards": [{"shard_id", "parent_shard_ids", "state", "ended", "checked", "processed", "lost", "in_flight",
                 "duplicate", "unknown", "checkpoint", "reads", "throttled", "iterator_renewals", ...}],
     "lost_ranges": [{"shard_id", "first", "last", "count", ...}],
     "records": [{"shard_id", "sequence_number", "sub_sequence_number", "status", "reason", "partition_key",
                  "approximate_arrival_timestamp", "count"}],
     "ledger": {"healthy", "evictions", "flushes", "started_at", "ttl_seconds"}, "options": {...}, ...}

``records`` lists every record that is not ``processed``. Pure: renderers return text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from streamwreck.checker.aggregation import hash_key
from streamwreck.checker.reading import ReadStats, Shard
from streamwreck.checker.tally import Finding, Tally
from streamwreck.checker.verdict import STATUSES, Checkpoint, Place, Status, exit_code, lost_ranges, verdict
from streamwreck.core.clock import iso

COUNT_ORDER = ("processed", "lost", "in_flight", "duplicate", "unknown")
MAX_POINTS = 120  # timeline buckets per shard


def _iso(seconds: float | None) -> str | None:
    return iso(seconds) if seconds is not None else None


def build(
    *,
    stream: str,
    shards: Sequence[Shard],
    stats: Mapping[str, ReadStats],
    tally: Tally,
    checkpoints: Mapping[str, Checkpoint] | None,
    options: Mapping[str, Any],
    started: float,
    finished: float,
    fail_on_duplicates: bool,
) -> dict[str, Any]:
    """The report document: everything every format shows."""
    totals = tally.totals()
    counts = {"checked": sum(totals.values()), **{status: totals.get(status, 0) for status in COUNT_ORDER}}
    result = verdict(totals)
    order = {shard.shard_id: index for index, shard in enumerate(shards)}
    by_id = {shard.shard_id: shard for shard in shards}
    findings = sorted(
        tally.findings.values(),
        key=lambda f: (order.get(f.record.shard_id, 0), int(f.record.sequence_number), f.record.sub_sequence_number),
    )
    lost_by_shard: dict[str, list[Place]] = {}
    for finding in findings:
        if finding.status is Status.LOST:
            lost_by_shard.setdefault(finding.record.shard_id, []).append(finding.place)
    timeline = _timeline(shards, tally, findings)
    return {
        "stream": stream,
        "verdict": result.value,
        "exit_code": exit_code(result, totals, fail_on_duplicates),
        "counts": counts,
        "shards": [_shard(shard, stats.get(shard.shard_id), tally, checkpoints, timeline) for shard in shards],
        "lost_ranges": [
            {
                "shard_id": r.shard_id,
                "first": {
                    "sequence_number": r.first.sequence_number,
                    "sub_sequence_number": r.first.sub_sequence_number,
                },
                "last": {"sequence_number": r.last.sequence_number, "sub_sequence_number": r.last.sub_sequence_number},
                "count": r.size,
                "first_arrival": _iso(r.first.arrival),
                "last_arrival": _iso(r.last.arrival),
            }
            for shard in shards
            for r in lost_ranges(shard.shard_id, lost_by_shard.get(shard.shard_id, []))
        ],
        "records": [_record(finding, by_id.get(finding.record.shard_id)) for finding in findings],
        "ledger": dict(tally.ledger or {}),
        "options": dict(options),
        "started_at": _iso(started),
        "finished_at": _iso(finished),
        "duration_seconds": round(finished - started, 3),
        "timeline_bucket_seconds": timeline["bucket"],
    }


def _shard(
    shard: Shard,
    stats: ReadStats | None,
    tally: Tally,
    checkpoints: Mapping[str, Checkpoint] | None,
    timeline: Mapping[str, Any],
) -> dict[str, Any]:
    counts: Mapping[str, int] = tally.counts.get(shard.shard_id, {})
    stats = stats or ReadStats()
    checkpoint = checkpoints.get(shard.shard_id) if checkpoints is not None else None
    return {
        "shard_id": shard.shard_id,
        "parent_shard_ids": list(shard.parent_ids),
        "state": "closed" if shard.closed else "open",
        "ended": stats.ended or "not_read",
        "checked": sum(counts.values()),
        **{status: counts.get(status, 0) for status in COUNT_ORDER},
        "kinesis_records": stats.kinesis_records,
        "first_sequence_number": stats.first_sequence_number,
        "last_sequence_number": stats.last_sequence_number,
        "checkpoint": checkpoint.describe() if checkpoint else None,
        "reads": stats.reads,
        "throttled": stats.throttled,
        "iterator_renewals": stats.renewals,
        "read_started_at": _iso(stats.started_at),
        "read_finished_at": _iso(stats.finished_at),
        "timeline": timeline["shards"].get(shard.shard_id, []),
    }


def _record(finding: Finding, shard: Shard | None) -> dict[str, Any]:
    record = finding.record
    reason = finding.reason
    if (
        finding.status is Status.LOST
        and shard is not None
        and not shard.owns(hash_key(record.partition_key, record.explicit_hash_key))
    ):
        reason = "not in the ledger; its hash key is outside the shard's range, so the KCL drops it"
    return {
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "sub_sequence_number": record.sub_sequence_number,
        "status": finding.status.value,
        "reason": reason,
        "partition_key": record.partition_key,
        "approximate_arrival_timestamp": _iso(record.arrival),
        "count": finding.count,
    }


def _timeline(shards: Sequence[Shard], tally: Tally, findings: Sequence[Finding]) -> dict[str, Any]:
    """Per shard, on one time axis: records written, processed (incl. duplicates) and lost per time bucket."""
    seconds = [second for shard in shards for second in tally.written.get(shard.shard_id, {})]
    if not seconds:
        return {"bucket": 1, "shards": {}}
    start, end = min(seconds), max(seconds)
    bucket = max(1, math.ceil((end - start + 1) / MAX_POINTS))
    size = (end - start) // bucket + 1
    lost: dict[str, list[int]] = {}
    for finding in findings:
        if finding.status is Status.LOST:
            series = lost.setdefault(finding.record.shard_id, [0] * size)
            series[(int(finding.record.arrival) - start) // bucket] += 1
    result: dict[str, list[list[Any]]] = {}
    for shard in shards:
        written, processed = [0] * size, [0] * size
        for second, count in tally.written.get(shard.shard_id, {}).items():
            written[(second - start) // bucket] += count
        for second, count in tally.processed.get(shard.shard_id, {}).items():
            processed[(second - start) // bucket] += count
        shard_lost = lost.get(shard.shard_id, [0] * size)
        result[shard.shard_id] = [
            [_iso(start + i * bucket), written[i], processed[i], shard_lost[i]] for i in range(size)
        ]
    return {"bucket": bucket, "shards": result}


def render(document: Mapping[str, Any], fmt: str, width: int | None = None, color: bool = False) -> str:
    """The document as ``fmt``: table (a terminal summary), json, csv (the records not processed) or html."""
    if fmt == "html":
        from streamwreck.checker.render_html import render_html

        return render_html(document)
    from streamwreck.checker import render_text

    if fmt == "json":
        return render_text.render_json(document)
    if fmt == "csv":
        return render_text.render_csv(document)
    return render_text.render_table(document, width=width, color=color)


def headline(document: Mapping[str, Any]) -> str:
    counts = document["counts"]
    parts = ", ".join(f"{counts[status.value]:,} {status.value}" for status in STATUSES)
    return (
        f"{document['stream']}: {document['verdict'].upper()} (exit {document['exit_code']}): "
        f"{counts['checked']:,} records checked: {parts}"
    )
