"""Argument types for every ``streamwreck`` command: each turns a bad value into argparse's one-line usage error.

whole(1)             a whole number >= 1               whole(1, 64)     between 1 and 64
number(0)            a number >= 0 (seconds, ...)      number(0, above=True)   a number > 0
port                 1-65535                           when             an ISO 8601 time or a duration ago
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable

from streamwreck.core.clock import parse_iso

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from ``low`` (to ``high``, if given)."""

    def parse(value: str) -> int:
        try:
            result = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
        if high is not None and not low <= result <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {result}")
        if result < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {result}")
        return result

    return parse


def number(low: float, above: bool = False, what: str = "a number") -> Callable[[str], float]:
    """A number at least ``low`` (more than ``low`` with ``above``); ``what`` names it in the error."""

    def parse(value: str) -> float:
        try:
            result = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
        if result != result or result in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
        if above and result <= low:
            raise argparse.ArgumentTypeError(f"must be above {low:g}, got {value}")
        if result < low:
            bound = "not be negative" if low == 0 else f"be {low:g} or more"
            raise argparse.ArgumentTypeError(f"must {bound}, got {value}")
        return result

    return parse


seconds = number(0, what="seconds")


def port(value: str) -> int:
    result = whole(0)(value)
    if not 0 < result < 65536:
        raise argparse.ArgumentTypeError(f"must be a port number (1-65535), got {value}")
    return result


def when(text: str, now: float | None = None) -> float:
    """An ISO 8601 time (UTC unless it says otherwise) or a duration ago (90s, 30m, 2h, 7d) as Unix seconds."""
    match = _DURATION.match(text.strip())
    if match:
        return (time.time() if now is None else now) - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return parse_iso(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO 8601 time (2026-11-27T16:00:00Z) or a duration ago (30m, 2h, 7d), got {text!r}"
        ) from None
