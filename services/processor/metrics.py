"""The processor's Prometheus metrics: each record processor (one process per shard lease) records its shard's figures
in prometheus_client's multiprocess mode, and the launcher (``streamwreck processor``) serves them merged on
``STREAMWRECK_PROCESSOR_METRICS_PORT`` (:mod:`streamwreck.core.multiprocess_metrics`: counters of exited processes
keep counting, the gauges are those of the live processes only). Without the port the record processors record
nothing (:class:`NoMetrics`) and never import prometheus_client.
"""

from __future__ import annotations

from typing import Any, Protocol

PREFIX = "streamwreck_processor_"
RECORDS = PREFIX + "records"  # served with _total, as every counter
RECORDS_PUBLISHED = PREFIX + "records_published"
EVENTS_PUBLISHED = PREFIX + "events_published"
PUBLISH_REQUESTS = PREFIX + "publish_requests"
PUBLISH_REQUESTS_FAILED = PREFIX + "publish_requests_failed"
PUBLISH_ERRORS = PREFIX + "publish_errors"
CHECKPOINTS = PREFIX + "checkpoints"
CHECKPOINT_LAG = PREFIX + "checkpoint_lag_seconds"
BEHIND_LATEST = PREFIX + "behind_latest_seconds"
OUTCOMES = ("processed", "skipped", "failed")

HELP = {
    RECORDS: "User records handled by the processing function, by outcome: processed (reported as processed), "
    "skipped (the function returned False: the demo rule STREAMWRECK_SKIP_EVERY or your own), failed (it raised). "
    "Counted as they are handled: a record delivered again after a restart counts again.",
    RECORDS_PUBLISHED: "Processed records named by events published to SNS.",
    EVENTS_PUBLISHED: "Processed events (SNS messages) published.",
    PUBLISH_REQUESTS: "SNS PublishBatch requests sent, retries included.",
    PUBLISH_REQUESTS_FAILED: "PublishBatch requests that failed (an error, or entries SNS did not accept); the "
    "publisher retries them with backoff.",
    PUBLISH_ERRORS: "Publishes given up after the publisher's retries: the record processor then exits non-zero and "
    "a restart processes the records again from the last checkpoint (after a lost lease, the new owner does).",
    CHECKPOINTS: "Checkpoints the KCL stored (the end of the shard included).",
    CHECKPOINT_LAG: "Age in seconds of the oldest record this record processor has read and not yet checkpointed; "
    "0 when every record read is checkpointed. Updated at every delivery (the KCL polls about once a second, records "
    "or not) and at every checkpoint.",
    BEHIND_LATEST: "The KCL's millisBehindLatest of the shard's last delivery, in seconds: how far the GetRecords "
    "response it came from was behind the newest record of the shard (0: read to the tip). It measures reading, "
    "not checkpointing: see streamwreck_processor_checkpoint_lag_seconds.",
}


class Metrics(Protocol):
    """What the record processor reports; every count is for the shard named by :meth:`start`."""

    def start(self, shard_id: str) -> None: ...
    def handled(self, processed: int, skipped: int, failed: int) -> None: ...
    def published(self, records: int, events: int | None) -> None: ...
    def publish_request(self, failed: bool) -> None: ...
    def publish_error(self) -> None: ...
    def checkpointed(self) -> None: ...
    def checkpoint_lag(self, seconds: float) -> None: ...
    def behind_latest(self, millis: int | None) -> None: ...


class NoMetrics:
    """The record processor's metrics when no port serves them: nothing is recorded."""

    def start(self, shard_id: str) -> None:
        pass

    def handled(self, processed: int, skipped: int, failed: int) -> None:
        pass

    def published(self, records: int, events: int | None) -> None:
        pass

    def publish_request(self, failed: bool) -> None:
        pass

    def publish_error(self) -> None:
        pass

    def checkpointed(self) -> None:
        pass

    def checkpoint_lag(self, seconds: float) -> None:
        pass

    def behind_latest(self, millis: int | None) -> None:
        pass


class ShardMetrics:
    """The Prometheus metrics of one record processor. In the processes the daemon starts, PROMETHEUS_MULTIPROC_DIR
    is set in the environment before prometheus_client is first imported (the launcher's plan sees to it), so the
    values go to the shared folder; ``registry``: where the metrics are also registered (a fresh one if omitted)."""

    def __init__(self, stream: str, registry: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.stream = stream
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = ("stream", "shard_id")

        def counter(name: str, *extra: str) -> Any:
            return Counter(name, HELP[name], (*labels, *extra), registry=self.registry)

        def gauge(name: str) -> Any:
            # live: exited record processors' values are dropped; max: of two holding a shard while its lease moves
            return Gauge(name, HELP[name], labels, registry=self.registry, multiprocess_mode="livemax")

        self._records = counter(RECORDS, "outcome")
        self._records_published = counter(RECORDS_PUBLISHED)
        self._events_published = counter(EVENTS_PUBLISHED)
        self._requests = counter(PUBLISH_REQUESTS)
        self._requests_failed = counter(PUBLISH_REQUESTS_FAILED)
        self._errors = counter(PUBLISH_ERRORS)
        self._checkpoints = counter(CHECKPOINTS)
        self._lag = gauge(CHECKPOINT_LAG)
        self._behind = gauge(BEHIND_LATEST)
        self._shard = "?"

    def start(self, shard_id: str) -> None:
        """Name the shard, and show its series from the start (counters at 0, nothing pending)."""
        self._shard = shard_id
        for outcome in OUTCOMES:
            self._records.labels(self.stream, shard_id, outcome)
        for metric in (
            self._records_published,
            self._events_published,
            self._requests,
            self._requests_failed,
            self._errors,
            self._checkpoints,
        ):
            metric.labels(self.stream, shard_id)
        self.checkpoint_lag(0.0)

    def handled(self, processed: int, skipped: int, failed: int) -> None:
        for outcome, count in zip(OUTCOMES, (processed, skipped, failed), strict=True):
            if count:
                self._records.labels(self.stream, self._shard, outcome).inc(count)

    def published(self, records: int, events: int | None) -> None:
        self._records_published.labels(self.stream, self._shard).inc(records)
        if events:
            self._events_published.labels(self.stream, self._shard).inc(events)

    def publish_request(self, failed: bool) -> None:
        self._requests.labels(self.stream, self._shard).inc()
        if failed:
            self._requests_failed.labels(self.stream, self._shard).inc()

    def publish_error(self) -> None:
        self._errors.labels(self.stream, self._shard).inc()

    def checkpointed(self) -> None:
        self._checkpoints.labels(self.stream, self._shard).inc()

    def checkpoint_lag(self, seconds: float) -> None:
        self._lag.labels(self.stream, self._shard).set(max(0.0, seconds))

    def behind_latest(self, millis: int | None) -> None:
        if millis is not None:
            self._behind.labels(self.stream, self._shard).set(millis / 1000)


class CountedSns:
    """The SNS client the publisher is given: it counts each PublishBatch request, and those that failed (raised,
    or came back with entries SNS did not accept), then answers as the client did. The publisher retries inside one
    ``publish`` call, and gives up with an exception: only here is every attempt seen."""

    def __init__(self, sns: Any, metrics: Metrics) -> None:
        self._sns = sns
        self._metrics = metrics

    def publish_batch(self, **request: Any) -> Any:
        try:
            response = self._sns.publish_batch(**request)
        except Exception:
            self._metrics.publish_request(failed=True)
            raise
        self._metrics.publish_request(failed=bool(response.get("Failed")))
        return response
