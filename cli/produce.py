"""``streamwreck produce``: write test records to a stream, plain or KPL-aggregated, and say what was written."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from streamwreck.checker.producer import Produced, produce
from streamwreck.cli.arguments import number, whole
from streamwreck.core.aws import require
from streamwreck.core.errors import ConfigError

if TYPE_CHECKING:
    pass

require("aws_kinesis_agg")  # the `cli` extra: imported where used, so that --help stays fast

DESCRIPTION = """\
Write COUNT test records to a Kinesis stream and print what was written (per shard, or every record with
--format json). Each record's data is a small JSON document ({"n", "run", "at"}) padded to --size bytes; its
partition key is "<run>-<n>", so records spread over the shards.

With --aggregate, user records are packed KPL-style (the aws-kinesis-agg format: magic bytes, protobuf, MD5) into
Kinesis records of up to --per-aggregate user records each, grouped by the shard their partition keys hash to,
as the KPL does (the KCL drops user records that are not in the hash range of the shard they were read from).

The AWS endpoint comes from AWS_ENDPOINT_URL_KINESIS / AWS_ENDPOINT_URL, like every AWS client.

examples:
  streamwreck produce --stream demo --count 1000
  streamwreck produce --stream demo --count 5000 --aggregate --per-aggregate 50 --rate 500
  streamwreck produce --stream new-stream --create --shards 4 --count 100 --format json"""


def describe(name: str) -> str:
    return DESCRIPTION


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--stream", required=True, help="the stream to write to")
    parser.add_argument("--count", type=whole(1), required=True, help="how many (user) records to write")
    parser.add_argument("--aggregate", action="store_true", help="pack records KPL-style (aws-kinesis-agg format)")
    parser.add_argument(
        "--per-aggregate", type=whole(1), default=25, metavar="N", help="user records per aggregate (default 25)"
    )
    parser.add_argument(
        "--rate",
        type=number(0, above=True, what="records per second"),
        metavar="R",
        help="at most R records per second (default: as fast as it goes)",
    )
    parser.add_argument(
        "--size", type=whole(1), default=64, metavar="BYTES", help="bytes of data per record (default 64)"
    )
    parser.add_argument("--run-id", metavar="ID", help="names this run in partition keys and data (default: random)")
    parser.add_argument("--create", action="store_true", help="create the stream first if it does not exist")
    parser.add_argument("--shards", type=whole(1), default=1, help="with --create: the shard count (default 1)")
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="text: per shard; json: every record written"
    )


def run(args: argparse.Namespace) -> int:
    from streamwreck.core.aws import create_stream, kinesis_client

    if args.size > 1024 * 1024 - 256:
        raise ConfigError("--size: a Kinesis record holds at most 1 MiB")
    kinesis = kinesis_client()
    if args.create:
        create_stream(kinesis, args.stream, args.shards)
    produced = produce(
        kinesis,
        args.stream,
        args.count,
        aggregate=args.aggregate,
        per_aggregate=args.per_aggregate,
        rate=args.rate,
        size=args.size,
        run=args.run_id,
    )
    sys.stdout.write(render_json(produced) if args.format == "json" else render_text(produced))
    return 0


def render_text(produced: Produced) -> str:
    total = len(produced.records)
    rate = total / produced.seconds if produced.seconds else 0.0
    lines = [
        f"wrote {total:,} records in {produced.kinesis_records:,} Kinesis records to {produced.stream} "
        f"(run {produced.run}) in {produced.seconds:.1f}s ({rate:,.0f} records/s)"
    ]
    for shard_id, records in produced.by_shard().items():
        lines.append(
            f"  {shard_id}: {len(records):,} records, sequence numbers {records[0].sequence_number} .. "
            f"{records[-1].sequence_number}"
        )
    return "\n".join(lines) + "\n"


def render_json(produced: Produced) -> str:
    document = {
        "stream": produced.stream,
        "run": produced.run,
        "count": len(produced.records),
        "kinesis_records": produced.kinesis_records,
        "seconds": round(produced.seconds, 3),
        "records": [
            {
                "shard_id": r.shard_id,
                "sequence_number": r.sequence_number,
                "sub_sequence_number": r.sub_sequence_number,
                "partition_key": r.partition_key,
            }
            for r in produced.records
        ],
    }
    return json.dumps(document, indent=2) + "\n"
