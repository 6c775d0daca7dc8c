"""The watcher's figures: Prometheus metrics on ``/metrics``, ``/healthz``, the terminal table, and CloudWatch EMF.

**Aggregation.** The MultiLangDaemon runs one record processor *process* per shard lease: they record their figures
in prometheus_client's multiprocess mode and the launcher serves the merge (:mod:`streamwreck.core.multiprocess_metrics`
says how and why, for the processor's metrics too). The per-shard gauges (held records, lag) are live gauges: a shard
that moved to another process or watcher is not counted twice. The terminal table and ``/healthz`` read the same merge.

**CloudWatch: Embedded Metric Format**, not PutMetricData. Each record processor writes, every ``emf_seconds``, one
JSON line in EMF on stderr; the daemon relays it to the launcher's stderr, the ECS ``awslogs`` driver ships it to
CloudWatch Logs, and CloudWatch extracts the metrics from it. No extra API call on the record path, no
``cloudwatch:PutMetricData`` permission, no client, retries or batching of ours; the figures and the logs that
explain them are in one place. Dimensions: ``Stream`` (what the alarms watch: lost records > 0, the lag) and
``Stream, ShardId``.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamwreck.core import multiprocess_metrics
from streamwreck.core.clock import iso
from streamwreck.watcher.shard import FINAL, ShardWatch

RECORDS = "streamwreck_watch_records"  # the pinned counter: streamwreck_watch_records_total{status=...}
READ = "streamwreck_watch_records_read"
HELD = "streamwreck_watch_held_records"
LAG = "streamwreck_watch_lag_seconds"
PROGRESS = "streamwreck_watch_last_progress_timestamp_seconds"
STATUSES = tuple(status.value for status in FINAL)  # processed, duplicate, lost, unknown
EMF_METRICS = {"judged": "RecordsJudged", **{s: f"Records{s.capitalize()}" for s in STATUSES}}


class ShardMetrics:
    """The Prometheus metrics of one record processor (multiprocess mode: PROMETHEUS_MULTIPROC_DIR must be set in
    its environment before prometheus_client is first imported, which the launcher's plan sees to)."""

    def __init__(self, stream: str) -> None:
        from prometheus_client import Counter, Gauge

        self.stream = stream
        labels = ("stream", "shard_id")
        self.records = Counter(f"{RECORDS}", "Records judged, by status", (*labels, "status"))
        self.read = Counter(READ, "Records read from the stream", labels)
        self.held = Gauge(HELD, "Records read and not judged yet", labels, multiprocess_mode="livesum")
        self.lag = Gauge(
            LAG, "Age of the oldest record not judged, or the reads' lag", labels, multiprocess_mode="livemax"
        )
        self.progress = Gauge(PROGRESS, "When a record processor last made progress", multiprocess_mode="max")
        self._reported: dict[str, int] = defaultdict(int)

    def update(self, watch: ShardWatch, now: float, millis_behind: int | None, progressed: bool) -> None:
        """Bring the metrics up to the shard's counts (counters by their increase since the last update)."""
        labels = (self.stream, watch.shard_id)
        for name in ("read", *STATUSES):
            increase = watch.counts[name] - self._reported[name]
            if increase > 0:
                if name == "read":
                    self.read.labels(*labels).inc(increase)
                else:
                    self.records.labels(*labels, name).inc(increase)
                self._reported[name] = watch.counts[name]
        self.held.labels(*labels).set(len(watch.held))
        self.lag.labels(*labels).set(watch.lag(now, millis_behind))
        if progressed:
            self.progress.set(now)


class Emf:
    """CloudWatch Embedded Metric Format lines for one shard: the counts since the last line, held and lag."""

    def __init__(self, namespace: str, stream: str, every: float, write: Callable[[str], Any]) -> None:
        self.namespace = namespace
        self.stream = stream
        self.every = every
        self._write = write
        self._last: dict[str, int] = defaultdict(int)
        self._at: float | None = None

    def maybe_emit(self, watch: ShardWatch, now: float, millis_behind: int | None, force: bool = False) -> None:
        if self.every <= 0:
            return
        if self._at is None:
            self._at = now
        if not force and now - self._at < self.every:
            return
        self._at = now
        self._write(json.dumps(self.document(watch, now, millis_behind)) + "\n")

    def document(self, watch: ShardWatch, now: float, millis_behind: int | None) -> dict[str, Any]:
        counts = {name: watch.counts[name] for name in STATUSES}
        counts["judged"] = sum(counts.values())
        values = {EMF_METRICS[name]: value - self._last[name] for name, value in counts.items()}
        self._last.update(counts)
        metrics = [{"Name": name, "Unit": "Count"} for name in values]
        metrics += [{"Name": "RecordsHeld", "Unit": "Count"}, {"Name": "LagSeconds", "Unit": "Seconds"}]
        return {
            "_aws": {
                "Timestamp": int(now * 1000),
                "CloudWatchMetrics": [
                    {"Namespace": self.namespace, "Dimensions": [["Stream"], ["Stream", "ShardId"]], "Metrics": metrics}
                ],
            },
            "event": "watch_metrics",
            "Stream": self.stream,
            "ShardId": watch.shard_id,
            **values,
            "RecordsHeld": len(watch.held),
            "LagSeconds": round(watch.lag(now, millis_behind), 3),
        }


# -- the launcher's side: merge, serve, summarize --------------------------------------------------------------------


@dataclass
class Row:
    """One shard in the terminal table."""

    counts: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0.0))
    read: float = 0.0
    held: float = 0.0
    lag: float = 0.0

    @property
    def judged(self) -> float:
        return sum(self.counts.values())


@dataclass
class Snapshot:
    shards: dict[str, Row]
    last_progress: float | None

    def total(self) -> Row:
        row = Row()
        for shard in self.shards.values():
            for status, value in shard.counts.items():
                row.counts[status] += value
            row.read += shard.read
            row.held += shard.held
            row.lag = max(row.lag, shard.lag)
        return row


class Merged(multiprocess_metrics.Merged):
    """The record processors' metrics, merged from ``folder``: the registry ``/metrics`` serves, and a snapshot."""

    def snapshot(self) -> Snapshot:
        shards: dict[str, Row] = defaultdict(Row)
        last: float | None = None
        for metric in self.collect():
            for sample in metric.samples:
                shard = sample.labels.get("shard_id")
                if sample.name == PROGRESS:
                    last = max(last or 0.0, sample.value) or None
                elif shard is None:
                    continue
                elif sample.name == f"{RECORDS}_total" and sample.labels.get("status") in STATUSES:
                    shards[shard].counts[sample.labels["status"]] += sample.value
                elif sample.name == f"{READ}_total":
                    shards[shard].read += sample.value
                elif sample.name == HELD:
                    shards[shard].held += sample.value
                elif sample.name == LAG:
                    shards[shard].lag = max(shards[shard].lag, sample.value)
        return Snapshot(dict(sorted(shards.items())), last)


def health(snapshot: Snapshot, now: float, started: float, stale_after: float) -> tuple[bool, dict[str, Any]]:
    """Healthy unless no record processor made progress for ``stale_after`` seconds (or, before the first lease,
    for that long since the start)."""
    last = snapshot.last_progress
    since = now - (last if last is not None else started)
    status = "ok" if last is not None and since < stale_after else "starting" if since < stale_after else "stale"
    body = {
        "status": status,
        "last_progress": iso(last) if last is not None else None,
        "seconds_since_progress": round(since, 1),
        "stale_after_seconds": stale_after,
        "shards": len(snapshot.shards),
    }
    return status != "stale", body


class MetricsServer(multiprocess_metrics.MetricsServer):
    """``GET /metrics`` (Prometheus text format) and ``GET /healthz`` (200, or 503 when stale) in a thread."""

    def __init__(self, host: str, port: int, merged: Merged, stale_after: float) -> None:
        self.watch_merged = merged
        self.stale_after = stale_after
        self.started = time.time()
        super().__init__(host, port, merged, {"/healthz": self._health}, name="watch-metrics")

    def _health(self) -> multiprocess_metrics.Answer:
        ok, body = health(self.watch_merged.snapshot(), time.time(), self.started, self.stale_after)
        return 200 if ok else 503, "application/json", json.dumps(body).encode()
