"""Where lost records are reported: a JSON-lines file (``--export``) and an SNS topic, each record once in steady state.

A line (and an SNS message's ``records`` entry) carries the record's identity, its arrival, why it is lost and
``replayable_until`` — arrival + the stream's retention: until then ``check --redrive-to`` (or anyone reading the
shard) can still put it back. The file's lines also carry the partition key and the payload (base64), as
``check --export`` writes them, so that one file serves both. A restart of a watcher judges the records after its
last checkpoint again and may report one of them twice, with the same identity: consumers de-duplicate on
(stream, shard_id, sequence_number, sub_sequence_number).

Several record processors append to one file: each writes its lines with one ``write`` on a file opened for
appending (O_APPEND), which Linux keeps whole on a local file system.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamwreck.core.aws import AWS_ERRORS, translate
from streamwreck.core.clock import iso
from streamwreck.core.errors import ConfigError
from streamwreck.watcher.shard import Outcome

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient

MESSAGE_TYPE = "streamwreck.lost.v1"
RECORDS_PER_MESSAGE = 100  # about 30 KB: well under SNS' 256 KB


def lost_fields(stream: str, outcome: Outcome, retention: float) -> dict[str, Any]:
    """The pinned fields of one lost record (``--export``, SNS), and the stream's name."""
    record = outcome.record
    return {
        "stream": stream,
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "sub_sequence_number": record.sub_sequence_number,
        "approximate_arrival_timestamp": iso(record.arrival),
        "reason": outcome.reason,
        "replayable_until": iso(record.arrival + retention),
    }


def export_line(stream: str, outcome: Outcome, retention: float) -> str:
    record = outcome.record
    fields = lost_fields(stream, outcome, retention)
    fields["partition_key"] = record.partition_key
    fields["data"] = base64.b64encode(record.data).decode("ascii")
    return json.dumps(fields)


class LostReporter:
    """Reports lost records to the file and the topic configured (either, both or neither)."""

    def __init__(
        self,
        stream: str,
        retention: float,
        export: Path | None = None,
        sns: SNSClient | None = None,
        topic_arn: str | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.stream = stream
        self.retention = retention
        self.export = export
        self._sns = sns
        self.topic_arn = topic_arn
        self.worker_id = worker_id

    def report(self, lost: Sequence[Outcome]) -> None:
        """Every lost record to each destination; ConfigError (file) or AwsError (SNS) if one cannot take them."""
        if not lost:
            return
        if self.export is not None:
            text = "".join(export_line(self.stream, outcome, self.retention) + "\n" for outcome in lost)
            try:
                with self.export.open("a", encoding="utf-8") as out:
                    out.write(text)
            except OSError as exc:
                raise ConfigError(f"cannot append to the export file {self.export}: {exc.strerror or exc}") from None
        if self._sns is not None and self.topic_arn:
            for start in range(0, len(lost), RECORDS_PER_MESSAGE):
                self._publish(lost[start : start + RECORDS_PER_MESSAGE])

    def _publish(self, lost: Sequence[Outcome]) -> None:
        assert self._sns is not None and self.topic_arn
        message = {
            "type": MESSAGE_TYPE,
            "stream": self.stream,
            "watcher": self.worker_id,
            "records": [lost_fields(self.stream, outcome, self.retention) for outcome in lost],
        }
        shards = sorted({outcome.record.shard_id for outcome in lost})
        subject = f"streamwreck: {len(lost)} lost records on {self.stream} {', '.join(shards)}"[:100]
        try:
            self._sns.publish(TopicArn=self.topic_arn, Message=json.dumps(message), Subject=subject)
        except AWS_ERRORS as exc:
            raise translate(exc, f"publishing lost records to {self.topic_arn}") from exc
