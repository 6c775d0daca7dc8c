"""``streamwreck local up|down|status|wait``: the embedded local stack (no Docker, no AWS account)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from streamwreck.cli.arguments import port, seconds, whole
from streamwreck.core.errors import AlreadyUp, NotUp

if TYPE_CHECKING:
    from streamwreck.local.state import StackState

DESCRIPTION = """\
Run the whole pipeline on this machine, each part a background process on 127.0.0.1 with its log in one folder:
kinesis-local (Kinesis), moto (SNS, SQS, DynamoDB for the KCL leases), memcached (the ledger), the processor under
the real KCL MultiLangDaemon, the recorder, the reconcile API and the watcher ('streamwreck watch': the continuous
verdict, its lost records in <dir>/lost.jsonl, its metrics at the URL 'status' shows). No Docker, no AWS account;
'make setup' installs what it needs.

  up      start everything, create the stream, topic, queue (with a dead-letter queue) and subscription, wait
          until each part is ready (the KCL consumer and the watcher take 30-60 s to lease the shards), print what
          started
  status  show the endpoints and whether each part is alive (--json for scripts, --env for a shell)
  wait    wait until the consumer has caught up with every record now in the stream (and the watcher has judged
          each one), showing progress
  down    stop exactly what 'up' started (safe to run twice)
  restart start one part again, same settings and port (memcached comes back empty; --kill crashes it first)
          (the watcher too: it resumes from its checkpoint)
  worker  start another processor worker (a second KCL worker of the same application)

The processor skips every record whose sequence number divides by --skip-every (default 5): the demo rule, so that
'streamwreck check' has records to name as lost. --skip-every 0 processes everything.

examples:
  streamwreck local up --shards 4
  eval "$(streamwreck local status --env)"       # point boto3 (produce, check, aws cli) at the stack
  streamwreck produce --stream demo --count 1000
  streamwreck local wait
  streamwreck check --stream demo --endpoint "$(streamwreck local status --field api_url)" --kcl-app demo-consumer
  cat .streamwreck/lost.jsonl                    # what the watcher reported lost meanwhile
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
    up.add_argument("--shards", type=whole(1), default=4, help="shards of the stream (default 4)")
    up.add_argument(
        "--skip-every",
        type=whole(0),
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
        up.add_argument(f"--{part}-port", type=port, metavar="PORT", help=f"{part} port (default: any free port)")
    up.add_argument(
        "--consumer-timeout",
        type=seconds,
        default=240.0,
        metavar="SECONDS",
        help="how long to wait for the KCL consumer (and then the watcher) to lease every shard (default 240)",
    )

    up.add_argument(
        "--no-watch",
        dest="watch",
        action="store_false",
        help="do not run the watcher (one JVM less; 'streamwreck check' still works)",
    )
    up.add_argument(
        "--service-env",
        action="append",
        default=[],
        type=_assignment,
        metavar="NAME=VALUE",
        help="a setting for the processor, recorder, API and watcher, e.g. STREAMWRECK_PUBLISH_ATTEMPTS=1 (repeatable)",
    )

    status = action("status", "show the endpoints and whether each part is alive")
    shape = status.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="print a JSON document (endpoints, names, parts)")
    shape.add_argument("--env", action="store_true", help="print export lines for the AWS_* variables")
    shape.add_argument("--field", metavar="NAME", help="print one field of the JSON document, e.g. api_url")

    wait = action("wait", "wait until the consumer has caught up with every record now in the stream")
    wait.add_argument("--timeout", type=seconds, default=300.0, metavar="SECONDS", help="give up after (default 300)")
    wait.add_argument("--quiet", action="store_true", help="no progress lines")

    action("down", "stop everything 'up' started")

    restart = action("restart", "start one part again with its settings and port (moto and kinesis-local cannot)")
    restart.add_argument("part", metavar="PART", help="memcached, recorder, api, processor, processor-N or watch")
    restart.add_argument("--kill", action="store_true", help="SIGKILL its whole process group first (a crash)")
    action("worker", "start another processor worker (processor-N, KCL worker id local-N)")


def _assignment(value: str) -> tuple[str, str]:
    name, sep, setting = value.partition("=")
    if not sep or not name or not all(c.isascii() and (c.isalnum() or c == "_") for c in name):
        raise argparse.ArgumentTypeError(f"expects NAME=VALUE, got {value!r}")
    return name, setting


def _stream_name(value: str) -> str:
    from streamwreck.local.resources import MAX_STREAM_NAME

    if not value or len(value) > MAX_STREAM_NAME or not all(c.isascii() and (c.isalnum() or c in "-_") for c in value):
        raise argparse.ArgumentTypeError(
            f"must be 1 to {MAX_STREAM_NAME} characters of a-z, A-Z, 0-9, '-' or '_' (the queue names derive from it)"
        )
    return value


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
    if args.action in ("restart", "worker"):
        return _restart(args)
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
        watch=args.watch,
        service_env=dict(args.service_env),
    )
    began = time.monotonic()
    try:
        state = stack.up(options, say=_say)
    except AlreadyUp as exc:
        _say(str(exc))
        return 1
    print(_describe_up(state, time.monotonic() - began, args.dir))
    return 0


def _describe_up(state: StackState, took: float, directory: Path) -> str:
    flag = "" if directory == Path(".streamwreck") else f" --dir {directory}"
    rule = "skips none"
    if state.skip_every:
        rule = f"skips every record whose sequence number divides by {state.skip_every}"
    lines = [
        f"local stack up in {took:.0f}s; logs in {state.logs}",
        f"  kinesis-local  {state.kinesis_endpoint_url}   stream {state.stream}, {state.shards} shards",
        f"  moto           {state.aws_endpoint_url}   SNS topic, SQS queue + DLQ, DynamoDB (KCL leases)",
        f"  memcached      {state.memcached}",
        f"  processor      KCL application {state.kcl_application}; {rule}",
        f"  recorder       {state.queue_url}",
        f"  api            {state.api_url}   (docs: {state.api_url}/docs)",
    ]
    if state.watch_url:
        lines.append(f"  watch          {state.watch_url}/metrics   lost records to {state.lost_file}")
    lines += [
        "next:",
        f'  eval "$(streamwreck local status{flag} --env)"',
        f"  streamwreck produce --stream {state.stream} --count 1000",
        f"  streamwreck local wait{flag}",
        f"  streamwreck check --stream {state.stream} --endpoint {state.api_url} --kcl-app {state.kcl_application}",
        f"  streamwreck local down{flag}",
    ]
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    from streamwreck.local.state import status

    try:
        state = status(args.dir)
    except NotUp as exc:
        if args.json:
            print(json.dumps({"running": False, "dir": str(args.dir)}))
        else:
            _say(str(exc))
        return 1
    summary = state.summary()
    if args.json:
        print(json.dumps(summary, indent=2))
    elif args.env:
        print(state.shell_exports())
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
            metrics = f"  metrics {part['metrics_url']}" if part["metrics_url"] else ""
            print(f"  {name:<14} {'alive' if part['alive'] else 'DEAD '}  pid {part['pid']:<7} {part['log']}{metrics}")
        keys = ["api_url", "kinesis_endpoint_url", "aws_endpoint_url", "memcached", "stream", "kcl_application"]
        keys += [key for key in ("watch_metrics_url", "lost_records_file") if summary[key]]
        for key in keys:
            print(f"  {key:<21} {summary[key]}")
    return 0 if summary["running"] else 1


def _wait(args: argparse.Namespace) -> int:
    from streamwreck.local.progress import catch_up
    from streamwreck.local.state import status

    state = status(args.dir)
    failure = catch_up(state, args.timeout, show=None if args.quiet else _say)
    if failure is not None:
        _say(failure)
        return 1
    return 0


def _restart(args: argparse.Namespace) -> int:
    from streamwreck.local import parts

    if args.action == "worker":
        part = parts.add_worker(args.dir, say=_say)
    else:
        if args.kill:
            pids = parts.kill(args.dir, args.part)
            _say(f"killed {args.part} ({len(pids)} processes)")
        part = parts.restart(args.dir, args.part, say=_say)
    print(json.dumps({"part": part.name, "pid": part.pid, "url": part.url, "log": part.log}))
    return 0
