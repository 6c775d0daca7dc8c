"""``streamwreck api`` and ``streamwreck recorder``: the long-running services, configured from the environment."""

from __future__ import annotations

import argparse

from streamwreck.cli.arguments import port, whole
from streamwreck.core import logs
from streamwreck.core.settings import ApiSettings, RecorderSettings, load_settings

_DESCRIPTIONS = {
    "api": """\
Serve the reconcile API: POST /reconcile answers which records have no ledger entry; OpenAPI docs at /docs,
GET /healthz (alive) and GET /readyz (memcached reachable).

environment:
  STREAMWRECK_MEMCACHED_SERVERS        host:port[,host:port...] (default 127.0.0.1:11211)
  STREAMWRECK_API_HOST, _API_PORT      where to listen (default 127.0.0.1:8000)
  STREAMWRECK_API_WORKERS              worker processes (default 1; one per core serves the most)
  STREAMWRECK_MAX_RECORDS_PER_REQUEST  413 above it (default 10000)
  STREAMWRECK_API_KEY                  if set, clients must send X-Api-Key
  STREAMWRECK_MAX_REQUEST_BYTES        413 for a larger body, before it is parsed (default 4 MiB)
  STREAMWRECK_LEDGER_TTL_SECONDS       the TTL entries are written with (reported to clients)
  STREAMWRECK_LEDGER_FORMAT            buckets (default, ~7 bytes a record) or records; the same as the recorder's""",
    "recorder": """\
Long-poll the SQS queue subscribed to the processed-events topic and write a ledger entry per processed record.
A message is deleted only after its entries are stored; malformed ones are left for the dead-letter redrive;
while memcached is down the messages are held and retried. SIGTERM finishes the batch in hand and exits 0.

environment:
  STREAMWRECK_QUEUE_URL                the queue (required)
  STREAMWRECK_RECORDER_TOPIC_ARN       if set, record only messages from this topic (others: dead-letter queue)
  STREAMWRECK_RECORDER_METRICS_PORT    if set, Prometheus metrics on this port (_METRICS_HOST: 127.0.0.1)
  STREAMWRECK_MEMCACHED_SERVERS        host:port[,host:port...] (default 127.0.0.1:11211)
  STREAMWRECK_LEDGER_TTL_SECONDS       entry lifetime; at least the stream's retention (default 7 days)
  STREAMWRECK_LEDGER_FORMAT            buckets (default, ~7 bytes a record) or records; the same as the API's""",
}


def describe(name: str) -> str:
    return _DESCRIPTIONS[name]


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    if name == "api":
        parser.add_argument("--host", help="listen address (overrides STREAMWRECK_API_HOST)")
        parser.add_argument("--port", type=port, help="listen port (overrides STREAMWRECK_API_PORT)")
        parser.add_argument(
            "--workers", type=whole(1, 64), help="worker processes (overrides STREAMWRECK_API_WORKERS; default 1)"
        )


def run(args: argparse.Namespace) -> int:
    if args.command == "api":
        from streamwreck.api.app import serve as serve_api

        given = (("api_host", args.host), ("api_port", args.port), ("api_workers", args.workers))
        overrides = {key: value for key, value in given if value}
        api = load_settings(ApiSettings, **overrides)
        logs.configure(api.log_level)
        return serve_api(api)
    from streamwreck.recorder.worker import serve as serve_recorder

    recorder = load_settings(RecorderSettings)
    logs.configure(recorder.log_level)
    return serve_recorder(recorder)
