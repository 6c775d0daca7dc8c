"""``streamwreck watch``: the command line of the watcher (:mod:`streamwreck.watcher`).

Parse the arguments into :class:`~streamwreck.core.settings.WatcherSettings`, run the watcher (the KCL daemon with
the watcher's record processor, and the metrics server), and on a terminal show a live per-shard table of what the
record processors report (read from the same merged metrics ``/metrics`` serves).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from streamwreck.cli.arguments import port, seconds, whole
from streamwreck.core.aws import require
from streamwreck.core.errors import ConfigError
from streamwreck.core.settings import ENV_PREFIX, WatcherSettings, environment, load_settings

require("httpx", "rich", "prometheus_client", "amazon_kclpy")  # the `watch` extra

DESCRIPTION = f"""\
Watch a Kinesis stream continuously: every record is read once, as it arrives, and judged with the same rules as
'streamwreck check' once the audited consumer's checkpoint (--kcl-app's lease table, read every few seconds) has
passed it, or once it is older than --grace. Records that cannot be judged yet are held; when too many are held on
a shard the watcher stops reading it until the consumer moves (nothing is dropped).

The watcher is its own KCL application (lease table streamwreck-watch-<stream> unless --application): run as many
watcher processes or tasks as you like, they share the shards, take over the leases of one that dies and follow
splits and merges, parents first. It checkpoints a record only after judging it: a restart judges again from there
(a lost record may be reported twice, with the same identity), never skips one.

Each lost record is reported with its shard, sequence and sub-sequence numbers, arrival, reason, and until when it
can still be replayed (arrival + the stream's retention): appended to --export as a JSON line, and published to
--lost-topic-arn. Metrics (Prometheus) on http://HOST:--metrics-port/metrics, health on /healthz (503 when no
progress for {ENV_PREFIX}STALE_SECONDS), CloudWatch metrics as Embedded Metric Format lines in the logs.

settings (environment; the options below override them):
  {ENV_PREFIX}STREAM_NAME, _KCL_APP, _API_URL, _API_KEY, _GRACE_SECONDS, _EXPORT_FILE, _LOST_TOPIC_ARN,
  {ENV_PREFIX}METRICS_PORT (default 9108), _APPLICATION_NAME, _SETTLE_SECONDS (5), _MAX_HELD (50000 per shard),
  {ENV_PREFIX}LEASE_REFRESH_SECONDS (3), _CHECKPOINT_SECONDS (10), _STALE_SECONDS (120), _EMF_SECONDS (60),
  {ENV_PREFIX}EMF_NAMESPACE (Streamwreck/Watch), _LOCAL_PROFILE, _KCL_JARS_DIR, _WORKER_ID, _INITIAL_POSITION
  AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL, AWS_DEFAULT_REGION, ...  as for check

examples:
  streamwreck watch --stream orders --kcl-app orders-consumer --endpoint https://streamwreck-api.internal
  streamwreck watch --stream orders --kcl-app orders-consumer --export lost.jsonl --grace 120
  streamwreck watch --stream orders --kcl-app orders-consumer --print-properties"""

# option dest -> settings field
_OVERRIDES = {
    "stream": "stream_name",
    "kcl_app": "kcl_app",
    "endpoint": "api_url",
    "api_key": "api_key",
    "grace": "grace_seconds",
    "settle": "settle_seconds",
    "export": "export_file",
    "metrics_port": "metrics_port",
    "application": "application_name",
    "lost_topic_arn": "lost_topic_arn",
    "max_held": "max_held",
    "region": "region",
    "initial_position": "initial_position",
    "worker_id": "worker_id",
    "jars": "kcl_jars_dir",
}


def describe(name: str) -> str:
    return DESCRIPTION


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--stream", metavar="NAME", help="the stream to watch")
    parser.add_argument("--kcl-app", metavar="NAME", help="the audited consumer's KCL application (lease table)")
    parser.add_argument("--endpoint", metavar="URL", help="the reconcile API (default $STREAMWRECK_API_URL)")
    parser.add_argument("--api-key", metavar="KEY", help="sent as X-Api-Key")
    parser.add_argument("--grace", type=seconds, metavar="SECONDS", help="judge records this old anyway (default 60)")
    parser.add_argument("--settle", type=seconds, metavar="SECONDS", help="trust a checkpoint this long after reading")
    parser.add_argument("--export", metavar="FILE", help="append each lost record to FILE as a JSON line")
    parser.add_argument("--metrics-port", type=port, metavar="PORT", help="/metrics and /healthz (default 9108)")
    parser.add_argument("--no-metrics", action="store_true", help="no metrics server")
    parser.add_argument("--application", metavar="NAME", help="the watcher's own KCL application name")
    parser.add_argument("--lost-topic-arn", metavar="ARN", help="SNS topic for the lost records")
    parser.add_argument("--max-held", type=whole(1), metavar="N", help="records held per shard before pausing")
    parser.add_argument("--region", help="AWS region")
    parser.add_argument("--initial-position", choices=["TRIM_HORIZON", "LATEST"], help="where new shards start")
    parser.add_argument("--worker-id", metavar="ID", help="KCL worker id of this watcher")
    parser.add_argument("--jars", metavar="DIR", help="folder of the KCL MultiLangDaemon jars")
    parser.add_argument("--property", action="append", default=[], metavar="KEY=VALUE", help="any daemon property")
    parser.add_argument("--print-properties", action="store_true", help="print the daemon's properties and exit")
    parser.add_argument("--quiet", "-q", action="store_true", help="no table: the daemon's logs on stderr")
    parser.add_argument(
        "--log-file", type=Path, metavar="FILE", help="the daemon's logs while the table is shown (default ./watch.log)"
    )


def run(args: argparse.Namespace) -> int:
    from streamwreck.core import logs
    from streamwreck.processor.properties import parse_property
    from streamwreck.watcher.launcher import Watcher, preflight

    overrides: dict[str, Any] = {
        field: getattr(args, option) for option, field in _OVERRIDES.items() if getattr(args, option) is not None
    }
    if args.no_metrics:
        overrides["metrics_port"] = 0
    settings = load_settings(WatcherSettings, **overrides)
    if not settings.api_url.startswith(("http://", "https://")):
        raise ConfigError(f"--endpoint must be an http:// or https:// URL, got {settings.api_url!r}")
    logs.configure(settings.log_level)
    extra = dict(parse_property(text) for text in args.property)
    watcher = Watcher(settings, extra, environment())
    if args.print_properties:
        sys.stdout.write(watcher.properties_text())
        watcher.close()
        return 0
    preflight(settings)
    if args.quiet or not sys.stdout.isatty():
        return watcher.run()
    log_file = args.log_file or Path("watch.log")
    display = Display()
    try:
        with log_file.open("ab") as log:
            code = watcher.run(output=log.fileno(), on_started=display.loop)
    except OSError as exc:
        raise ConfigError(f"cannot write the log file {log_file}: {exc.strerror or exc}") from None
    finally:
        display.stop()
    return code


class Display:
    """The live per-shard table (Rich), refreshed every second from the merged metrics."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._done = threading.Event()

    def loop(self, watcher: Any) -> None:
        from rich.console import Console
        from rich.live import Live

        try:
            with Live(table(watcher), console=Console(), refresh_per_second=2, transient=False) as live:
                while not self._stop.wait(1.0):
                    live.update(table(watcher))
        finally:
            self._done.set()

    def stop(self) -> None:
        self._stop.set()
        self._done.wait(3.0)


def table(watcher: Any) -> Any:
    from rich.table import Table

    snapshot = watcher.snapshot()
    settings = watcher.settings
    title = f"streamwreck watch {settings.stream_name} (consumer {settings.kcl_app})"
    caption = f"metrics {watcher.metrics_url}/metrics" if watcher.metrics_url else "no metrics server"
    grid = Table(title=title, caption=caption)
    for column in ("shard", "read", "judged", "processed", "duplicate", "lost", "unknown", "held", "lag s"):
        grid.add_column(column, justify="left" if column == "shard" else "right")

    def add(name: str, row: Any, style: str | None = None) -> None:
        lost = f"[bold red]{row.counts['lost']:,.0f}[/]" if row.counts["lost"] else "0"
        grid.add_row(
            name,
            f"{row.read:,.0f}",
            f"{row.judged:,.0f}",
            f"{row.counts['processed']:,.0f}",
            f"{row.counts['duplicate']:,.0f}",
            lost,
            f"{row.counts['unknown']:,.0f}",
            f"{row.held:,.0f}",
            f"{row.lag:,.1f}",
            style=style,
        )

    for shard_id, row in snapshot.shards.items():
        add(shard_id, row)
    add("total", snapshot.total(), style="bold")
    if not snapshot.shards:
        grid.caption = f"{caption} - waiting for the first leases (30-60 s for a new application)"
    return grid
