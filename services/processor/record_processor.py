"""The record processor: the KCL MultiLangDaemon runs this module once per shard lease
(``python -m streamwreck.processor.record_processor``) and talks to it over stdin/stdout (amazon-kclpy's v3 interface).

It is a thin adapter around :mod:`streamwreck.processor.processor` (what to publish, when to checkpoint) and the event
publisher (:mod:`streamwreck.core.publisher`):

- stdout is the daemon's protocol; every log line goes to stderr (and a stray ``print`` in a user's function is sent
  to stderr too).
- Events are published before the checkpoint moves past their records. amazon-kclpy's ``KCLProcess`` swallows
  exceptions raised in ``process_records``, and a later checkpoint would then skip the failed records: so nothing is
  let out. When publishing still fails after the publisher's retries, the process ends at once (``os._exit``) with
  :data:`EXIT_UNPUBLISHED`; the daemon then stops with a non-zero status, and the orchestrator's restart resumes
  from the last checkpoint, which never passes an unpublished record. A record processor still retrying when the
  daemon has gone ends the same way (:func:`unless_orphaned`). Any other exception is a bug: it ends the process with
  :data:`EXIT_BUG` and its traceback in the log.
- At shard end the processor publishes what it holds and checkpoints (else the child shards never start); after a
  lost lease it never checkpoints.
- With ``STREAMWRECK_PROCESSOR_METRICS_PORT`` set it records its shard's Prometheus metrics
  (:mod:`streamwreck.processor.metrics`) for the launcher to serve.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from amazon_kclpy import kcl
from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v3 import processor as kcl_v3

from streamwreck.core import heartbeat, logs
from streamwreck.core.errors import AwsError, ConfigError, StreamwreckError
from streamwreck.core.events import Pair
from streamwreck.core.settings import ProcessorSettings, load_settings
from streamwreck.processor.metrics import CountedSns, Metrics, NoMetrics, ShardMetrics
from streamwreck.processor.processor import (
    Flush,
    ProcessFunction,
    Record,
    ShardProgress,
    choose_function,
    run_batch,
    summarize_failures,
)

if TYPE_CHECKING:
    from streamwreck.core.publisher import EventPublisher

# Named, not __name__: the daemon runs this module as __main__.
logger = logging.getLogger("streamwreck.processor.record_processor")

EXIT_UNPUBLISHED = 75  # EX_TEMPFAIL: events could not be published; restart from the last checkpoint
EXIT_HALTED = 76  # the processing function raised a TransientError; restart from the last checkpoint
EXIT_BUG = 70  # EX_SOFTWARE: an unexpected error in the record processor

# Checkpoint errors (the KCL exception's simple name, as the daemon reports it) worth another try.
RETRYABLE_CHECKPOINT_ERRORS = frozenset({"ThrottlingException", "KinesisClientLibDependencyException"})
CHECKPOINT_ATTEMPTS = 5
CHECKPOINT_BASE_DELAY = 0.5


class Publisher(Protocol):
    """What the record processor publishes with; it raises a StreamwreckError (PublishError, ...) when it gives up."""

    def publish(self, stream: str, shard_id: str, records: Iterable[Pair]) -> Any: ...


def hard_exit(code: int) -> NoReturn:
    """End the record processor now, whatever amazon-kclpy would catch; logs are flushed first."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)


def unless_orphaned(sleep: Callable[[float], None] = time.sleep) -> Callable[[float], None]:
    """The publisher's sleep between attempts, ending this record processor once the daemon that started it has
    exited (the process was re-parented): nothing it publishes now can be checkpointed, so a late publish would
    only duplicate what the restarted consumer publishes again from the last checkpoint."""
    daemon = os.getppid()

    def guarded(seconds: float) -> None:
        sleep(seconds)
        if os.getppid() != daemon:
            logger.warning("daemon_gone_exiting", extra={"daemon_pid": daemon, "exit_code": EXIT_UNPUBLISHED})
            hard_exit(EXIT_UNPUBLISHED)

    return guarded


class StreamwreckRecordProcessor(kcl_v3.RecordProcessorBase):
    """amazon-kclpy v3 record processor for one shard lease."""

    def __init__(
        self,
        stream: str,
        publisher: Publisher,
        function: ProcessFunction,
        *,
        progress: ShardProgress | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        exit: Callable[[int], Any] = hard_exit,
        checkpoint_attempts: int = CHECKPOINT_ATTEMPTS,
        checkpoint_delay: float = CHECKPOINT_BASE_DELAY,
        metrics: Metrics | None = None,
    ) -> None:
        self.stream = stream
        self.shard_id = "?"
        self._publisher = publisher
        self._function = function
        self._progress = progress or ShardProgress()
        self._clock = clock
        self._sleep = sleep
        self._exit = exit
        self._checkpoint_attempts = checkpoint_attempts
        self._checkpoint_delay = checkpoint_delay
        self._can_checkpoint = True
        self._processor_metrics = metrics or NoMetrics()
        self._unchecked_since: float | None = None  # when the oldest record read and not checkpointed was read

    # -- the five lifecycle methods -------------------------------------------------------------------------------

    def initialize(self, initialize_input: Any) -> None:
        self.shard_id = initialize_input.shard_id
        self._processor_metrics.start(self.shard_id)
        logger.info(
            "shard_initialized",
            extra={
                "shard_id": self.shard_id,
                "sequence_number": initialize_input.sequence_number,
                "sub_sequence_number": initialize_input.sub_sequence_number,
            },
        )

    def process_records(self, process_records_input: Any) -> None:
        heartbeat.touch()  # the KCL calls this on every poll, records or not (callProcessRecordsEvenForEmptyRecordList)
        self._guarded(self._process_records, process_records_input)

    def lease_lost(self, lease_lost_input: Any) -> None:
        self._guarded(self._lease_lost, lease_lost_input)

    def shard_ended(self, shard_ended_input: Any) -> None:
        self._guarded(self._shard_ended, shard_ended_input)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        self._guarded(self._shutdown_requested, shutdown_requested_input)

    # -- behaviour ------------------------------------------------------------------------------------------------

    def _guarded(self, method: Callable[[Any], None], message: Any) -> None:
        """Nothing may escape to KCLProcess, which would log it and carry on as if the batch had been handled: what
        gets here is a bug (the publisher's own errors are handled below), and it ends the process."""
        try:
            method(message)
        except Exception:
            logger.critical("record_processor_failed", extra={"shard_id": self.shard_id}, exc_info=True)
            self._exit(EXIT_BUG)

    def _process_records(self, process_records_input: Any) -> None:
        read_at = self._clock()
        records = [to_record(self.shard_id, raw) for raw in process_records_input.records]
        result = run_batch(records, self._function)
        self._progress.add(result, self._clock())
        self._processor_metrics.handled(len(result.processed), len(result.skipped), len(result.failed))
        self._processor_metrics.behind_latest(process_records_input.millis_behind_latest)
        if result.last is not None and self._unchecked_since is None:
            self._unchecked_since = read_at
        if records:
            logger.debug(
                "batch_received",
                extra={"shard_id": self.shard_id, "records": len(records), "pending": self._progress.pending},
            )
        if result.failed:
            logger.warning(
                "records_failed",
                extra={
                    "shard_id": self.shard_id,
                    "count": len(result.failed),
                    "sample": summarize_failures(result.failed),
                },
            )
        if result.halted is not None:
            (seq, sub), error = result.halted
            where = {"shard_id": self.shard_id, "sequence_number": seq, "sub_sequence_number": sub}
            logger.error("processing_halted", extra={**where, "error": str(error)})
            self._flush(process_records_input.checkpointer)
            self._exit(EXIT_HALTED)
            return
        at_tip = not process_records_input.millis_behind_latest  # 0, or not reported
        if self._progress.due(self._clock(), at_tip=at_tip):
            self._flush(process_records_input.checkpointer)
        self._report_lag()

    def _lease_lost(self, _lease_lost_input: Any) -> None:
        # Another worker owns the shard now and resumes from the last checkpoint: report what was processed here
        # (it happened), but never checkpoint. A failure to publish loses nothing, the new owner processes it again.
        self._can_checkpoint = False
        flush = self._progress.take()
        logger.info("lease_lost", extra={"shard_id": self.shard_id, "unpublished": len(flush.records)})
        if flush.records:
            try:
                self._publish(flush)
            except StreamwreckError as exc:
                self._processor_metrics.publish_error()
                logger.warning("lease_lost_publish_failed", extra={"shard_id": self.shard_id, "error": str(exc)})

    def _shard_ended(self, shard_ended_input: Any) -> None:
        flush = self._progress.take()
        self._publish_or_exit(flush)
        # At shard end the checkpoint must be the end of the shard (no arguments): the children start after it.
        self._checkpoint(shard_ended_input.checkpointer, None)
        logger.info("shard_ended", extra={"shard_id": self.shard_id})

    def _shutdown_requested(self, shutdown_requested_input: Any) -> None:
        logger.info("shutdown_requested", extra={"shard_id": self.shard_id})
        if self._progress.unflushed:
            self._flush(shutdown_requested_input.checkpointer)

    def _flush(self, checkpointer: Any) -> None:
        flush = self._progress.take()
        self._publish_or_exit(flush)
        if flush.checkpoint is not None:
            self._checkpoint(checkpointer, flush.checkpoint)

    def _publish_or_exit(self, flush: Flush) -> None:
        if not flush.records:
            return
        try:
            self._publish(flush)
        except StreamwreckError as exc:  # the publisher gave up (PublishError) or was refused (RejectedInputError)
            first, last = flush.records[0], flush.records[-1]
            logger.critical(
                "publish_failed_exiting",
                extra={
                    "shard_id": self.shard_id,
                    "unpublished": len(flush.records),
                    "first": list(first),
                    "last": list(last),
                    "error": f"{type(exc).__name__}: {exc}",
                    "exit_code": EXIT_UNPUBLISHED,
                },
            )
            self._processor_metrics.publish_error()
            self._exit(EXIT_UNPUBLISHED)
            raise  # only reached when the exit seam returns (tests): never checkpoint after a failed publish

    def _publish(self, flush: Flush) -> None:
        report = self._publisher.publish(self.stream, self.shard_id, flush.records)
        self._processor_metrics.published(len(flush.records), getattr(report, "events", None))
        logger.info(
            "records_published",
            extra={
                "shard_id": self.shard_id,
                "records": len(flush.records),
                "skipped": flush.skipped,
                "failed": flush.failed,
                "events": getattr(report, "events", None),
                "requests": getattr(report, "requests", None),
            },
        )

    def _checkpoint(self, checkpointer: Any, position: Pair | None) -> bool:
        """Checkpoint at ``position`` (None: the end of the shard); True if the daemon stored it."""
        if not self._can_checkpoint:
            return False
        seq, sub = position if position is not None else (None, None)
        for attempt in range(1, self._checkpoint_attempts + 1):
            try:
                checkpointer.checkpoint(seq, sub)
            except CheckpointError as exc:
                error = str(exc.value)
                extra = {"shard_id": self.shard_id, "sequence_number": seq, "attempt": attempt, "error": error}
                if error in RETRYABLE_CHECKPOINT_ERRORS and attempt < self._checkpoint_attempts:
                    logger.warning("checkpoint_retry", extra=extra)
                    self._sleep(self._checkpoint_delay * 2 ** (attempt - 1))
                    continue
                if error == "ShutdownException":  # the lease is gone or going: no checkpoint will succeed
                    self._can_checkpoint = False
                # The events are published; the next checkpoint covers these records, or they are processed again.
                logger.warning("checkpoint_failed", extra=extra)
                return False
            self._processor_metrics.checkpointed()
            self._unchecked_since = None  # each checkpoint is at the last record read (the process is one thread)
            self._report_lag()
            logger.info(
                "checkpointed",
                extra={
                    "shard_id": self.shard_id,
                    "sequence_number": seq or "SHARD_END",
                    "sub_sequence_number": sub,
                },
            )
            return True
        return False

    def _report_lag(self) -> None:
        since = self._unchecked_since
        self._processor_metrics.checkpoint_lag(0.0 if since is None else self._clock() - since)


def to_record(shard_id: str, raw: Any) -> Record:
    """An amazon-kclpy message record -> :class:`Record`."""
    return Record(
        shard_id=shard_id,
        sequence_number=raw.sequence_number,
        sub_sequence_number=int(raw.sub_sequence_number or 0),
        partition_key=raw.partition_key,
        data=raw.binary_data,
        approximate_arrival_ms=raw.timestamp_millis,
    )


# -- the process the daemon starts ------------------------------------------------------------------------------------


def make_publisher(settings: ProcessorSettings, metrics: Metrics | None = None) -> EventPublisher:
    """The SNS publisher (its requests counted in ``metrics``); AwsError when botocore cannot make the client (no
    region, a bad profile, ...)."""
    # boto3 is imported here, not at the top: `streamwreck processor` imports this module to name it, and every
    # streamwreck command builds its parser from the command modules.
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError

    from streamwreck.core.aws import translate
    from streamwreck.core.publisher import EventPublisher

    # The publisher retries with backoff itself; botocore adds one quick retry and bounded timeouts.
    config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3, read_timeout=15)
    try:
        sns = boto3.client("sns", region_name=settings.region, config=config)
    except BotoCoreError as exc:
        raise translate(exc, "creating the SNS client") from exc
    counted = CountedSns(sns, metrics) if metrics is not None else sns
    return EventPublisher(
        counted, settings.topic_arn, settings.worker_id, attempts=settings.publish_attempts, sleep=unless_orphaned()
    )


def main() -> int:
    """Entry point of the record processor process; the daemon talks to it over stdin/stdout."""
    try:
        settings = load_settings(ProcessorSettings)
        logs.configure(settings.log_level)
        heartbeat.configure(settings.heartbeat_file)
        function = choose_function(settings.process_function, settings.skip_every)
        # The launcher serves them, from the folder it set in PROMETHEUS_MULTIPROC_DIR (before any import of
        # prometheus_client here).
        metrics = ShardMetrics(settings.stream_name) if settings.processor_metrics_port else None
        publisher = make_publisher(settings, metrics)
    except ConfigError as exc:
        print(f"streamwreck record processor: configuration error: {exc}", file=sys.stderr)
        return 2
    except AwsError as exc:
        print(f"streamwreck record processor: error: {exc}", file=sys.stderr)
        return 2
    progress = ShardProgress(flush_records=settings.publish_flush_records, flush_seconds=settings.publish_flush_seconds)
    return serve(
        StreamwreckRecordProcessor(settings.stream_name, publisher, function, progress=progress, metrics=metrics)
    )


def serve(record_processor: Any) -> int:
    """Speak the MultiLangDaemon's protocol on stdin/stdout until the daemon ends this process (the processor's and
    the watcher's record processors alike)."""
    # The daemon decides when this process ends (graceful shutdown, then end of input): a Ctrl-C that reaches the
    # whole process group must not kill it before it has published and checkpointed what it holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol_out = sys.stdout
    sys.stdout = sys.stderr  # a stray print() must not corrupt the daemon's protocol
    kcl.KCLProcess(record_processor, input_file=sys.stdin, output_file=protocol_out, error_file=sys.stderr).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
