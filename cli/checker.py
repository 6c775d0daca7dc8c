"""``streamwreck check``: the command line of the checker engine (:mod:`streamwreck.checker`).

Parse the arguments, run :class:`~streamwreck.checker.check.Check`, print its report, and exit with the verdict's
code. Everything the check does — reading, reconciling, leases, the verdict, the report — lives in the engine.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from streamwreck.checker import DEFAULT_BATCH, DEFAULT_CONCURRENCY, DEFAULT_GRACE, DEFAULT_SETTLE, MAX_BATCH
from streamwreck.cli.arguments import seconds, when, whole
from streamwreck.core.aws import require
from streamwreck.core.errors import ConfigError
from streamwreck.core.settings import DEFAULT_API_URL, CheckerSettings, load_settings

require("httpx", "rich", "aws_kinesis_agg")  # the `cli` extra: imported where used, so that --help stays fast

DESCRIPTION = """\
Read every shard of a Kinesis stream (open and closed, parents before children, aggregated records as their user
records), ask the reconcile API which records the ledger has no entry for, and report each record that was not
simply processed:

  processed   the ledger holds it                     duplicate  processed more than once
  in_flight   the consumer has not got to it yet: beyond its checkpoint (--kcl-app), or on a shard the KCL has
              not leased yet while a parent's or sibling's lease shows the consumer coming, or arrived within --grace
  unknown     the evidence cannot tell: the ledger evicted entries, was flushed, restarted after the record
              arrived, or the record is older than the ledger's TTL; or (--kcl-app) the consumer's lease is still at
              LATEST, or its shard has no lease and no leased relative; or (--dead-letter-queue) its processed
              event is in the recorder's dead-letter queue: processed, not recorded (streamwreck redrive-dlq)
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
  STREAMWRECK_DEAD_LETTER_QUEUE_URL  the recorder's dead-letter queue, when --dead-letter-queue is not given
  AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, AWS_PROFILE, ...  boto3's usual variables

examples:
  streamwreck check --stream orders
  streamwreck check --stream orders --kcl-app orders-consumer --format html --output report.html
  streamwreck check --stream orders --since 2h --format json --output report.json --export lost.jsonl
  streamwreck check --stream orders --redrive-to orders        # put the lost records back for reprocessing"""


def describe(name: str) -> str:
    return DESCRIPTION


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    what = parser.add_argument_group("what to check")
    what.add_argument("--stream", help="the Kinesis stream (default: $STREAMWRECK_STREAM_NAME)")
    what.add_argument(
        "--shard", action="append", default=[], metavar="SHARD_ID", help="check only this shard (repeatable)"
    )
    what.add_argument("--since", type=when, metavar="TIME", help="start at records that arrived at TIME or later")
    what.add_argument(
        "--until", type=when, metavar="TIME", help="stop at records that arrived after TIME (default: now)"
    )
    judging = parser.add_argument_group("how to judge")
    judging.add_argument(
        "--grace",
        type=seconds,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help=f"records younger than this are in_flight, not lost (default {DEFAULT_GRACE:g})",
    )
    judging.add_argument(
        "--settle",
        type=seconds,
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
        "--dead-letter-queue",
        metavar="URL",
        help="the recorder's dead-letter queue (default: $STREAMWRECK_DEAD_LETTER_QUEUE_URL): records its processed "
        "events name are unknown (processed, not recorded), not lost; peeked, never consumed",
    )
    judging.add_argument(
        "--fail-on-duplicates", action="store_true", help="exit 1 when records were processed more than once"
    )
    api = parser.add_argument_group("reconcile API")
    api.add_argument("--endpoint", metavar="URL", help=f"its URL (default: $STREAMWRECK_API_URL or {DEFAULT_API_URL})")
    api.add_argument("--api-key", metavar="KEY", help="sent as X-Api-Key (default: $STREAMWRECK_API_KEY)")
    api.add_argument(
        "--batch-size",
        type=whole(1, MAX_BATCH),
        default=DEFAULT_BATCH,
        metavar="N",
        help=f"records per request (default {DEFAULT_BATCH}; larger than the server allows is split)",
    )
    api.add_argument(
        "--concurrency",
        type=whole(1, 64),
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


def run(args: argparse.Namespace) -> int:
    from streamwreck.checker.check import Check
    from streamwreck.cli import progress

    settings = load_settings(CheckerSettings)
    stream = args.stream or settings.stream_name
    if not stream:
        raise ConfigError("--stream is required (or set STREAMWRECK_STREAM_NAME)")
    if args.since is not None and args.until is not None and args.until <= args.since:
        raise ConfigError("--until must be after --since")
    endpoint = args.endpoint or settings.api_url
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"--endpoint must be an http:// or https:// URL, got {endpoint!r}")
    check = Check(
        stream=stream,
        endpoint=endpoint,
        api_key=args.api_key or settings.api_key,
        shards=args.shard,
        since=args.since,
        until=args.until,
        grace=args.grace,
        settle=args.settle,
        kcl_app=args.kcl_app,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        fail_on_duplicates=args.fail_on_duplicates,
        dead_letter_queue=args.dead_letter_queue or settings.dead_letter_queue_url,
        progress=lambda shard_ids, name: progress.choose(args.quiet, shard_ids, name),
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
        raise ConfigError(f"cannot write --output {output}: {exc.strerror or exc}") from None
