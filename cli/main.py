"""``streamwreck``: one command, a subcommand per part."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from streamwreck.core import logs
from streamwreck.core.errors import ConfigError, StreamwreckError
from streamwreck.core.settings import CommonSettings, load_settings

DESCRIPTION = """\
streamwreck proves that every record written to a Kinesis data stream was processed by its consumer, and names
exactly the ones that were not. Settings come from STREAMWRECK_* environment variables; AWS endpoints and
credentials from the standard AWS_* ones (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_KINESIS, AWS_DEFAULT_REGION, ...)."""

EPILOG = """\
examples:
  streamwreck local up                       start the embedded stack (emulators, memcached, the three services)
  streamwreck produce --stream demo --count 1000
  streamwreck check --stream demo --endpoint http://127.0.0.1:8000
  streamwreck api                            serve POST /reconcile (docs at /docs)
  streamwreck recorder                       SQS -> ledger (needs STREAMWRECK_QUEUE_URL)
  streamwreck processor                      the KCL consumer (needs STREAMWRECK_STREAM_NAME, _TOPIC_ARN, ...)

'streamwreck COMMAND --help' explains each command."""

# name -> (module with add_arguments(parser, name) and run(args) -> int, the extra it needs, one-line help)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "check": ("streamwreck.cli.checker", "cli", "read every shard and report which records were not processed"),
    "produce": ("streamwreck.cli.produce", "cli", "write test records to a stream (optionally KPL-aggregated)"),
    "local": (
        "streamwreck.cli.local",
        "local",
        "start, inspect or stop the embedded local stack (no Docker, no AWS account)",
    ),
    "api": ("streamwreck.cli.services", "api", "run the reconcile API (FastAPI + uvicorn)"),
    "recorder": (
        "streamwreck.cli.services",
        "recorder",
        "run the recorder: processed events from SQS -> ledger entries in memcached",
    ),
    "processor": ("streamwreck.processor.daemon", "processor", "run the KCL consumer under the MultiLangDaemon"),
    "redrive-dlq": ("streamwreck.cli.redrive", "cli", "move the recorder's dead-lettered events back to its queue"),
    "watch": ("streamwreck.cli.watch", "watch", "judge every record continuously, as its own KCL application"),
}


def _load(module_name: str) -> ModuleType | str:
    """The command's module, or the name of the third-party package it lacks (an image installs one extra)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing == "streamwreck":
            raise
        return missing


def _missing(name: str, package: str, extra: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        print(
            f"streamwreck {name}: needs the Python package {package!r}, which this installation lacks: "
            f"pip install 'streamwreck[{extra}]'",
            file=sys.stderr,
        )
        return 2

    return run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamwreck", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, extra, help_text) in COMMANDS.items():
        module = _load(module_name)
        if isinstance(module, str):
            sub = commands.add_parser(name, help=f"{help_text} (not installed: needs the {extra!r} extra)")
            sub.set_defaults(run=_missing(name, module, extra), not_installed=True)
            continue
        describe = getattr(module, "describe", None)
        sub = commands.add_parser(
            name,
            help=help_text,
            description=describe(name) if describe else help_text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub, name)
        run: Callable[[argparse.Namespace], int] = module.run
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "not_installed", False):
        parser.parse_args(argv)  # the usual error for the unknown arguments
    try:
        code: int = args.run(args)
        return code
    except ConfigError as exc:
        print(f"streamwreck {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except StreamwreckError as exc:
        print(f"streamwreck {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line, and exit 2 - never 1, which `check` uses for "records lost"
        print(
            f"streamwreck {args.command}: internal error (a bug): {type(exc).__name__}: {exc} "
            "(STREAMWRECK_LOG_LEVEL=DEBUG logs the traceback)",
            file=sys.stderr,
        )
        _debug_log(exc)
        return 2


def _debug_log(exc: Exception) -> None:
    """The traceback of an internal error, as a JSON log line on stderr, when the log level is DEBUG."""
    try:
        level = load_settings(CommonSettings).log_level
    except ConfigError:
        return
    if level == "DEBUG":
        logs.configure(level)
        logging.getLogger("streamwreck").debug(
            "internal_error", exc_info=(type(exc), exc, exc.__traceback__), extra={"error": type(exc).__name__}
        )


if __name__ == "__main__":
    sys.exit(main())
