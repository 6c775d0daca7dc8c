"""The record processor driven through amazon-kclpy's JSON line protocol by a scripted daemon (no Java, no sockets).

amazon-kclpy's own ``KCLProcess`` reads the daemon's messages and writes the answers; the scripted daemon here stands
in for the MultiLangDaemon's side: it hands out the next message, answers each checkpoint request (from a script
of errors), and records, in one timeline with the recording publisher, what was published and checkpointed.
The same protocol against a real process and moto's SNS -> SQS is in tests/integration/test_processor_process.py.
The metrics tests at the end drive the real publisher too, over a scripted SNS client.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from amazon_kclpy import kcl
from botocore.exceptions import ClientError
from prometheus_client import CollectorRegistry

from streamwreck.core.errors import LedgerUnavailableError, PublishError, RejectedInputError
from streamwreck.core.events import Pair
from streamwreck.core.publisher import EventPublisher
from streamwreck.processor import metrics as m
from streamwreck.processor.metrics import CountedSns, ShardMetrics
from streamwreck.processor.processor import ProcessFunction, Record, ShardProgress, demo_rule
from streamwreck.processor.record_processor import (
    EXIT_BUG,
    EXIT_HALTED,
    EXIT_UNPUBLISHED,
    StreamwreckRecordProcessor,
)

EVENTS = Path(__file__).resolve().parents[1] / "events"
SHARD = "shardId-000000000000"
PLAIN = json.loads((EVENTS / "kcl-process-records.json").read_text())
DEAGGREGATED = json.loads((EVENTS / "kcl-process-records-deaggregated.json").read_text())

INITIALIZE = {"action": "initialize", "shardId": SHARD, "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0}
EMPTY = {"action": "processRecords", "records": [], "millisBehindLatest": 0}
LEASE_LOST = {"action": "leaseLost"}
SHARD_ENDED = {"action": "shardEnded"}
SHUTDOWN_REQUESTED = {"action": "shutdownRequested"}


def _pairs(message: dict[str, Any], skip_every: int = 5) -> list[Pair]:
    records = [(r["sequenceNumber"], r["subSequenceNumber"]) for r in message["records"]]
    return [(seq, sub) for seq, sub in records if skip_every == 0 or int(seq) % skip_every]


def _last(message: dict[str, Any]) -> tuple[str, int]:
    record = message["records"][-1]
    return (record["sequenceNumber"], record["subSequenceNumber"])


class ScriptedDaemon:
    """Both of KCLProcess's files: it reads messages from here and writes its answers here."""

    def __init__(self, messages: Iterable[dict[str, Any]], checkpoint_errors: Iterable[str | None] = ()) -> None:
        self._messages = [json.dumps(message) for message in messages]
        self._checkpoint_errors = list(checkpoint_errors)
        self._awaiting_checkpoint_answer: dict[str, Any] | None = None
        self.received: list[dict[str, Any]] = []  # every message the record processor wrote
        self.timeline: list[tuple[Any, ...]] = []  # publishes and checkpoint requests, in order

    # the record processor's stdin
    def readline(self) -> str:
        request = self._awaiting_checkpoint_answer
        if request is not None:
            self._awaiting_checkpoint_answer = None
            error = self._checkpoint_errors.pop(0) if self._checkpoint_errors else None
            answer = {"action": "checkpoint", **{k: request[k] for k in ("sequenceNumber", "subSequenceNumber")}}
            if error:
                answer["error"] = error
            return json.dumps(answer) + "\n"
        return self._messages.pop(0) + "\n" if self._messages else ""

    # the record processor's stdout
    def write(self, text: str) -> None:
        for line in text.splitlines():
            if line.strip():
                message = json.loads(line)
                self.received.append(message)
                if message["action"] == "checkpoint":
                    self._awaiting_checkpoint_answer = message
                    self.timeline.append(("checkpoint", message["sequenceNumber"], message["subSequenceNumber"]))

    def flush(self) -> None:
        pass

    @property
    def checkpoints(self) -> list[tuple[Any, ...]]:
        return [step[1:] for step in self.timeline if step[0] == "checkpoint"]

    @property
    def statuses(self) -> list[str]:
        return [m["responseFor"] for m in self.received if m["action"] == "status"]


class RecordingPublisher:
    def __init__(self, daemon: ScriptedDaemon, failures: int = 0, error: Exception | None = None) -> None:
        self._daemon = daemon
        self._failures = failures
        self._error = error or PublishError("SNS is down")
        self.published: list[Pair] = []

    def publish(self, stream: str, shard_id: str, records: Iterable[Pair]) -> None:
        records = list(records)
        if self._failures:
            self._failures -= 1
            raise self._error
        self.published.extend(records)
        self._daemon.timeline.append(("publish", stream, shard_id, records))


class Exited(SystemExit):
    pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(
    messages: list[dict[str, Any]],
    *,
    checkpoint_errors: Iterable[str | None] = (),
    function: ProcessFunction | None = None,
    flush_records: int = 4000,
    flush_seconds: float = 2.0,
    publish_failures: int = 0,
    publish_error: Exception | None = None,
    clock: Clock | None = None,
    metrics: ShardMetrics | None = None,
) -> tuple[ScriptedDaemon, RecordingPublisher, list[int]]:
    daemon = ScriptedDaemon(messages, checkpoint_errors)
    publisher = RecordingPublisher(daemon, publish_failures, publish_error)
    exits: list[int] = []

    def exit_(code: int) -> None:
        exits.append(code)
        raise Exited(code)  # SystemExit: KCLProcess lets it through, as it does os._exit's effect

    record_processor = StreamwreckRecordProcessor(
        "orders",
        publisher,
        function or demo_rule(5),
        progress=ShardProgress(flush_records, flush_seconds),
        clock=clock or Clock(),
        sleep=lambda _: None,
        exit=exit_,
        metrics=metrics,
    )
    errors = io.StringIO()
    process = kcl.KCLProcess(record_processor, input_file=daemon, output_file=daemon, error_file=errors)
    with contextlib.suppress(Exited):
        process.run()
    assert errors.getvalue() == ""  # nothing reached amazon-kclpy's "caught exception" path
    return daemon, publisher, exits


def test_every_action_is_answered_with_a_status() -> None:
    daemon, _, exits = _run([INITIALIZE, PLAIN, DEAGGREGATED, EMPTY, SHUTDOWN_REQUESTED])
    assert daemon.statuses == ["initialize", "processRecords", "processRecords", "processRecords", "shutdownRequested"]
    assert exits == []


def test_each_due_batch_is_published_before_its_checkpoint() -> None:
    daemon, _, _ = _run([INITIALIZE, PLAIN, DEAGGREGATED, EMPTY], flush_seconds=0)
    assert daemon.timeline == [
        ("publish", "orders", SHARD, _pairs(PLAIN)),
        ("checkpoint", *_last(PLAIN)),
        ("publish", "orders", SHARD, _pairs(DEAGGREGATED)),
        ("checkpoint", *_last(DEAGGREGATED)),
    ]


def test_at_the_tip_of_the_shard_enough_records_are_published_without_waiting() -> None:
    behind = dict(DEAGGREGATED, millisBehindLatest=5000)
    daemon = ScriptedDaemon([INITIALIZE, PLAIN, behind, DEAGGREGATED])
    record_processor = StreamwreckRecordProcessor(
        "orders",
        RecordingPublisher(daemon),
        demo_rule(5),
        progress=ShardProgress(flush_records=4000, flush_seconds=3600, tip_flush_records=9),
        clock=Clock(),
    )
    kcl.KCLProcess(record_processor, input_file=daemon, output_file=daemon, error_file=io.StringIO()).run()
    # 4 pending at the tip (< 9), then 9 while behind (wait: more is coming), then 14 at the tip: publish
    assert daemon.timeline == [
        ("publish", "orders", SHARD, _pairs(PLAIN) + _pairs(DEAGGREGATED) * 2),
        ("checkpoint", *_last(DEAGGREGATED)),
    ]


def test_a_full_request_worth_of_records_is_published_at_once() -> None:
    daemon, _, _ = _run([INITIALIZE, PLAIN, DEAGGREGATED], flush_records=5, flush_seconds=3600)
    # PLAIN leaves 4 processed records pending (below 5); DEAGGREGATED brings it to 9
    assert daemon.timeline == [
        ("publish", "orders", SHARD, _pairs(PLAIN) + _pairs(DEAGGREGATED)),
        ("checkpoint", *_last(DEAGGREGATED)),
    ]


def test_batches_are_held_until_the_flush_interval_has_passed() -> None:
    clock = Clock()
    messages = [INITIALIZE, PLAIN, DEAGGREGATED, EMPTY]

    class AdvancingDaemon(ScriptedDaemon):
        def readline(self) -> str:
            line = super().readline()
            if line and json.loads(line)["action"] == "processRecords" and not json.loads(line)["records"]:
                clock.now = 5.0  # the empty poll arrives after the flush interval
            return line

    daemon = AdvancingDaemon(messages)
    publisher = RecordingPublisher(daemon)
    record_processor = StreamwreckRecordProcessor(
        "orders", publisher, demo_rule(5), progress=ShardProgress(4000, 2.0), clock=clock, sleep=lambda _: None
    )
    kcl.KCLProcess(record_processor, input_file=daemon, output_file=daemon, error_file=io.StringIO()).run()
    # one publish for both batches, on the empty poll; then one checkpoint at the last record handled
    assert daemon.timeline == [
        ("publish", "orders", SHARD, _pairs(PLAIN) + _pairs(DEAGGREGATED)),
        ("checkpoint", *_last(DEAGGREGATED)),
    ]


def test_deaggregated_sub_sequence_numbers_reach_the_events_and_the_checkpoint() -> None:
    daemon, publisher, _ = _run([INITIALIZE, DEAGGREGATED, SHUTDOWN_REQUESTED])
    seq = DEAGGREGATED["records"][0]["sequenceNumber"]
    assert publisher.published[:4] == [(seq, 0), (seq, 1), (seq, 2), (seq, 3)]
    skipped = DEAGGREGATED["records"][4]["sequenceNumber"]
    assert all(s != skipped for s, _ in publisher.published)  # the whole aggregated record is skipped
    assert daemon.checkpoints == [_last(DEAGGREGATED)]


def test_skipped_records_never_drop_the_rest_of_the_batch() -> None:
    _, publisher, _ = _run([INITIALIZE, PLAIN, SHUTDOWN_REQUESTED])
    assert publisher.published == _pairs(PLAIN)
    assert len(publisher.published) == 4  # 6 records, 2 divisible by 5


def test_a_throttled_checkpoint_is_retried() -> None:
    daemon, _, exits = _run([INITIALIZE, PLAIN, SHUTDOWN_REQUESTED], checkpoint_errors=["ThrottlingException", None])
    assert daemon.checkpoints == [_last(PLAIN), _last(PLAIN)]
    assert exits == [] and daemon.statuses[-1] == "shutdownRequested"


def test_after_a_shutdown_exception_the_processor_stops_checkpointing() -> None:
    daemon, publisher, exits = _run(
        [INITIALIZE, PLAIN, DEAGGREGATED, SHUTDOWN_REQUESTED], checkpoint_errors=["ShutdownException"], flush_seconds=0
    )
    assert daemon.checkpoints == [_last(PLAIN)]  # refused; never asked again
    assert publisher.published == _pairs(PLAIN) + _pairs(DEAGGREGATED)  # what was processed is still reported
    assert exits == []


def test_an_invalid_state_answer_is_not_retried_and_processing_goes_on() -> None:
    daemon, _, exits = _run(
        [INITIALIZE, PLAIN, DEAGGREGATED], checkpoint_errors=["InvalidStateException"], flush_seconds=0
    )
    assert daemon.checkpoints == [_last(PLAIN), _last(DEAGGREGATED)]  # the next flush checkpoints further
    assert exits == []


def test_lease_lost_publishes_what_was_processed_but_never_checkpoints() -> None:
    daemon, publisher, _ = _run([INITIALIZE, PLAIN, LEASE_LOST])
    assert publisher.published == _pairs(PLAIN)
    assert daemon.checkpoints == []
    assert daemon.statuses == ["initialize", "processRecords", "leaseLost"]


def test_shard_end_publishes_then_checkpoints_the_end_of_the_shard() -> None:
    daemon, _, _ = _run([INITIALIZE, PLAIN, DEAGGREGATED, SHARD_ENDED])
    assert daemon.timeline == [
        ("publish", "orders", SHARD, _pairs(PLAIN) + _pairs(DEAGGREGATED)),
        ("checkpoint", None, None),
    ]
    assert daemon.statuses[-1] == "shardEnded"


def test_shutdown_requested_checkpoints_at_the_last_record_handled() -> None:
    daemon, _, _ = _run([INITIALIZE, PLAIN, SHUTDOWN_REQUESTED])
    assert daemon.timeline[-1] == ("checkpoint", *_last(PLAIN))


def test_shutdown_requested_with_nothing_new_does_not_checkpoint_again() -> None:
    daemon, _, _ = _run([INITIALIZE, PLAIN, SHUTDOWN_REQUESTED, SHUTDOWN_REQUESTED], flush_seconds=0)
    assert daemon.checkpoints == [_last(PLAIN)]


def test_a_publish_outage_ends_the_process_without_checkpointing() -> None:
    daemon, publisher, exits = _run([INITIALIZE, PLAIN, DEAGGREGATED, EMPTY], publish_failures=1, flush_seconds=0)
    assert exits == [EXIT_UNPUBLISHED]
    assert daemon.checkpoints == [] and publisher.published == []
    assert daemon.statuses == ["initialize"]  # it never answered the batch: the daemon sees the process end


def test_a_publish_outage_at_shard_end_does_not_checkpoint_the_end() -> None:
    daemon, _, exits = _run([INITIALIZE, PLAIN, SHARD_ENDED], publish_failures=1)
    assert exits == [EXIT_UNPUBLISHED]
    assert daemon.checkpoints == []


def test_a_refused_publish_also_ends_the_process_without_checkpointing() -> None:
    refused = RejectedInputError("SNS refused the events: InvalidParameter")
    daemon, _, exits = _run([INITIALIZE, PLAIN, SHUTDOWN_REQUESTED], publish_failures=1, publish_error=refused)
    assert exits == [EXIT_UNPUBLISHED]
    assert daemon.checkpoints == []


def test_a_bug_in_the_publisher_is_reported_as_a_bug_not_as_an_outage() -> None:
    bug = TypeError("'NoneType' object is not subscriptable")
    daemon, _, exits = _run([INITIALIZE, PLAIN, SHUTDOWN_REQUESTED], publish_failures=1, publish_error=bug)
    assert exits == [EXIT_BUG]
    assert daemon.checkpoints == []


def test_a_publish_outage_after_a_lost_lease_is_logged_and_processing_goes_on() -> None:
    daemon, publisher, exits = _run([INITIALIZE, PLAIN, LEASE_LOST], publish_failures=1)
    assert exits == [] and publisher.published == []
    assert daemon.statuses == ["initialize", "processRecords", "leaseLost"]
    assert daemon.checkpoints == []


def test_a_transient_error_in_the_function_checkpoints_only_before_it_then_exits() -> None:
    halt_at = PLAIN["records"][3]["sequenceNumber"]

    def function(record: Record) -> bool:
        if record.sequence_number == halt_at:
            raise LedgerUnavailableError("downstream down")
        return True

    daemon, publisher, exits = _run([INITIALIZE, PLAIN, EMPTY], function=function)
    before = [(r["sequenceNumber"], r["subSequenceNumber"]) for r in PLAIN["records"][:3]]
    assert publisher.published == before
    assert daemon.checkpoints == [before[-1]]
    assert exits == [EXIT_HALTED]


def test_a_bug_in_the_record_processor_ends_the_process_instead_of_being_swallowed() -> None:
    broken_record = dict(PLAIN["records"][0], subSequenceNumber="not a number")
    broken = {"action": "processRecords", "millisBehindLatest": 0, "records": [broken_record]}
    daemon, _, exits = _run([INITIALIZE, broken, PLAIN, SHUTDOWN_REQUESTED])
    assert exits == [EXIT_BUG]
    assert daemon.checkpoints == []


@pytest.mark.parametrize("returned", [None, True, "anything"])
def test_any_return_but_false_means_processed(returned: object) -> None:
    _, publisher, _ = _run([INITIALIZE, PLAIN, SHUTDOWN_REQUESTED], function=lambda _record: returned)
    assert publisher.published == _pairs(PLAIN, skip_every=0)


# -- metrics ---------------------------------------------------------------------------------------------------------

TOPIC = "arn:aws:sns:eu-west-1:123456789012:processed"


class ScriptedSns:
    """An SNS client answering PublishBatch from a script: "error" (raises, as botocore does), "partial" (SNS
    accepts no entry, a server-side failure the publisher retries), then "ok" for good."""

    def __init__(self, script: Iterable[str] = ()) -> None:
        self._script = list(script)

    def publish_batch(self, TopicArn: str, PublishBatchRequestEntries: list[dict[str, Any]]) -> dict[str, Any]:
        step = self._script.pop(0) if self._script else "ok"
        if step == "error":
            raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "PublishBatch")
        ids = [entry["Id"] for entry in PublishBatchRequestEntries]
        if step == "partial":
            failed = [{"Id": i, "Code": "InternalError", "SenderFault": False, "Message": "try again"} for i in ids]
            return {"Successful": [], "Failed": failed}
        return {"Successful": [{"Id": i, "MessageId": f"m-{i}"} for i in ids], "Failed": []}


class ObservedDaemon(ScriptedDaemon):
    """Advances the clock a second per message, and notes the checkpoint lag gauge before handing out the next
    message (the record processor has finished with the previous one by then)."""

    def __init__(self, messages: Iterable[dict[str, Any]], metrics: ShardMetrics, clock: Clock, **kwargs: Any) -> None:
        super().__init__(messages, **kwargs)
        self._metrics = metrics
        self._clock = clock
        self.lags: list[float | None] = []

    def readline(self) -> str:
        if self._awaiting_checkpoint_answer is None:  # the next message, not the answer to a checkpoint
            self.lags.append(value(self._metrics, m.CHECKPOINT_LAG))
            self._clock.now += 1
        return super().readline()


def value(metrics: ShardMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"stream": "orders", "shard_id": SHARD, **labels})


def counts(metrics: ShardMetrics) -> dict[str, float | None]:
    found = {outcome: value(metrics, f"{m.RECORDS}_total", outcome=outcome) for outcome in m.OUTCOMES}
    for name in (m.RECORDS_PUBLISHED, m.EVENTS_PUBLISHED, m.PUBLISH_REQUESTS, m.PUBLISH_REQUESTS_FAILED):
        found[name.removeprefix(m.PREFIX)] = value(metrics, f"{name}_total")
    found["publish_errors"] = value(metrics, f"{m.PUBLISH_ERRORS}_total")
    found["checkpoints"] = value(metrics, f"{m.CHECKPOINTS}_total")
    return found


def _observed_run(
    messages: list[dict[str, Any]],
    sns: ScriptedSns,
    *,
    flush_seconds: float,
    checkpoint_errors: Iterable[str | None] = (),
    attempts: int = 5,
) -> tuple[ObservedDaemon, ShardMetrics, list[int]]:
    """The record processor with the real publisher over ``sns``, metrics in a registry of their own."""
    metrics = ShardMetrics("orders", registry=CollectorRegistry())
    clock = Clock()
    daemon = ObservedDaemon(messages, metrics, clock, checkpoint_errors=checkpoint_errors)
    publisher = EventPublisher(CountedSns(sns, metrics), TOPIC, "worker-1", attempts=attempts, sleep=lambda _: None)
    exits: list[int] = []

    def exit_(code: int) -> None:
        exits.append(code)
        raise Exited(code)

    record_processor = StreamwreckRecordProcessor(
        "orders",
        publisher,
        demo_rule(5),
        progress=ShardProgress(4000, flush_seconds),
        clock=clock,
        sleep=lambda _: None,
        exit=exit_,
        metrics=metrics,
    )
    with contextlib.suppress(Exited):
        kcl.KCLProcess(record_processor, input_file=daemon, output_file=daemon, error_file=io.StringIO()).run()
    return daemon, metrics, exits


def test_metrics_count_records_publishes_and_checkpoints_and_the_lag_returns_to_zero() -> None:
    messages = [INITIALIZE, PLAIN, DEAGGREGATED, EMPTY, EMPTY]
    daemon, metrics, exits = _observed_run(messages, ScriptedSns(["error", "partial"]), flush_seconds=2.5)
    assert exits == []
    processed = len(_pairs(PLAIN)) + len(_pairs(DEAGGREGATED))
    read = len(PLAIN["records"]) + len(DEAGGREGATED["records"])
    assert counts(metrics) == {
        "processed": processed,
        "skipped": read - processed,  # the demo rule's: every sequence number divisible by 5
        "failed": 0,
        "records_published": processed,
        "events_published": 1,  # 9 records fit one event
        "publish_requests": 3,  # an error, a request SNS accepted nothing of, then the one that went through
        "publish_requests_failed": 2,
        "publish_errors": 0,
        "checkpoints": 1,
    }
    assert daemon.checkpoints == [_last(DEAGGREGATED)]
    # Before each next message, at one message a second: none pending after initialize; the first batch just read;
    # it waits 1 s, then 2 s (below the 2.5 s flush interval); then it is published and checkpointed: 0.
    assert daemon.lags == [None, 0, 0, 1, 2, 0]
    assert value(metrics, m.BEHIND_LATEST) == 0


def test_metrics_count_a_publish_given_up_and_no_checkpoint() -> None:
    sns = ScriptedSns(["error", "error", "error"])
    daemon, metrics, exits = _observed_run([INITIALIZE, PLAIN, EMPTY], sns, flush_seconds=0, attempts=3)
    assert exits == [EXIT_UNPUBLISHED]
    found = counts(metrics)
    assert (found["publish_requests"], found["publish_requests_failed"], found["publish_errors"]) == (3, 3, 1)
    assert found["records_published"] == found["events_published"] == found["checkpoints"] == 0
    assert daemon.checkpoints == []


def test_the_lag_keeps_growing_after_a_refused_checkpoint_until_one_is_stored() -> None:
    messages = [INITIALIZE, PLAIN, EMPTY, EMPTY, DEAGGREGATED, EMPTY]
    daemon, metrics, _ = _observed_run(
        messages, ScriptedSns(), flush_seconds=0, checkpoint_errors=["InvalidStateException"]
    )
    assert daemon.checkpoints == [_last(PLAIN), _last(DEAGGREGATED)]
    assert counts(metrics)["checkpoints"] == 1  # only the stored one
    # PLAIN is published at once but its checkpoint is refused: its records stay unchecked, 1 s, 2 s old, until
    # DEAGGREGATED's checkpoint covers them too
    assert daemon.lags == [None, 0, 0, 1, 2, 0, 0]


def test_metrics_count_failed_records_and_a_publish_lost_with_the_lease() -> None:
    def function(record: Record) -> bool:
        if record.sequence_number == PLAIN["records"][0]["sequenceNumber"]:
            raise ValueError("bad record")
        return True

    metrics = ShardMetrics("orders", registry=CollectorRegistry())
    _, _, exits = _run([INITIALIZE, PLAIN, LEASE_LOST], function=function, publish_failures=1, metrics=metrics)
    assert exits == []
    found = counts(metrics)
    assert (found["processed"], found["skipped"], found["failed"]) == (len(PLAIN["records"]) - 1, 0, 1)
    assert (found["publish_errors"], found["records_published"], found["checkpoints"]) == (1, 0, 0)
