"""A heartbeat file, so that an orchestrator can tell a stuck worker from a busy one.

The entry point calls ``configure(settings.heartbeat_file)`` once; a long-running loop (the recorder's poll loop,
the record processor's process_records, which the KCL calls on every idle poll too) calls ``touch()`` each time
round; a health check (Docker's HEALTHCHECK, compose's healthcheck, ECS's container health check) runs

    python -m streamwreck.core.heartbeat /tmp/streamwreck/heartbeat --max-age 120

which exits 0 while the file was touched within the last 120 seconds and 1 otherwise (missing, or too old), with
one line saying which. The images set STREAMWRECK_HEARTBEAT_FILE to that file (under /tmp, the one writable place
of their read-only root filesystems); where it is unset the path is None and ``touch`` does nothing, so a worker run
outside a container (or a unit test of a loop) writes no file. Pure standard library, and no environment reads:
the entry point passes the path from its settings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DEFAULT_MAX_AGE_SECONDS = 120.0

PathLike = str | os.PathLike[str]

_configured: Path | None = None  # this process's heartbeat file (configure), None: none


def configure(path: PathLike | None) -> None:
    """Set the file ``touch()`` marks in this process (from the settings, at start-up); None or "" turns it off."""
    global _configured
    _configured = Path(path) if path else None


def touch(path: PathLike | None = None) -> None:
    """Mark the worker alive now: set the file's modification time (creating it, and its folder, the first time).

    ``path`` defaults to the configured file; with neither, nothing happens. Never raises: a heartbeat that cannot be
    written must not stop the work; the health check then reports the stale file.
    """
    target = Path(path) if path is not None else _configured
    if target is None:
        return
    try:
        os.utime(target)
    except FileNotFoundError:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        except OSError:
            return
    except OSError:
        return


def age(path: PathLike, now: float | None = None) -> float | None:
    """Seconds since the file was last touched; None when it does not exist."""
    try:
        modified = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    return max(0.0, (time.time() if now is None else now) - modified)


def is_fresh(path: PathLike, max_age: float = DEFAULT_MAX_AGE_SECONDS, now: float | None = None) -> bool:
    """Whether the file exists and was touched within the last ``max_age`` seconds."""
    seconds = age(path, now)
    return seconds is not None and seconds <= max_age


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streamwreck.core.heartbeat",
        description="Health check: exit 0 if the heartbeat file is fresh, 1 if it is missing or too old.",
    )
    parser.add_argument("path", help="the heartbeat file")
    parser.add_argument(
        "--max-age",
        type=float,
        default=DEFAULT_MAX_AGE_SECONDS,
        help=f"seconds since the last touch that still count as alive (default {DEFAULT_MAX_AGE_SECONDS:.0f})",
    )
    args = parser.parse_args(argv)
    path = Path(args.path)
    seconds = age(path)
    if seconds is None:
        print(f"heartbeat: {path} does not exist: the worker has not started its loop", file=sys.stderr)
        return 1
    if seconds > args.max_age:
        print(f"heartbeat: {path} is {seconds:.0f}s old (more than {args.max_age:.0f}s): stuck", file=sys.stderr)
        return 1
    print(f"heartbeat: {path} is {seconds:.1f}s old")
    return 0


if __name__ == "__main__":
    sys.exit(main())
