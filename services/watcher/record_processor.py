"""The watcher's record processor: the KCL MultiLangDaemon runs this module once per shard lease of the watcher's own
application (``python -m streamwreck.watcher.record_processor``), as it runs the processor's for the consumer.

It reuses the processor's amazon-kclpy adapter (:class:`~streamwreck.processor.record_processor.
StreamwreckRecordProcessor`: the guard that ends the process on a bug, the checkpoint with retries, the lost-lease
rule) and replaces what happens to the records:

- each batch is added to the shard's hold (:class:`~streamwreck.watcher.shard.ShardWatch`); on every call (the
  daemon calls even when a read returned nothing) the consumer's lease is read if ``lease_refresh_seconds`` have
  passed, the records that are due are asked about in batches (:class:`~streamwreck.checker.reconciling.
  ReconcileApi`) and judged, the lost ones reported (file, SNS), and only then do they leave the hold;
- the watcher's checkpoint moves to the last record judged, at most every ``checkpoint_seconds``: a crash judges
  the records after it again (a lost one may be reported twice), never skips one;
- with ``max_held`` records held, ``process_records`` does not return: it keeps reading the consumer's lease and
  judging until the hold has room, so the daemon reads nothing more for this shard (the lease is still renewed by
  the daemon meanwhile);
- at the shard's end every held record is judged before the end is checkpointed (the children start after it);
- one reconcile request per shard is in flight at a time, on a thread of its own: its answer is judged on a later
  call, so the API's latency overlaps the daemon's next delivery instead of adding to it;
- the API, DynamoDB or SNS failing is logged and retried on the next call; nothing is judged or checkpointed
  meanwhile.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_future
from pathlib import Path
from typing import Any, Protocol

from streamwreck.checker.reading import UserRecord
from streamwreck.checker.reconciling import Answer
from streamwreck.checker.verdict import Checkpoint, Status
from streamwreck.core import logs
from streamwreck.core.errors import AwsError, ConfigError, InternalError, StreamwreckError
from streamwreck.core.events import Pair
from streamwreck.core.settings import WatcherSettings, load_settings
from streamwreck.processor.record_processor import StreamwreckRecordProcessor, hard_exit, serve
from streamwreck.watcher.metrics import Emf, ShardMetrics
from streamwreck.watcher.reports import LostReporter
from streamwreck.watcher.shard import Due, Outcome, ShardWatch

# Named, not __name__: the daemon runs this module as __main__.
logger = logging.getLogger("streamwreck.watcher.record_processor")

BATCHES_PER_CALL = 8  # reconcile requests per process_records call, so that a call returns in reasonable time
SAMPLE = 5


class Api(Protocol):
    def reconcile(self, stream: str, records: list[UserRecord]) -> Answer: ...


class Consumer(Protocol):
    def checkpoint(self, shard_id: str) -> Checkpoint: ...


class Reporter(Protocol):
    def report(self, lost: list[Outcome]) -> None: ...


class _NoPublisher:
    def publish(self, stream: str, shard_id: str, records: Iterable[Pair]) -> None:
        raise InternalError("the watcher publishes no processed events")


class WatchRecordProcessor(StreamwreckRecordProcessor):
    """amazon-kclpy v3 record processor for one shard lease of the watcher."""

    def __init__(
        self,
        settings: WatcherSettings,
        api: Api,
        consumer: Consumer,
        reporter: Reporter,
        *,
        metrics: ShardMetrics | None = None,
        emf: Emf | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        exit: Callable[[int], Any] = hard_exit,
        executor: Executor | None = None,
    ) -> None:
        super().__init__(settings.stream_name, _NoPublisher(), lambda record: None, clock=clock, sleep=sleep, exit=exit)
        self.settings = settings
        self._api = api
        self._consumer = consumer
        self._reporter = reporter
        self._metrics = metrics
        self._emf = emf
        self.watch: ShardWatch | None = None
        self._read_at = float("-inf")  # when the consumer's lease was last read
        self._failed_until = float("-inf")  # after an error, nothing is tried before this
        self._checkpointed: Pair | None = None
        self._checkpointed_at: float = clock()
        self._behind: int | None = None
        self._ordinal = 0
        # One reconcile request in flight per shard, on its own thread: the API's answer overlaps the daemon's next
        # delivery instead of adding to it.
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="reconcile")
        self._asking: tuple[Due, Future[Answer]] | None = None

    def initialize(self, initialize_input: Any) -> None:
        super().initialize(initialize_input)
        s = self.settings
        self.watch = ShardWatch(
            self.shard_id,
            grace=s.grace_seconds,
            settle=s.settle_seconds,
            batch_size=s.batch_size,
            max_held=s.max_held,
            retry=s.lease_refresh_seconds,
        )

    # -- behaviour ------------------------------------------------------------------------------------------------

    def _shard(self) -> ShardWatch:
        if self.watch is None:
            raise InternalError("records before initialize")
        return self.watch

    def _process_records(self, process_records_input: Any) -> None:
        watch = self._shard()
        records = [self._user_record(raw) for raw in process_records_input.records]
        watch.add(records)
        self._behind = process_records_input.millis_behind_latest
        self.tick(process_records_input.checkpointer)
        while watch.full and self._can_checkpoint:  # hold no more: wait here for the consumer to move
            self._wait()
            self.tick(process_records_input.checkpointer)

    def _shard_ended(self, shard_ended_input: Any) -> None:
        watch = self._shard()
        self.tick(shard_ended_input.checkpointer)
        while watch.held:
            self._wait()
            self.tick(shard_ended_input.checkpointer, checkpoint=False)
        self._checkpoint(shard_ended_input.checkpointer, None)
        self._emit(force=True)
        logger.info("shard_ended", extra={"shard_id": self.shard_id, "counts": dict(watch.counts)})

    def _shutdown_requested(self, shutdown_requested_input: Any) -> None:
        logger.info("shutdown_requested", extra={"shard_id": self.shard_id})
        self.tick(shutdown_requested_input.checkpointer, checkpoint=False)
        if self._asking is not None:  # the answer in flight: judge what it allows before the last checkpoint
            self._wait()
            self.tick(shutdown_requested_input.checkpointer, checkpoint=False)
        self._checkpoint_judged(shutdown_requested_input.checkpointer)
        self._emit(force=True)

    def _lease_lost(self, _lease_lost_input: Any) -> None:
        # Another watcher judges from the last checkpoint: what was judged here may be reported once more there.
        self._can_checkpoint = False
        self._asking = None
        held = len(self.watch.held) if self.watch is not None else 0
        logger.info("lease_lost", extra={"shard_id": self.shard_id, "held": held})

    # -- one step: read the consumer's lease, judge what is due, report, checkpoint ---------------------------------

    def tick(self, checkpointer: Any, checkpoint: bool = True) -> None:
        watch = self._shard()
        now = self._clock()
        progressed = False
        if now >= self._failed_until:
            try:
                if now - self._read_at >= self.settings.lease_refresh_seconds:
                    watch.observe(self._consumer.checkpoint(self.shard_id), now)
                    self._read_at = now
                self._judge_due(watch)
                progressed = True
            except StreamwreckError as exc:
                self._failed_until = now + self.settings.lease_refresh_seconds
                logger.warning("watch_step_failed", extra={"shard_id": self.shard_id, "error": str(exc)})
        if checkpoint and now - self._checkpointed_at >= self.settings.checkpoint_seconds:
            self._checkpoint_judged(checkpointer)
        if self._metrics is not None:
            self._metrics.update(watch, self._clock(), self._behind, progressed)
        self._emit()

    def _judge_due(self, watch: ShardWatch) -> None:
        """Judge the answer in flight if it has come, then ask about the next records due (at most
        BATCHES_PER_CALL rounds: with an executor that answers at once, several batches a call)."""
        for _ in range(BATCHES_PER_CALL):
            if self._asking is not None:
                asked, future = self._asking
                if not future.done():
                    return
                self._asking = None
                if not self._settle(watch, asked, future.result()):
                    return
            due = watch.due(self._clock())
            if due is None:
                return
            self._asking = (due, self._executor.submit(self._api.reconcile, self.stream, due.records))

    def _settle(self, watch: ShardWatch, due: Due, answer: Answer) -> bool:
        """Judge ``due`` on ``answer``, report the lost, let the judged go; False when one is still in flight."""
        outcomes = watch.judge(due, answer)
        lost = [outcome for outcome in outcomes if outcome.status is Status.LOST]
        self._reporter.report(lost)  # before commit: a record leaves the hold only once reported
        watch.commit(outcomes)
        if lost:
            logger.warning(
                "records_lost",
                extra={
                    "shard_id": self.shard_id,
                    "count": len(lost),
                    "sample": [[o.record.sequence_number, o.record.sub_sequence_number] for o in lost[:SAMPLE]],
                },
            )
        unknown = [outcome for outcome in outcomes if outcome.status is Status.UNKNOWN]
        if unknown:
            logger.info(
                "records_unknown",
                extra={"shard_id": self.shard_id, "count": len(unknown), "reason": unknown[0].reason},
            )
        return len(outcomes) == len(due.records)

    def _wait(self) -> None:
        """Until the answer in flight comes, or a lease-refresh interval."""
        interval = self.settings.lease_refresh_seconds
        if self._asking is not None and not self._asking[1].done():
            wait_for_future([self._asking[1]], timeout=interval)
        else:
            self._sleep(interval)

    def _checkpoint_judged(self, checkpointer: Any) -> None:
        watch = self._shard()
        self._checkpointed_at = self._clock()
        position = watch.last_judged
        if position is not None and position != self._checkpointed and self._checkpoint(checkpointer, position):
            self._checkpointed = position

    def _emit(self, force: bool = False) -> None:
        if self._emf is not None and self.watch is not None:
            self._emf.maybe_emit(self.watch, self._clock(), self._behind, force=force)

    def _user_record(self, raw: Any) -> UserRecord:
        millis = raw.timestamp_millis
        record = UserRecord(
            shard_id=self.shard_id,
            sequence_number=raw.sequence_number,
            sub_sequence_number=int(raw.sub_sequence_number or 0),
            partition_key=raw.partition_key,
            explicit_hash_key=None,
            arrival=millis / 1000 if millis is not None else self._clock(),
            data=raw.binary_data,
            ordinal=self._ordinal,
        )
        self._ordinal += 1
        return record


# -- the process the daemon starts ------------------------------------------------------------------------------------


def build(settings: WatcherSettings) -> WatchRecordProcessor:
    """The record processor with its real clients; AwsError when one cannot be made or the stream not described."""
    from streamwreck.checker.reconciling import ReconcileApi
    from streamwreck.core.aws import AWS_ERRORS, dynamodb_client, kinesis_client, session, translate
    from streamwreck.watcher.evidence import ConsumerLeases, retention_seconds

    kinesis = kinesis_client(max_connections=2)
    consumer = ConsumerLeases(dynamodb_client(), kinesis, settings.kcl_app, settings.stream_name)
    sns = None
    if settings.lost_topic_arn:
        try:
            sns = session().client("sns", region_name=settings.region)
        except AWS_ERRORS as exc:
            raise translate(exc, "creating the SNS client") from exc
    export = Path(settings.export_file) if settings.export_file else None
    reporter = LostReporter(
        settings.stream_name,
        retention_seconds(kinesis, settings.stream_name),
        export,
        sns,
        settings.lost_topic_arn,
        settings.worker_id,
    )
    api = ReconcileApi(settings.api_url, settings.api_key, max_connections=2)
    metrics = ShardMetrics(settings.stream_name) if settings.metrics_dir else None
    stderr = sys.stderr
    emf = Emf(settings.emf_namespace, settings.stream_name, settings.emf_seconds, stderr.write)
    return WatchRecordProcessor(settings, api, consumer, reporter, metrics=metrics, emf=emf)


def main() -> int:
    """Entry point of the record processor process; the daemon talks to it over stdin/stdout."""
    try:
        settings = load_settings(WatcherSettings)
        logs.configure(settings.log_level)
        record_processor = build(settings)
    except (ConfigError, AwsError) as exc:
        print(f"streamwreck watch record processor: error: {exc}", file=sys.stderr)
        return 2
    return serve(record_processor)


if __name__ == "__main__":
    sys.exit(main())
