"""``streamwreck local up|down|status|wait``: the embedded local stack (no Docker, no AWS account)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from streamwreck.core.errors import StreamwreckError

if TYPE_CHECKING:
    from streamwreck.checker.verdict import Checkpoint
    from streamwreck.core.records import RecordId

DESCRIPTION = """\
Run the whole pipeline on this machine, each part a background process on 127.0.0.1 with its log in one folder:
kinesis-local (Kinesis), moto (SNS, SQS, DynamoDB for the KCL leases), memcached (the ledger), the processor under
the real KCL MultiLangDaemon, the recorder and the reconcile API. No Docker, no AWS account; 'make setup' installs
what it needs.

  up      start everything, create the stream, topic, queue (with a dead-letter queue) and subscription, wait
          until each part is ready (the KCL consumer takes 30-60 s to lease its shards), print what started
  status  show the endpoints and whether each part is alive (--json for scripts, --env for a shell)
  wait    wait until the consumer has caught up with every record now in the stream, showing progress
  down    stop exactly what 'up' started (safe to run twice)

The processor skips every record whose sequence number divides by --skip-every (default 5): the demo rule, so that
'streamwreck check' has records to name as lost. --skip-every 0 processes everything.

examples:
  streamwreck local up --shards 4
  eval "$(streamwreck local status --env)"       # point boto3 (produce, check, aws cli) at the stack
  streamwreck produce --stream demo --count 1000
  streamwreck local wait
  streamwreck check --stream demo --endpoint "$(streamwreck local status --field api_url)" --kcl-app demo-consumer
  streamwreck local down"""


def describe(name: str) -> str:
    return DESCRIPTION


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--dir",
            type=Path,
            default=Path(".streamwreck"),
            help="folder of the stack's state file and logs (default: .streamwreck in the current directory)",
        )
        return sub

    up = action("up", "start the stack and wait until every part is ready")
    up.add_argument("--shards", type=_positive, default=4, help="shards of the stream (default 4)")
    up.add_argument(
        "--skip-every",
        type=_not_negative,
        default=5,
        metavar="N",
        help="the processor skips records whose sequence number divides by N (default 5; 0 = process all)",
    )
    up.add_argument(
        "--stream",
        type=_stream_name,
        default="demo",
        help="stream name (default demo); the KCL application is NAME-consumer, the topic NAME-processed",
    )
    up.add_argument("--region", default="us-east-1", help="region the emulators report (default us-east-1)")
    for part in ("api", "kinesis", "moto", "memcached"):
        up.add_argument(f"--{part}-port", type=_port, metavar="PORT", help=f"{part} port (default: any free port)")
    up.add_argument(
        "--consumer-timeout",
        type=float,
        default=240.0,
        metavar="SECONDS",
        help="how long to wait for the KCL consumer to lease every shard (default 240)",
    )

    status = action("status", "show the endpoints and whether each part is alive")
    shape = status.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print a JSON document (endpoints, names, parts)")
    shape.add_argument("--env", action="store_true", help="print export lines for the AWS_* variables")
    shape.add_argument("--field", metavar="NAME", help="print one field of the JSON document, e.g. api_url")

    wait = action("wait", "wait until the consumer has caught up with every record now in the stream")
    wait.add_argument("--timeout", type=float, default=300.0, metavar="SECONDS", help="give up after (default 300)")
    wait.add_argument("--quiet", action="store_true", help="no progress lines")

    action("down", "stop everything 'up' started")


def _stream_name(value: str) -> str:
    from streamwreck.local.resources import MAX_STREAM_NAME

    if not value or len(value) > MAX_STREAM_NAME or not all(c.isascii() and (c.isalnum() or c in "-_") for c in value):
        raise argparse.ArgumentTypeError(
            f"must be 1 to {MAX_STREAM_NAME} characters of a-z, A-Z, 0-9, '-' or '_' (the queue names derive from it)"
        )
    return value


def _positive(value: str) -> int:
    number = _integer(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return number


def _not_negative(value: str) -> int:
    number = _integer(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return number


def _port(value: str) -> int:
    number = _integer(value)
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), got {value}")
    return number


def _integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None


def _say(message: str) -> None:
    print(f"streamwreck local: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from streamwreck.local import stack

    if args.action == "up":
        return _up(args)
    if args.action == "down":
        state = stack.down(args.dir, say=_say)
        if state is None:
            _say(f"no local stack in {args.dir}: nothing to stop")
        else:
            _say(f"stack in {args.dir} is down (logs kept in {state.logs})")
        return 0
    if args.action == "wait":
        return _wait(args)
    return _status(args)


def _up(args: argparse.Namespace) -> int:
    from streamwreck.local import stack

    options = stack.Options(
        dir=args.dir,
        stream=args.stream,
        shards=args.shards,
        skip_every=args.skip_every,
        region=args.region,
        kinesis_port=args.kinesis_port,
        moto_port=args.moto_port,
        memcached_port=args.memcached_port,
        api_port=args.api_port,
        consumer_timeout=args.consumer_timeout,
    )
    began = time.monotonic()
    try:
        state = stack.up(options, say=_say)
    except stack.AlreadyUp as exc:
        _say(str(exc))
        return 1
    print(_describe_up(state, time.monotonic() - began, args.dir))
    return 0


def _describe_up(state: object, seconds: float, directory: Path) -> str:
    from streamwreck.local.stack import StackState

    assert isinstance(state, StackState)
    flag = "" if directory == Path(".streamwreck") else f" --dir {directory}"
    rule = "skips none"
    if state.skip_every:
        rule = f"skips every record whose sequence number divides by {state.skip_every}"
    lines = [
        f"local stack up in {seconds:.0f}s; logs in {state.logs}",
        f"  kinesis-local  {state.kinesis_endpoint_url}   stream {state.stream}, {state.shards} shards",
        f"  moto           {state.aws_endpoint_url}   SNS topic, SQS queue + DLQ, DynamoDB (KCL leases)",
        f"  memcached      {state.memcached}",
        f"  processor      KCL application {state.kcl_application}; {rule}",
        f"  recorder       {state.queue_url}",
        f"  api            {state.api_url}   (docs: {state.api_url}/docs)",
        "next:",
        f'  eval "$(streamwreck local status{flag} --env)"',
        f"  streamwreck produce --stream {state.stream} --count 1000",
        f"  streamwreck local wait{flag}",
        f"  streamwreck check --stream {state.stream} --endpoint {state.api_url} --kcl-app {state.kcl_application}",
        f"  streamwreck local down{flag}",
    ]
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    from streamwreck.local import stack

    try:
        state = stack.status(args.dir)
    except stack.NotUp as exc:
        if args.json:
            print(json.dumps({"running": False, "dir": str(args.dir)}))
        else:
            _say(str(exc))
        return 1
    summary = state.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    elif args.env:
        print(stack.shell_exports(state))
    elif args.field:
        if args.field not in summary:
            _say(f"no field {args.field!r}; fields: {', '.join(summary)}")
            return 2
        value = summary[args.field]
        print(value if isinstance(value, str) else json.dumps(value))
    else:
        health = "running" if summary["running"] else "NOT running (some parts died: see their logs)"
        print(f"local stack in {args.dir}: {health}, started {state.started_at}")
        for name, part in summary["parts"].items():
            print(f"  {name:<14} {'alive' if part['alive'] else 'DEAD '}  pid {part['pid']:<7} {part['log']}")
        for key in ("api_url", "kinesis_endpoint_url", "aws_endpoint_url", "memcached", "stream", "kcl_application"):
            print(f"  {key:<21} {summary[key]}")
    return 0 if summary["running"] else 1


def _wait(args: argparse.Namespace) -> int:
    import httpx

    from streamwreck.checker.leases import checkpoints, read_leases
    from streamwreck.core.aws import translate
    from streamwreck.local import progress, stack

    state = stack.status(args.dir)
    kinesis, _, _, dynamodb = stack.clients(state)
    try:
        contents = progress.read_stream(kinesis, state.stream)
    except Exception as exc:
        doing = f"reading the stream {state.stream} (is the stack running? 'streamwreck local status')"
        raise translate(exc, doing) from exc
    records = contents.records
    candidates = [r for r in records if not progress.skipped_by_demo_rule(r.sequence_number, state.skip_every)]
    probe = progress.LedgerProbe(state.api_url)
    processor = state.part("processor")
    deadline = time.monotonic() + args.timeout
    shown, shown_at = "", 0.0
    try:
        while True:
            try:
                candidates = sorted(probe.unrecorded(state.stream, candidates), key=lambda r: r.sort_key())
                positions = checkpoints(read_leases(dynamodb, state.kcl_application), state.stream, contents.parents)
                now = progress.measure(
                    records, candidates, functools.partial(_checkpointed, positions), state.skip_every
                )
                line, done = now.line(), now.done
            except (httpx.HTTPError, StreamwreckError) as exc:  # retried until the deadline: parts may be busy
                line, done = f"waiting: {type(exc).__name__}: {exc}", False
            if not args.quiet and (line != shown or time.monotonic() - shown_at > 10):
                _say(line)
                shown, shown_at = line, time.monotonic()
            if done:
                return 0
            if processor is not None and not stack.part_alive(processor):
                _say(f"the processor is not running: see {processor.log}")
                return 1
            if time.monotonic() > deadline:
                _say(f"gave up after {args.timeout:.0f}s: {line}; logs in {state.logs}")
                return 1
            time.sleep(0.5)
    finally:
        probe.close()


def _checkpointed(positions: Mapping[str, Checkpoint], last: RecordId) -> bool:
    """The consumer's checkpoint on ``last``'s shard is at or past it, or the shard is finished."""
    from streamwreck.checker.verdict import LeasePosition

    position = positions[last.shard_id]
    if position.position in (LeasePosition.SHARD_END, LeasePosition.DONE):
        return True
    return position.position is LeasePosition.SEQUENCE and not position.pending(
        last.sequence_number, last.sub_sequence_number
    )
