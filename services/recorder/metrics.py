"""The recorder's Prometheus metrics, served on ``STREAMWRECK_RECORDER_METRICS_PORT`` (``/metrics``) when it is set."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, start_http_server
from prometheus_client.process_collector import ProcessCollector


class RecorderMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.received = Counter(
            "streamwreck_recorder_messages_received", "SQS messages received.", registry=self.registry
        )
        self.recorded = Counter(
            "streamwreck_recorder_messages_recorded",
            "Messages whose entries were stored and that were deleted from the queue.",
            registry=self.registry,
        )
        self.rejected = Counter(
            "streamwreck_recorder_messages_rejected",
            "Receives of messages refused and left for the dead-letter queue, by reason (malformed, wrong_topic, "
            "not_recorded); a message counts at each receive.",
            ["reason"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "streamwreck_recorder_messages_dead_lettered",
            "Refused messages on their last receive before the queue's redrive policy moves them to the dead-letter "
            "queue (counted when the policy's maxReceiveCount is known).",
            registry=self.registry,
        )
        self.records = Counter(
            "streamwreck_recorder_records_stored", "Records named by stored events.", registry=self.registry
        )
        self.ledger_errors = Counter(
            "streamwreck_recorder_ledger_errors",
            "Ledger writes that failed because memcached was unavailable (each retried).",
            registry=self.registry,
        )
        self.sqs_errors = Counter(
            "streamwreck_recorder_sqs_errors", "SQS calls that failed (receive, retried).", registry=self.registry
        )

    def serve(self, port: int, host: str) -> Callable[[], None]:
        """Serve ``/metrics`` on a daemon thread; returns what stops it (and closes its socket)."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop
