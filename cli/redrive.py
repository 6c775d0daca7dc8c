"""``streamwreck redrive-dlq``: move the recorder's dead-lettered events back to its queue, once the cause is fixed."""

from __future__ import annotations

import argparse
import sys

from streamwreck.cli.arguments import whole
from streamwreck.core.aws import require

require()

DESCRIPTION = """\
Move every message of the recorder's dead-letter queue back to the queue it reads, once whatever dead-lettered
them is fixed (memcached of the wrong format, a bad deployment, a topic setting): receive, send the same body and
attributes to --to, delete from --from only what was sent. The recorder counts a redelivered event once, so moving
a message twice does no harm. Stops when --from is empty (or after --max-messages).

examples:
  streamwreck redrive-dlq --from https://sqs.eu-west-1.amazonaws.com/123456789012/streamwreck-dlq \\
      --to https://sqs.eu-west-1.amazonaws.com/123456789012/streamwreck-events"""


def describe(name: str) -> str:
    return DESCRIPTION


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--from", dest="source", required=True, metavar="DLQ_URL", help="the dead-letter queue")
    parser.add_argument("--to", dest="target", required=True, metavar="QUEUE_URL", help="the recorder's queue")
    parser.add_argument(
        "--max-messages",
        type=whole(1, 10_000_000),
        default=100_000,
        metavar="N",
        help="move at most N messages (default 100000)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing but errors")


def run(args: argparse.Namespace) -> int:
    from streamwreck.checker.dead_letters import move, sqs_client

    if args.source == args.target:
        from streamwreck.core.errors import ConfigError

        raise ConfigError("--from and --to are the same queue")
    done = move(sqs_client(), args.source, args.target, max_messages=args.max_messages)
    if not args.quiet:
        failed = f", {done.failed:,} could not be sent (left in {args.source})" if done.failed else ""
        print(f"moved {done.moved:,} messages to {args.target}{failed}", file=sys.stderr)
    return 1 if done.failed else 0
