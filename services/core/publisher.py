"""Publishes processed events to SNS in as few requests as possible.

Any Python consumer can report what it processed::

    import boto3
    from streamwreck.core.publisher import EventPublisher

    publisher = EventPublisher(boto3.client("sns"), topic_arn)
    publisher.publish("orders", shard_id, [(record.sequence_number, record.sub_sequence_number), ...])

Failures are retried with backoff; what still fails raises PublishError, and nothing after it should be
acknowledged (checkpointed) by the caller.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from streamwreck.core.aws import error_code
from streamwreck.core.errors import PublishError, RejectedInputError
from streamwreck.core.events import Pair, batch_requests, chunk_events

logger = logging.getLogger(__name__)

# SNS errors that retrying in place will not cure: the topic is missing or not ours to publish to. Still a
# PublishError (don't checkpoint; exit and let the orchestrator restart once the configuration is fixed).
_NOT_RETRIED = {"NotFound", "AuthorizationError", "InvalidClientTokenId", "AccessDenied", "AccessDeniedException"}
# The request itself is wrong: a bug of ours, never retried.
_REJECTED = {
    "InvalidParameter",
    "InvalidParameterValue",
    "ValidationError",
    "BatchRequestTooLong",
    "EmptyBatchRequest",
    "TooManyEntriesInBatchRequest",
    "BatchEntryIdsNotDistinct",
}


@dataclass
class PublishReport:
    events: int = 0
    requests: int = 0


def default_worker_id() -> str:
    return f"{socket.gethostname()[:200]}:{os.getpid()}"


class EventPublisher:
    def __init__(
        self,
        sns: Any,
        topic_arn: str,
        worker_id: str | None = None,
        *,
        attempts: int = 6,
        base_delay: float = 0.2,
        max_delay: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._sns = sns
        self._topic_arn = topic_arn
        self._attributes = {"TopicArn": {"DataType": "String", "StringValue": topic_arn}}
        self.worker_id = worker_id or default_worker_id()
        self._attempts = attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep
        self.totals = PublishReport()

    def publish(self, stream: str, shard_id: str, records: Iterable[Pair]) -> PublishReport:
        """Publish that ``records`` (sequence, sub-sequence pairs) of one shard were processed."""
        report = PublishReport()
        for batch in batch_requests(chunk_events(stream, shard_id, records, self.worker_id)):
            report.requests += self._send(batch)
            report.events += len(batch)
        self.totals.events += report.events
        self.totals.requests += report.requests
        if report.events:
            logger.info(
                "events_published",
                extra={"stream": stream, "shard_id": shard_id, "events": report.events, "requests": report.requests},
            )
        return report

    def _send(self, messages: list[str]) -> int:
        """Send one batch until every entry is accepted; the number of requests it took."""
        pending = {str(i): message for i, message in enumerate(messages)}
        requests = 0
        for attempt in range(self._attempts):
            if attempt:
                delay = min(self._max_delay, self._base_delay * 2 ** (attempt - 1))
                self._sleep(delay * (0.5 + random.random() / 2))
            requests += 1
            try:
                response = self._sns.publish_batch(
                    TopicArn=self._topic_arn,
                    PublishBatchRequestEntries=[
                        # The topic as a message attribute: with raw delivery there is no envelope to name it, and
                        # the recorder accepts only messages from its topic (STREAMWRECK_RECORDER_TOPIC_ARN).
                        {"Id": key, "Message": msg, "MessageAttributes": self._attributes}
                        for key, msg in pending.items()
                    ],
                )
            except ClientError as exc:
                code = error_code(exc)
                if code in _NOT_RETRIED:
                    raise PublishError(f"cannot publish to {self._topic_arn}: {code}: {exc}") from exc
                if code in _REJECTED:
                    raise RejectedInputError(f"SNS refused the events: {code}: {exc}") from exc
                logger.warning("publish_retry", extra={"attempt": attempt + 1, "error": code or str(exc)})
                last: Exception = exc
                continue
            except BotoCoreError as exc:
                logger.warning("publish_retry", extra={"attempt": attempt + 1, "error": str(exc)})
                last = exc
                continue
            for ok in response.get("Successful", []):
                pending.pop(ok["Id"], None)
            for failed in response.get("Failed", []):
                if failed.get("SenderFault"):
                    raise RejectedInputError(f"SNS refused an event: {failed.get('Code')}: {failed.get('Message')}")
            if not pending:
                return requests
            last = PublishError(f"{len(pending)} entries failed: {response.get('Failed')}")
        raise PublishError(f"publishing to {self._topic_arn} failed after {self._attempts} attempts: {last}") from last
