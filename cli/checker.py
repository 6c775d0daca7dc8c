"""``streamwreck check``: read every record of a stream and say which ones the consumer did not process.

The parts, each in its own module: reading (shards, limits, iterators, de-aggregation), reconciling (the API,
batched and pipelined while reading), verdict (the pure rules), leases (the KCL checkpoints), tally (running
totals), report (table, JSON, CSV, HTML), remediation (--export, --redrive-to), progress (the terminal display).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamwreck.core.aws import require
from streamwreck.core.errors import ConfigError, StreamwreckError

require("httpx", "rich", "aws_kinesis_agg")  # the `cli` extra: imported where used, so that --help stays fast

DEFAULT_ENDPOINT = "http://127.0.0.1:8000"
DEFAULT_BATCH = 2500
DEFAULT_CONCURRENCY = 8
DEFAULT_SETTLE = 5.0
MAX_BATCH = 10_000
PIPELINE_DEPTH = 4  # reconcile requests in flight at once

DESCRIPTION = """\
Read every shard of a Kinesis stream (open and closed, parents before children, aggregated records as their user
records), ask the reconcile API which records the ledger has no entry for, and report each record that was not
simply processed:

  processed   the ledger holds it                     duplicate  processed more than once
  in_flight   the consumer has not got to it yet: beyond its checkpoint (--kcl-app), or on a shard the KCL has
              not leased yet while a parent's or sibling's lease shows the consumer coming, or arrived within --grace
  unknown     the evidence cannot tell: the ledger evicted entries, was flushed, restarted after the record
              arrived, or the record is older than the ledger's TTL; or (--kcl-app) the consumer's lease is still at
              LATEST, or its shard has no lease and no leased relative
  lost        none of the above and not in the ledger: the consumer skipped it

Records the ledger lacks get a second look --settle seconds (default 5) after the consumer's checkpoints were read
(or the check started): the processor checkpoints after publishing, and its events take a moment to reach the
ledger through SNS, SQS and the recorder.

With --kcl-app, the lease table must be this stream's consumer's: a table with no lease for any of the stream's
shards, or with leases that name shards, parents or hash ranges the stream does not have, is an error (exit 2).

Closed shards are read to their end; open shards until caught up, or to the first record that arrived after
--until (default: when the check started). Each shard is read within its Kinesis limits (5 reads/s, 2 MB/s),
backing off when throttled, renewing expired iterators where it stopped. Batches go to the API while reading.

verdict and exit code:
  0  clean       nothing lost, nothing unknown
  1  gaps        records were lost (also duplicates, with --fail-on-duplicates)
  2  error       bad usage; the stream, the API or AWS could not be reached; the API's answer made no sense; the
                 lease table is not this stream's consumer's: one line on stderr
  3  unreliable  nothing proven lost, but the evidence cannot vouch for some records (unknown)

environment:
  STREAMWRECK_API_URL       the reconcile API (default http://127.0.0.1:8000); --endpoint overrides it
  STREAMWRECK_API_KEY       sent as X-Api-Key; --api-key overrides it
  STREAMWRECK_STREAM_NAME   the stream, when --stream is not given
  AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL, AWS_REGION, AWS_PROFILE, ...  boto3's usual variables

examples:
  streamwreck check --stream orders
  streamwreck check --stream orders --kcl-app orders-consumer --format html --output report.html
  streamwreck check --stream orders --since 2h --format json --output report.json --export lost.jsonl
  streamwreck check --stream orders --redrive-to orders        # put the lost records back for reprocessing"""


def describe(name: str) -> str:
    return DESCRIPTION


# ---------------------------------------------------------------------------------------------------- arguments

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now: float | None = None) -> float:
    """An ISO 8601 time (UTC unless it says otherwise) or a duration ago (90s, 30m, 2h, 7d) as Unix seconds."""
    match = _DURATION.match(text.strip())
    if match:
        return (time.time() if now is None else now) - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time (2026-11-27T16:00:00Z) or a duration ago (30m, 2h, 7d), got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _bounded(low: int, high: int) -> Any:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {number}")
        return number

    return parse


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return number


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    what = parser.add_argument_group("what to check")
    what.add_argument("--stream", help="the Kinesis stream (default: $STREAMWRECK_STREAM_NAME)")
    what.add_argument(
        "--shard", action="append", default=[], metavar="SHARD_ID", help="check only this shard (repeatable)"
    )
    what.add_argument("--since", type=parse_when, metavar="TIME", help="start at records that arrived at TIME or later")
    what.add_argument(
        "--until", type=parse_when, metavar="TIME", help="stop at records that arrived after TIME (default: now)"
    )
    judging = parser.add_argument_group("how to judge")
    judging.add_argument(
        "--grace",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="records younger than this are in_flight, not lost (default 60)",
    )
    judging.add_argument(
        "--settle",
        type=_seconds,
        default=DEFAULT_SETTLE,
        metavar="SECONDS",
        help="look again at records missing from the ledger no sooner than this after the checkpoints were read (or "
        f"the check started), for the recorder to catch up with the consumer (default {DEFAULT_SETTLE:g}; 0: at once)",
    )
    judging.add_argument(
        "--kcl-app",
        metavar="NAME",
        help="the consumer's KCL application name (its DynamoDB lease table): records beyond its checkpoints are "
        "in_flight",
    )
    judging.add_argument(
        "--fail-on-duplicates", action="store_true", help="exit 1 when records were processed more than once"
    )
    api = parser.add_argument_group("reconcile API")
    api.add_argument("--endpoint", metavar="URL", help=f"its URL (default: $STREAMWRECK_API_URL or {DEFAULT_ENDPOINT})")
    api.add_argument("--api-key", metavar="KEY", help="sent as X-Api-Key (default: $STREAMWRECK_API_KEY)")
    api.add_argument(
        "--batch-size",
        type=_bounded(1, MAX_BATCH),
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"records per request (default {DEFAULT_BATCH}; larger than the server allows is split)",
    )
    api.add_argument(
        "--concurrency",
        type=_bounded(1, 64),
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"shards read at once (default {DEFAULT_CONCURRENCY})",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--format",
        choices=("table", "json", "csv", "html"),
        default="table",
        help="table (default), json, csv (the records not processed) or html (one page with a chart per shard)",
    )
    output.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the report here (default stdout)")
    output.add_argument("--quiet", "-q", action="store_true", help="no progress display, no summary on stderr")
    remedy = parser.add_argument_group("remediation")
    remedy.add_argument(
        "--export", type=Path, metavar="FILE", help="write the lost records with payloads as JSON lines (base64 data)"
    )
    remedy.add_argument(
        "--redrive-to", metavar="STREAM", help="put the lost records onto STREAM with their partition keys"
    )


# ---------------------------------------------------------------------------------------------------- the command


def run(args: argparse.Namespace) -> int:
    stream = args.stream or os.environ.get("STREAMWRECK_STREAM_NAME")
    if not stream:
        raise ConfigError("--stream is required (or set STREAMWRECK_STREAM_NAME)")
    if args.since is not None and args.until is not None and args.until <= args.since:
        raise ConfigError("--until must be after --since")
    endpoint = args.endpoint or os.environ.get("STREAMWRECK_API_URL") or DEFAULT_ENDPOINT
    if not re.match(r"^https?://", endpoint):
        raise ConfigError(f"--endpoint must be an http:// or https:// URL, got {endpoint!r}")
    api_key = args.api_key or os.environ.get("STREAMWRECK_API_KEY") or None
    check = Check(
        stream=stream,
        endpoint=endpoint,
        api_key=api_key,
        shards=args.shard,
        since=args.since,
        until=args.until,
        grace=args.grace,
        settle=args.settle,
        kcl_app=args.kcl_app,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        fail_on_duplicates=args.fail_on_duplicates,
        quiet=args.quiet,
    )
    document = check.run()
    _write_report(document, args.format, args.output)
    lost = check.lost_records()
    if args.export:
        from streamwreck.checker.remediation import export

        export(args.export, stream, lost)
        _say(args.quiet, f"exported {len(lost):,} lost records to {args.export}")
    if args.redrive_to and lost:
        from streamwreck.checker.remediation import redrive

        redrive(check.kinesis, args.redrive_to, lost)
        _say(args.quiet, f"redrove {len(lost):,} lost records to {args.redrive_to}")
    if args.output or args.format != "table":
        from streamwreck.checker.report import headline

        _say(args.quiet, headline(document))
    code: int = document["exit_code"]
    return code


def _say(quiet: bool, line: str) -> None:
    if not quiet:
        print(line, file=sys.stderr)


def _write_report(document: dict[str, Any], fmt: str, output: Path | None) -> None:
    from streamwreck.checker.report import render

    if output is None:
        tty = sys.stdout.isatty()
        width = os.get_terminal_size().columns if tty else None
        sys.stdout.write(render(document, fmt, width=width, color=tty))
        sys.stdout.flush()
        return
    try:
        output.write_text(render(document, fmt), encoding="utf-8")
    except OSError as exc:
        raise StreamwreckError(f"cannot write --output {output}: {exc.strerror or exc}") from None


def settle_until(
    moment: float, clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Wait until the clock reads ``moment`` (Unix seconds); at once if it has passed."""
    while (remaining := moment - clock()) > 0:
        sleep(min(remaining, 1.0))


class Check:
    """One run of the checker, from listing the shards to the report document."""

    def __init__(
        self,
        *,
        stream: str,
        endpoint: str,
        api_key: str | None = None,
        shards: Sequence[str] = (),
        since: float | None = None,
        until: float | None = None,
        grace: float = 60.0,
        settle: float = DEFAULT_SETTLE,
        kcl_app: str | None = None,
        batch_size: int = DEFAULT_BATCH,
        concurrency: int = DEFAULT_CONCURRENCY,
        fail_on_duplicates: bool = False,
        quiet: bool = True,
        kinesis: Any = None,
    ) -> None:
        from streamwreck.core.aws import kinesis_client

        self.stream = stream
        self.endpoint = endpoint
        self.api_key = api_key
        self.wanted = list(shards)
        self.since = since
        self.until = until
        self.grace = grace
        self.settle = settle
        self.kcl_app = kcl_app
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.fail_on_duplicates = fail_on_duplicates
        self.quiet = quiet
        self.kinesis = kinesis or kinesis_client(max_connections=concurrency + 4)
        self.tally: Any = None

    def run(self) -> dict[str, Any]:
        from streamwreck.checker import leases, report
        from streamwreck.checker.reading import (
            ReadStats,
            Shard,
            ShardReader,
            in_read_order,
            list_shards,
            read_all,
            select,
        )
        from streamwreck.checker.reconciling import Answer, Pipeline, ReconcileApi
        from streamwreck.checker.tally import Tally, key_of
        from streamwreck.checker.verdict import judge
        from streamwreck.cli import progress

        started = time.time()
        until = self.until if self.until is not None else started
        items = None
        evidence_at = started  # when the evidence that makes a record lost was taken: the second look settles after it
        if self.kcl_app:
            from streamwreck.core.aws import dynamodb_client

            # The leases before the shards: every shard a lease names existed before the listing, so the listing
            # has it (a split between the two would otherwise look like a lease on a shard the stream lacks).
            items = leases.read_leases(dynamodb_client(), self.kcl_app)
            evidence_at = time.time()
        every = in_read_order(list_shards(self.kinesis, self.stream))
        shards = select(every, self.wanted, self.stream)
        checkpoints = None
        if items is not None and self.kcl_app:
            created = (
                leases.creation_epoch(self.kinesis, self.stream) if leases.multi_stream(items, self.stream) else None
            )
            checkpoints = leases.verified_checkpoints(items, self.stream, every, self.kcl_app, created)

        api = ReconcileApi(self.endpoint, self.api_key, max_connections=PIPELINE_DEPTH + 1)
        tally = self.tally = Tally(shard.shard_id for shard in shards)
        stop = threading.Event()
        stats: dict[str, ReadStats] = {}
        grace = self.grace

        def judged(batch: Sequence[Any], answer: Answer, revise: bool = False) -> None:
            if not revise and not answer.unprocessed and not answer.duplicates:
                tally.add_processed(batch, answer.ledger)
                return
            view = answer.view
            counts = [answer.count(key_of(record)) for record in batch]
            judgements = [
                judge(
                    arrival=record.arrival,
                    sequence_number=record.sequence_number,
                    sub_sequence_number=record.sub_sequence_number,
                    count=count,
                    checkpoint=checkpoints.get(record.shard_id) if checkpoints is not None else None,
                    ledger=view,
                    now=answer.received_at,
                    grace=grace,
                )
                for record, count in zip(batch, counts, strict=True)
            ]
            if revise:
                for record, judgement, count in zip(batch, judgements, counts, strict=True):
                    tally.revise(key_of(record), judgement, count, answer.ledger)
            else:
                tally.add(batch, judgements, counts, answer.ledger)

        try:
            # Ask once before reading: an unreachable API or a down ledger fails now, not after reading everything.
            tally.ledger = api.reconcile(self.stream, []).ledger
            with progress.choose(self.quiet, [s.shard_id for s in shards], self.stream) as display:

                def on_answer(batch: Sequence[Any], answer: Answer) -> None:
                    judged(batch, answer)
                    display.reconciled(len(batch))

                pipeline = Pipeline(api, self.stream, self.batch_size, PIPELINE_DEPTH, on_answer, stop)

                def read_one(shard: Shard) -> None:
                    reader = ShardReader(self.kinesis, self.stream, shard, since=self.since, until=until, stop=stop)
                    stats[shard.shard_id] = reader.stats
                    display.shard_started(shard.shard_id)
                    for page in reader.pages():
                        pipeline.add(page)
                        display.shard_read(shard.shard_id, len(page))
                    pipeline.flush()
                    display.shard_finished(shard.shard_id, reader.stats.ended)

                try:
                    read_all(shards, read_one, self.concurrency, stop)
                    pipeline.finish()
                except BaseException:
                    pipeline.abort()
                    if pipeline.error is not None:
                        raise pipeline.error from None
                    raise
            # A second look at the lost, once the recorder has had --settle seconds since the evidence was taken
            # to catch up with what the consumer had checkpointed (it checkpoints after publishing).
            lost = [finding.record for finding in tally.lost()]
            if lost:
                settle_until(evidence_at + self.settle)
            for start in range(0, len(lost), self.batch_size):
                chunk = lost[start : start + self.batch_size]
                judged(chunk, api.reconcile(self.stream, chunk), revise=True)
        finally:
            api.close()
        finished = time.time()
        return report.build(
            stream=self.stream,
            shards=shards,
            stats=stats,
            tally=tally,
            checkpoints=checkpoints,
            options={
                "endpoint": self.endpoint,
                "shards": self.wanted or None,
                "since": report.iso(self.since),
                "until": report.iso(until),
                "grace_seconds": self.grace,
                "settle_seconds": self.settle,
                "kcl_app": self.kcl_app,
                "batch_size": self.batch_size,
                "concurrency": self.concurrency,
                "fail_on_duplicates": self.fail_on_duplicates,
            },
            started=started,
            finished=finished,
            fail_on_duplicates=self.fail_on_duplicates,
        )

    def lost_records(self) -> list[Any]:
        """The lost records with their payloads, in shard and sequence order (after :meth:`run`)."""
        if self.tally is None:
            return []
        lost = [finding.record for finding in self.tally.lost()]
        return sorted(lost, key=lambda r: (r.shard_id, int(r.sequence_number), r.sub_sequence_number))
