"""``streamwreck produce``: write test records to a stream, plain or KPL-aggregated, and say what was written."""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from streamwreck.core.aws import require
from streamwreck.core.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

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

MAX_ENTRIES = 500


class Written(NamedTuple):
    shard_id: str
    sequence_number: str
    sub_sequence_number: int
    partition_key: str
    data: bytes


@dataclass
class Produced:
    stream: str
    run: str
    records: list[Written] = field(default_factory=list)
    kinesis_records: int = 0
    seconds: float = 0.0

    def by_shard(self) -> dict[str, list[Written]]:
        shards: dict[str, list[Written]] = defaultdict(list)
        for record in self.records:
            shards[record.shard_id].append(record)
        return dict(sorted(shards.items()))


def describe(name: str) -> str:
    return DESCRIPTION


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _rate(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected records per second, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return number


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--stream", required=True, help="the stream to write to")
    parser.add_argument("--count", type=_positive, required=True, help="how many (user) records to write")
    parser.add_argument("--aggregate", action="store_true", help="pack records KPL-style (aws-kinesis-agg format)")
    parser.add_argument(
        "--per-aggregate", type=_positive, default=25, metavar="N", help="user records per aggregate (default 25)"
    )
    parser.add_argument(
        "--rate", type=_rate, metavar="R", help="at most R records per second (default: as fast as it goes)"
    )
    parser.add_argument(
        "--size", type=_positive, default=64, metavar="BYTES", help="bytes of data per record (default 64)"
    )
    parser.add_argument("--run-id", metavar="ID", help="names this run in partition keys and data (default: random)")
    parser.add_argument("--create", action="store_true", help="create the stream first if it does not exist")
    parser.add_argument("--shards", type=_positive, default=1, help="with --create: the shard count (default 1)")
    parser.add_argument(
        "--format", choices=("text", "json"), default="text", help="text: per shard; json: every record written"
    )


def run(args: argparse.Namespace) -> int:
    from streamwreck.core.aws import kinesis_client

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


def create_stream(kinesis: KinesisClient, stream: str, shards: int, timeout: float = 60.0) -> None:
    """Create the stream (an existing one is fine) and wait until it is ACTIVE."""
    from streamwreck.core.aws import error_code, translate

    try:
        kinesis.create_stream(StreamName=stream, ShardCount=shards)
    except Exception as exc:
        if error_code(exc) != "ResourceInUseException":
            raise translate(exc, f"creating the stream {stream!r}") from exc
    deadline = time.monotonic() + timeout
    while True:
        try:
            status = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
        except Exception as exc:
            raise translate(exc, f"waiting for the stream {stream!r}", not_found=f"stream {stream!r}") from exc
        if status == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"stream {stream!r} is still {status} after {timeout:.0f}s")
        time.sleep(0.2)


def payloads(count: int, run: str, size: int) -> list[tuple[str, bytes]]:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    records = []
    for n in range(count):
        data = json.dumps({"n": n, "run": run, "at": at}).encode()
        records.append((f"{run}-{n}", data.ljust(size, b" ") if len(data) < size else data))
    return records


def produce(
    kinesis: KinesisClient,
    stream: str,
    count: int,
    *,
    aggregate: bool = False,
    per_aggregate: int = 25,
    rate: float | None = None,
    size: int = 64,
    run: str | None = None,
    records: Sequence[tuple[str, bytes]] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Produced:
    """Write ``count`` records (or the given (partition key, data) pairs); returns each with its shard and numbers."""
    from streamwreck.checker.aggregation import aggregate as pack
    from streamwreck.checker.aggregation import hash_key
    from streamwreck.checker.reading import list_shards
    from streamwreck.checker.remediation import batches, put_all

    run = run or uuid.uuid4().hex[:8]
    users = list(records) if records is not None else payloads(count, run, size)
    produced = Produced(stream=stream, run=run)
    started = time.monotonic()
    # Each entry to put, with the user records it carries.
    entries: list[tuple[dict[str, Any], list[tuple[str, bytes]]]] = []
    if aggregate:
        open_shards = [shard for shard in list_shards(kinesis, stream) if not shard.closed]
        groups: dict[str, list[tuple[str, bytes]]] = defaultdict(list)
        for key, data in users:
            hashed = hash_key(key)
            owner = next((s.shard_id for s in open_shards if s.owns(hashed)), open_shards[0].shard_id)
            groups[owner].append((key, data))
        for group in groups.values():
            start = 0
            for packed in pack(group, per_aggregate):
                entry: dict[str, Any] = {"Data": packed.data, "PartitionKey": packed.partition_key}
                if packed.explicit_hash_key:
                    entry["ExplicitHashKey"] = packed.explicit_hash_key
                entries.append((entry, group[start : start + packed.user_records]))
                start += packed.user_records
    else:
        entries = [({"Data": data, "PartitionKey": key}, [(key, data)]) for key, data in users]
    sent = 0
    index = 0
    per_request = MAX_ENTRIES
    if rate:  # about five requests a second, so that the rate holds within a second too
        per_request = max(1, min(MAX_ENTRIES, int(rate / 5 / (per_aggregate if aggregate else 1))))
    for batch in batches([entry for entry, _ in entries], per_request):
        results = put_all(kinesis, stream, batch, sleep=sleep)
        for result in results:
            carried = entries[index][1]
            index += 1
            produced.kinesis_records += 1
            for sub, (key, data) in enumerate(carried):
                produced.records.append(
                    Written(result["ShardId"], result["SequenceNumber"], sub if aggregate else 0, key, data)
                )
            sent += len(carried)
        if rate:
            ahead = started + sent / rate - time.monotonic()
            if ahead > 0:
                sleep(ahead)
    produced.seconds = time.monotonic() - started
    return produced


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
