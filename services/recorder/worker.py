"""The recorder: SQS (subscribed to the processed-events topic) → ledger entries in memcached.

A message is deleted only after all of its entries are stored. A malformed message is logged and left alone: the
queue's redrive policy moves it to the dead-letter queue after a few receives. While memcached is down the recorder
keeps the messages in hand (extending their visibility, so that an outage does not use up their receive count and
dead-letter good events), receives nothing new, backs off, and carries on when memcached is back.

With ``topic_arn`` set (``STREAMWRECK_RECORDER_TOPIC_ARN``), a message from another topic is refused like a
malformed one (:mod:`topics` says what is checked). Refusals are counted (:mod:`metrics`), and so is the last
receive before the queue's redrive policy moves a refused message to the dead-letter queue, when the policy's
``maxReceiveCount`` is known.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from streamwreck.core import heartbeat
from streamwreck.core.errors import LedgerUnavailableError, RejectedInputError
from streamwreck.core.events import ProcessedEvent, parse_body
from streamwreck.core.ledger import Ledger
from streamwreck.core.settings import RecorderSettings
from streamwreck.recorder.metrics import RecorderMetrics
from streamwreck.recorder.topics import WrongTopic, check_topic

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0


@dataclass
class BatchReport:
    received: int = 0
    deleted: int = 0
    rejected: int = 0
    records: int = 0


class Recorder:
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        ledger: Ledger,
        *,
        wait_seconds: int = 20,
        visibility_timeout: int = 60,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
        topic_arn: str | None = None,
        metrics: RecorderMetrics | None = None,
        max_receive_count: int | None = None,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._ledger = ledger
        self._wait = wait_seconds
        self._visibility = visibility_timeout
        self.stop = stop or threading.Event()
        self._sleep = sleep or (lambda seconds: self.stop.wait(seconds))
        self._topic_arn = topic_arn
        self.metrics = metrics or RecorderMetrics()
        self._max_receives = max_receive_count

    def run(self) -> None:
        logger.info("recorder_started", extra={"queue_url": self._queue_url})
        backoff = 1.0
        while not self.stop.is_set():
            heartbeat.touch()
            try:
                self.poll_once()
                backoff = 1.0
            except (ClientError, BotoCoreError) as exc:
                self.metrics.sqs_errors.inc()
                logger.warning("sqs_unavailable", extra={"error": str(exc), "retry_in": backoff})
            except Exception:  # a bug must not become a crash loop that dead-letters good events
                logger.exception("poll_failed", extra={"retry_in": backoff})
            else:
                continue
            self._sleep(backoff)
            backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)
        logger.info("recorder_stopped")

    def poll_once(self) -> BatchReport:
        """Receive up to 10 messages, store their entries, delete the stored ones."""
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self._wait,
            VisibilityTimeout=self._visibility,
            AttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["TopicArn"],
        )
        messages = response.get("Messages", [])
        report = BatchReport(received=len(messages))
        self.metrics.received.inc(len(messages))
        pending: list[tuple[ProcessedEvent, dict[str, Any]]] = []
        for message in messages:
            try:
                check_topic(message, self._topic_arn)
                pending.append((parse_body(message["Body"]), message))
            except RejectedInputError as exc:
                report.rejected += 1
                self._refused(message, "wrong_topic" if isinstance(exc, WrongTopic) else "malformed")
                logger.error("message_rejected", extra={"message_id": message["MessageId"], "reason": str(exc)})
        stored = []
        for position, (event, message) in enumerate(pending):
            outcome = self._store(event, [m for _, m in pending[position:]])
            if outcome is None:
                break  # told to stop during a ledger outage: the rest goes back to the queue untouched
            if outcome:
                report.records += len(event.records)
                stored.append(message)
            else:
                self._refused(message, "not_recorded")
        report.deleted = self._delete(stored)
        self.metrics.recorded.inc(len(stored))
        self.metrics.records.inc(report.records)
        if messages:
            logger.info("batch_recorded", extra=report.__dict__)
        return report

    def _store(self, event: ProcessedEvent, in_hand: list[dict[str, Any]]) -> bool | None:
        """Record one event; True when stored, False when it cannot be (left for redrive), None when told to stop.

        During a ledger outage every message still in hand (``in_hand``, this event's first) is kept invisible, so
        that neither this recorder nor another receives it again and uses up its receive count.
        """
        backoff = 0.5
        while True:
            try:
                processed_at = int(event.processed_at.timestamp())
                outcome = self._ledger.record(event.record_ids(), event.event_id, processed_at)
                if outcome.duplicate or outcome.redelivered:
                    logger.info("event_recorded_again", extra={"event_id": event.event_id, **outcome.__dict__})
                return True
            except LedgerUnavailableError as exc:
                self.metrics.ledger_errors.inc()
                logger.warning("ledger_unavailable", extra={"error": str(exc), "retry_in": backoff})
            except Exception:
                logger.exception("event_not_recorded", extra={"event_id": event.event_id})
                return False
            if self.stop.is_set():
                return None
            self._keep_invisible(in_hand, backoff)
            heartbeat.touch()  # alive, holding the message through the outage
            self._sleep(backoff)
            backoff = min(MAX_BACKOFF_SECONDS, backoff * 2)

    def _refused(self, message: dict[str, Any], reason: str) -> None:
        self.metrics.rejected.labels(reason).inc()
        receives = message.get("Attributes", {}).get("ApproximateReceiveCount", "")
        if self._max_receives is not None and receives.isdigit() and int(receives) >= self._max_receives:
            self.metrics.dead_lettered.inc()

    def _keep_invisible(self, messages: list[dict[str, Any]], seconds: float) -> None:
        try:
            response = self._sqs.change_message_visibility_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "ReceiptHandle": m["ReceiptHandle"],
                        "VisibilityTimeout": max(self._visibility, int(seconds) + 30),
                    }
                    for i, m in enumerate(messages)
                ],
            )
            for failed in response.get("Failed", []):
                logger.warning("visibility_not_extended", extra={"entry": failed})
        except (ClientError, BotoCoreError) as exc:
            logger.warning("visibility_not_extended", extra={"error": str(exc)})

    def _delete(self, messages: list[dict[str, Any]]) -> int:
        if not messages:
            return 0
        response = self._sqs.delete_message_batch(
            QueueUrl=self._queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
        for failed in response.get("Failed", []):
            # Stored already: a redelivery will count as a replay, not as a second processing.
            logger.warning("delete_failed", extra={"entry": failed})
        return len(response.get("Successful", []))


def serve(settings: RecorderSettings) -> int:
    """``streamwreck recorder``: run until SIGTERM/SIGINT, finishing the batch in hand; exit 0."""
    import signal

    import boto3

    from streamwreck.core.ledger import open_ledger

    ledger = open_ledger(settings)
    heartbeat.configure(settings.heartbeat_file)
    sqs = boto3.client("sqs", region_name=settings.region)
    metrics = RecorderMetrics()
    stop_metrics = None
    if settings.recorder_metrics_port is not None:
        stop_metrics = metrics.serve(settings.recorder_metrics_port, settings.recorder_metrics_host)
    recorder = Recorder(
        sqs,
        settings.queue_url,
        ledger,
        wait_seconds=settings.recorder_wait_seconds,
        visibility_timeout=settings.recorder_visibility_timeout,
        topic_arn=settings.recorder_topic_arn,
        metrics=metrics,
        max_receive_count=max_receive_count(sqs, settings.queue_url),
    )

    def _stop(signum: int, frame: object) -> None:
        logger.info("recorder_stopping", extra={"signal": signum})
        recorder.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        recorder.run()
    finally:
        ledger.close()
        if stop_metrics is not None:
            stop_metrics()
    return 0


def max_receive_count(sqs: Any, queue_url: str) -> int | None:
    """The queue's redrive policy's maxReceiveCount; None when it has none or it cannot be read (not fatal)."""
    import json

    try:
        attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
        return int(json.loads(attributes["RedrivePolicy"])["maxReceiveCount"])
    except (ClientError, BotoCoreError) as exc:
        logger.warning("redrive_policy_unread", extra={"error": str(exc)})
    except (KeyError, ValueError, TypeError):
        logger.warning("no_redrive_policy", extra={"queue_url": queue_url})
    return None
